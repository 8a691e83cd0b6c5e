"""spacetime: spatio-temporal attention for video models.

Layers go ops -> layers -> blocks -> models -> pipelines. The seed texts' classes are
exported here as weight-compatible drop-ins (see :mod:`spacetime.seeds`).
"""

from . import blocks, layers, ops
from .blocks import AttentionBlock, TransformerBlock
from .layers import FactorizedAttention, MHAStyleAttention, Mlp, SpaceTimeAttention
from .ops import CrossFrame, Joint, Pattern, Spatial, Temporal, Window, attention, use_backend
from .seeds import (
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
    "ops", "layers", "blocks", "attention", "use_backend",
    "Pattern", "Spatial", "Temporal", "Joint", "Window", "CrossFrame",
    "SpaceTimeAttention", "MHAStyleAttention", "FactorizedAttention", "Mlp", "AttentionBlock", "TransformerBlock",
    "FactorizedSpatioTemporalAttention", "SpatioTemporalWindowAttention", "TemporalTransformer",
    "MiniSpaceTimeTransformer", "MultiHeadSelfAttention", "SpatialAttentionBlock", "TemporalAttentionBlock",
    "CausalTemporalAttention", "Full3DAttention", "FactorizedSpaceTimeBlock",
]
