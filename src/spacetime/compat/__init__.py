"""The classes and functions of the five design texts, as weight-compatible drop-ins (``SEED_API.md``).

Each class keeps its text's name, constructor, input layout and ``state_dict`` keys, so weights
trained with the text's code load with ``strict=True`` and give the same outputs, with the
corrected semantics of ``SEED_API.md``. They are thin front doors over the library's general
modules (layouts, backends, masks, windows), which is where new features go.

This is the outermost layer: it imports from the library, and nothing in the library imports it
(the package root re-exports its names).
"""

from ..data.bouncing import create_dataset, create_moving_mnist_video
from ..diffusion.schedules import cosine_beta_schedule
from ..layers.embeddings import SinusoidalTimeEmbed
from .attention import (
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
from .camera import CameraCrossAttention
from .unet import FactorizedVideoUNet

__all__ = [
    # text 000
    "FactorizedSpatioTemporalAttention",
    # text 001
    "SpatioTemporalWindowAttention",
    # text 002
    "CameraCrossAttention",
    # text 003
    "TemporalTransformer", "MiniSpaceTimeTransformer",
    # text 004
    "MultiHeadSelfAttention", "SpatialAttentionBlock", "TemporalAttentionBlock", "CausalTemporalAttention",
    "Full3DAttention", "FactorizedSpaceTimeBlock", "SinusoidalTimeEmbed", "FactorizedVideoUNet",
    "cosine_beta_schedule", "create_moving_mnist_video", "create_dataset",
]
