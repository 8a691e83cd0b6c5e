"""Parameter-free functions: the attention operator, its patterns and layout helpers."""

from .attention import (
    DEFAULT_BATCH_LIMIT,
    attention,
    available_backends,
    default_backend,
    set_default_backend,
    use_backend,
)
from .layout import LAYOUTS, check_layout, check_video, from_channels_last, to_channels_last
from .patterns import PATTERNS, CrossFrame, Joint, Pattern, Spatial, Temporal, Window

__all__ = [
    "DEFAULT_BATCH_LIMIT", "attention", "available_backends", "default_backend", "set_default_backend",
    "use_backend", "LAYOUTS", "check_layout", "check_video", "from_channels_last", "to_channels_last",
    "PATTERNS", "CrossFrame", "Joint", "Pattern", "Spatial", "Temporal", "Window",
]
