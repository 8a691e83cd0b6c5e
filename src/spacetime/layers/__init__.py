"""``nn.Module`` layers built on :mod:`spacetime.ops`."""

from .attention import FactorizedAttention, MHAStyleAttention, SpaceTimeAttention, check_heads, resolve_pattern
from .camera import CameraAttention, FourierCamera, PluckerInjection, RawCamera
from .conv import Conv3d
from .embeddings import PositionEmbedding, SinusoidalTimeEmbed, TubeletEmbedding
from .mlp import Mlp
from .window import WindowAttention

__all__ = [
    "FactorizedAttention", "MHAStyleAttention", "SpaceTimeAttention", "Mlp", "check_heads", "resolve_pattern",
    "CameraAttention", "FourierCamera", "PluckerInjection", "RawCamera", "Conv3d",
    "PositionEmbedding", "TubeletEmbedding", "SinusoidalTimeEmbed", "WindowAttention",
]
