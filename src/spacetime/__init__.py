"""spacetime: spatio-temporal attention for video models.

Layers go ops -> layers -> blocks -> models -> pipelines (diffusion, classify, bench, cli).
The seed texts' classes are exported here as weight-compatible drop-ins (SEED_API.md).
"""

import os as _os

# OpenMP threads that spin while waiting made CPU training steps 5-10x slower whenever another
# process shared the cores. Passive waiting costs nothing on an idle machine. Only a default:
# it must be set before torch loads, and a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import blocks, layers, ops  # noqa: E402
from .blocks import AttentionBlock, TransformerBlock  # noqa: E402
from .data.bouncing import create_dataset, create_moving_mnist_video  # noqa: E402
from .diffusion.schedules import cosine_beta_schedule  # noqa: E402
from .layers import FactorizedAttention, MHAStyleAttention, Mlp, SpaceTimeAttention  # noqa: E402
from .layers.camera import CameraAttention, CameraCrossAttention, PluckerInjection  # noqa: E402
from .models import FactorizedVideoUNet, SinusoidalTimeEmbed, VideoUNet, VideoUNetConfig  # noqa: E402
from .models.classifier import VideoTransformer, VideoTransformerConfig  # noqa: E402
from .ops import CrossFrame, Joint, Pattern, Spatial, Temporal, Window, attention, use_backend  # noqa: E402
from .seeds import (  # noqa: E402
    CausalTemporalAttention,
    FactorizedSpaceTimeBlock,
    FactorizedSpatioTemporalAttention,
    Full3DAttention,
    MiniSpaceTimeTransformer,
    MultiHeadSelfAttention,
    SpatialAttentionBlock,
    SpatioTemporalWindowAttention,
    TemporalAttentionBlock,
    TemporalTransformer,
)

__version__ = "0.1.0"

__all__ = [
    # the operator and its patterns
    "ops", "layers", "blocks", "attention", "use_backend",
    "Pattern", "Spatial", "Temporal", "Joint", "Window", "CrossFrame",
    # general modules
    "SpaceTimeAttention", "MHAStyleAttention", "FactorizedAttention", "Mlp", "AttentionBlock", "TransformerBlock",
    "CameraAttention", "PluckerInjection", "VideoUNet", "VideoUNetConfig", "VideoTransformer", "VideoTransformerConfig",
    # the seed texts' classes and functions (SEED_API.md)
    "FactorizedSpatioTemporalAttention", "SpatioTemporalWindowAttention", "CameraCrossAttention",
    "TemporalTransformer", "MiniSpaceTimeTransformer", "MultiHeadSelfAttention", "SpatialAttentionBlock",
    "TemporalAttentionBlock", "CausalTemporalAttention", "Full3DAttention", "FactorizedSpaceTimeBlock",
    "SinusoidalTimeEmbed", "FactorizedVideoUNet", "cosine_beta_schedule", "create_moving_mnist_video", "create_dataset",
]
