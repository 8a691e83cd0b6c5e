"""spacetime: spatio-temporal attention for video models.

Layers go ops -> layers -> blocks -> models -> pipelines (training, diffusion, classify, bench) ->
compat (the design texts' classes) -> cli; ``docs/architecture.md`` says where each concept lives.

The names below are imported on first use (PEP 562), so ``import spacetime`` loads nothing else and
changes nothing: no environment variable, no torch setting. ``from spacetime import X`` and
``spacetime.X`` work as for any eager import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    # the operator and its patterns
    **dict.fromkeys(["attention", "use_backend", "Pattern", "Spatial", "Temporal", "Joint", "Window", "CrossFrame"],
                    "spacetime.ops"),
    # general modules and whole networks
    **dict.fromkeys(["SpaceTimeAttention", "MHAStyleAttention", "FactorizedAttention", "Mlp", "CameraAttention",
                     "PluckerInjection"], "spacetime.layers"),
    **dict.fromkeys(["AttentionBlock", "TransformerBlock"], "spacetime.blocks"),
    **dict.fromkeys(["VideoUNet", "VideoUNetConfig", "VideoTransformer", "VideoTransformerConfig", "VideoSwin",
                     "VideoSwinConfig"], "spacetime.models"),
    # the design texts' classes and functions (SEED_API.md)
    **dict.fromkeys([
        "FactorizedSpatioTemporalAttention", "SpatioTemporalWindowAttention", "CameraCrossAttention",
        "TemporalTransformer", "MiniSpaceTimeTransformer", "MultiHeadSelfAttention", "SpatialAttentionBlock",
        "TemporalAttentionBlock", "CausalTemporalAttention", "Full3DAttention", "FactorizedSpaceTimeBlock",
        "SinusoidalTimeEmbed", "FactorizedVideoUNet", "cosine_beta_schedule", "create_moving_mnist_video",
        "create_dataset",
    ], "spacetime.compat"),
}
_SUBPACKAGES = ("ops", "layers", "blocks", "models", "compat")

__all__ = [*_SUBPACKAGES, *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"spacetime.{name}")
    else:
        raise AttributeError(f"module 'spacetime' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for editors and type checkers: the same names, eagerly
    from .blocks import AttentionBlock, TransformerBlock  # noqa: F401
    from .compat import (  # noqa: F401
        CameraCrossAttention,
        CausalTemporalAttention,
        FactorizedSpaceTimeBlock,
        FactorizedSpatioTemporalAttention,
        FactorizedVideoUNet,
        Full3DAttention,
        MiniSpaceTimeTransformer,
        MultiHeadSelfAttention,
        SinusoidalTimeEmbed,
        SpatialAttentionBlock,
        SpatioTemporalWindowAttention,
        TemporalAttentionBlock,
        TemporalTransformer,
        cosine_beta_schedule,
        create_dataset,
        create_moving_mnist_video,
    )
    from .layers import (  # noqa: F401
        CameraAttention,
        FactorizedAttention,
        MHAStyleAttention,
        Mlp,
        PluckerInjection,
        SpaceTimeAttention,
    )
    from .models import (  # noqa: F401
        VideoSwin,
        VideoSwinConfig,
        VideoTransformer,
        VideoTransformerConfig,
        VideoUNet,
        VideoUNetConfig,
    )
    from .ops import CrossFrame, Joint, Pattern, Spatial, Temporal, Window, attention, use_backend  # noqa: F401
