"""Parameter-free functions: the attention operator, its patterns, layouts, position encodings,
camera geometry and motion estimation."""

from . import camera, motion
from .attention import (
    DEFAULT_BATCH_LIMIT,
    SHORT_MAX_LEN,
    attention,
    available_backends,
    default_backend,
    select_backend,
    set_default_backend,
    use_backend,
)
from .encodings import (
    ROPE_AXES,
    ROPE_PAIRS,
    apply_rotary,
    check_rope_dims,
    resample_table,
    rope_at,
    rope_cos_sin,
    rope_grid,
    rope_split,
    sinusoidal_table,
)
from .layout import LAYOUTS, check_layout, check_video, from_channels_last, to_channels_last
from .patterns import PATTERNS, CrossFrame, Joint, Pattern, Spatial, Temporal, Window, check_frame_mask

__all__ = [
    "camera", "motion",
    "DEFAULT_BATCH_LIMIT", "SHORT_MAX_LEN", "attention", "available_backends", "default_backend", "select_backend",
    "set_default_backend", "use_backend",
    "ROPE_AXES", "ROPE_PAIRS", "apply_rotary", "check_rope_dims", "resample_table", "rope_at", "rope_cos_sin",
    "rope_grid", "rope_split", "sinusoidal_table",
    "LAYOUTS", "check_layout", "check_video", "from_channels_last", "to_channels_last",
    "PATTERNS", "CrossFrame", "Joint", "Pattern", "Spatial", "Temporal", "Window", "check_frame_mask",
]
