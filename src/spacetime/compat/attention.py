"""The attention classes of design texts 000, 001, 003 and 004, as drop-in front doors over the library.

Each class keeps its text's name, constructor, input layout and ``state_dict`` keys (see
:mod:`spacetime.compat`); the work is done by the general modules of :mod:`spacetime.layers` and
:mod:`spacetime.blocks`, and nothing here computes attention.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..blocks.transformer import AttentionBlock
from ..layers.attention import FactorizedAttention, MHAStyleAttention, SpaceTimeAttention
from ..layers.mlp import Mlp
from ..ops.layout import check_video
from ..ops.patterns import Joint, Spatial, Temporal, Window

__all__ = [
    "FactorizedSpatioTemporalAttention",
    "SpatioTemporalWindowAttention",
    "TemporalTransformer",
    "MiniSpaceTimeTransformer",
    "MultiHeadSelfAttention",
    "SpatialAttentionBlock",
    "TemporalAttentionBlock",
    "CausalTemporalAttention",
    "Full3DAttention",
    "FactorizedSpaceTimeBlock",
]


def _check_tokens(x: Tensor, dims: str, dim: int) -> None:
    """Validate a token tensor whose axes are named by ``dims`` (last one is channels)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
    shape = "(" + ", ".join(dims) + ")"
    if x.ndim != len(dims):
        raise ValueError(f"x must have shape {shape}; got {x.ndim} dims {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point; got dtype {x.dtype}")
    if x.shape[-1] != dim:
        raise ValueError(f"x must have {dims[-1]}={dim} channels on its last axis {shape}; got {tuple(x.shape)}")
    for name, size in zip(dims, x.shape):
        if size == 0:
            raise ValueError(f"x must have non-empty {name}; got shape {tuple(x.shape)}")


# --- text 000 -------------------------------------------------------------------------------


class FactorizedSpatioTemporalAttention(FactorizedAttention):
    """Text 000: multi-head attention over the pixels of each frame, then over the frames of each pixel.

    Input and output ``(B, T, C, H, W)``; no norm, no residual. ``spatial_attn`` and
    ``temporal_attn`` carry ``nn.MultiheadAttention``'s parameter names.
    """

    def __init__(self, dim: int, num_heads: int = 8):
        super().__init__(dim, num_heads, layout="btchw", attention_cls=MHAStyleAttention)


# --- text 001 -------------------------------------------------------------------------------


class SpatioTemporalWindowAttention(SpaceTimeAttention):
    """Text 001: self-attention within non-overlapping ``(wT, wH, wW)`` tubes of a ``(B, C, T, H, W)`` video.

    Sizes the window does not divide are padded and padded positions are never keys.
    Parameters ``qkv`` and ``proj``; no residual.
    """

    def __init__(self, dim: int, num_heads: int, window_size):
        super().__init__(dim, num_heads, Window(window_size), layout="bcthw")
        self.window_size = self.pattern.size
        self.scale = self.head_dim**-0.5


# --- text 003 -------------------------------------------------------------------------------


class TemporalTransformer(nn.Module):
    """Text 003: a post-norm transformer layer over time, on sequence-first ``(T, B, D)`` input.

    ``x = norm1(x + attn(x)); x = norm2(x + ffn(x))``.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.dim = dim
        self.attn = MHAStyleAttention(dim, num_heads, Temporal())
        self.ffn = Mlp(dim, 4 * dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        _check_tokens(x, ("T", "B", "D"), self.dim)
        video = x.transpose(0, 1)[:, :, None, None, :]  # (B, T, 1, 1, D): one pixel per frame
        x = self.norm1(x + self.attn.forward_channels_last(video)[:, :, 0, 0].transpose(0, 1))
        return self.norm2(x + self.ffn(x))


class MiniSpaceTimeTransformer(nn.Module):
    """Text 003: the N patches of each frame attend to each other, then each patch across the T frames.

    Input and output ``(B, T, N, D)``. (The text loops over frames and hands ``(B, N, D)`` to a
    sequence-first attention, which mixes the batch; this is the intended semantics.)
    """

    def __init__(self, dim: int = 3, num_heads: int = 1):
        super().__init__()
        self.dim = dim
        self.spatial = MHAStyleAttention(dim, num_heads, Spatial())
        self.temporal = MHAStyleAttention(dim, num_heads, Temporal())

    def forward(self, x: Tensor) -> Tensor:
        _check_tokens(x, ("B", "T", "N", "D"), self.dim)
        video = x[:, :, :, None, :]  # (B, T, N, 1, D): patches as a one-column frame
        return self.temporal.forward_channels_last(self.spatial.forward_channels_last(video))[:, :, :, 0]


# --- text 004 -------------------------------------------------------------------------------


class MultiHeadSelfAttention(SpaceTimeAttention):
    """Text 004: standard multi-head self-attention on ``(B, N, C)`` tokens. Parameters ``qkv``, ``proj``."""

    def __init__(self, dim: int, num_heads: int = 4):
        super().__init__(dim, num_heads, Joint())

    def forward(self, x: Tensor) -> Tensor:
        _check_tokens(x, ("B", "N", "C"), self.dim)
        return self.forward_channels_last(x[:, None, :, None, :])[:, 0, :, 0]


class SpatialAttentionBlock(AttentionBlock):
    """Text 004: pre-norm residual attention over the pixels of each frame, ``(B, T, H, W, C)``."""

    def __init__(self, dim: int, num_heads: int = 4):
        super().__init__(dim, num_heads, Spatial(), layout="bthwc")


class TemporalAttentionBlock(AttentionBlock):
    """Text 004: pre-norm residual attention over the frames of each pixel, ``(B, T, H, W, C)``."""

    def __init__(self, dim: int, num_heads: int = 4):
        super().__init__(dim, num_heads, Temporal(), layout="bthwc")


class Full3DAttention(AttentionBlock):
    """Text 004: pre-norm residual attention over all ``T*H*W`` tokens, ``(B, T, H, W, C)``."""

    def __init__(self, dim: int, num_heads: int = 4):
        super().__init__(dim, num_heads, Joint(), layout="bthwc")


class CausalTemporalAttention(SpaceTimeAttention):
    """Text 004: the temporal block with a causal mask: frame t sees frames 0..t only.

    ``(B, T, H, W, C)``; parameters ``norm``, ``qkv``, ``proj`` (flat, as in the text).
    """

    def __init__(self, dim: int, num_heads: int = 4):
        super().__init__(dim, num_heads, Temporal(causal=True), layout="bthwc")
        self.norm = nn.LayerNorm(dim)

    def forward_channels_last(self, x: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        return x + super().forward_channels_last(self.norm(x), frame_mask=frame_mask)


class FactorizedSpaceTimeBlock(nn.Module):
    """Text 004: spatial block, temporal block, then a pre-norm residual GELU MLP, on ``(B, T, H, W, C)``."""

    def __init__(self, dim: int, num_heads: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        self.dim = dim
        self.spatial_attn = SpatialAttentionBlock(dim, num_heads)
        self.temporal_attn = TemporalAttentionBlock(dim, num_heads)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        check_video(x, "bthwc", self.dim)
        return self.forward_channels_last(x)

    def forward_channels_last(self, x: Tensor) -> Tensor:
        x = self.temporal_attn.forward_channels_last(self.spatial_attn.forward_channels_last(x))
        return x + self.ff(self.norm_ff(x))
