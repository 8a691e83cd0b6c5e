"""Pre-norm residual transformer blocks over videos."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..layers.attention import SpaceTimeAttention, resolve_pattern
from ..layers.mlp import Mlp
from ..ops.layout import check_layout, check_video, from_channels_last, to_channels_last
from ..ops.patterns import Pattern, Spatial, Temporal

__all__ = ["AttentionBlock", "TransformerBlock"]


class AttentionBlock(nn.Module):
    """``x + attn(norm(x))`` with any attention pattern.

    Submodules: ``norm`` (LayerNorm over channels) and ``attn`` (:class:`SpaceTimeAttention`).
    Extra keywords go to the attention layer (``head_dim``, ``qkv_bias``, ``qk_norm``, ...).
    """

    def __init__(self, dim: int, num_heads: int = 8, pattern: Pattern | str = Spatial(), *,
                 layout: str = "bthwc", device=None, dtype=None, **attn_kwargs):
        super().__init__()
        self.dim, self.layout = dim, check_layout(layout)
        self.norm = nn.LayerNorm(dim, device=device, dtype=dtype)
        self.attn = SpaceTimeAttention(dim, num_heads, pattern, device=device, dtype=dtype, **attn_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        check_video(x, self.layout, self.dim)
        out = self.forward_channels_last(to_channels_last(x, self.layout))
        return from_channels_last(out, self.layout).contiguous()

    def forward_channels_last(self, x: Tensor) -> Tensor:
        return x + self.attn.forward_channels_last(self.norm(x))


class TransformerBlock(nn.Module):
    """A pre-norm residual transformer block: one attention sub-block per pattern, then an MLP.

    ``patterns=(Spatial(), Temporal())`` is a factorized (TimeSformer-style divided) block,
    ``(Temporal(), Spatial())`` runs time first, ``(Joint(),)`` is a ViViT joint block,
    ``(Window(...),)`` a Video Swin block.

    Submodules: ``attn`` (a ``ModuleList`` of :class:`AttentionBlock`), ``norm_mlp``, ``mlp``.
    """

    def __init__(self, dim: int, num_heads: int = 8, patterns: Sequence[Pattern | str] = (Spatial(), Temporal()), *,
                 mlp_ratio: float = 4.0, layout: str = "bthwc", device=None, dtype=None, **attn_kwargs):
        super().__init__()
        if isinstance(patterns, (Pattern, str)):
            patterns = (patterns,)
        if len(patterns) == 0:
            raise ValueError("patterns must name at least one attention pattern; got an empty sequence")
        self.dim, self.layout = dim, check_layout(layout)
        factory = {"device": device, "dtype": dtype}
        self.attn = nn.ModuleList(
            AttentionBlock(dim, num_heads, resolve_pattern(p), **factory, **attn_kwargs) for p in patterns
        )
        self.norm_mlp = nn.LayerNorm(dim, **factory)
        self.mlp = Mlp(dim, mlp_ratio=mlp_ratio, **factory)

    def forward(self, x: Tensor) -> Tensor:
        check_video(x, self.layout, self.dim)
        out = self.forward_channels_last(to_channels_last(x, self.layout))
        return from_channels_last(out, self.layout).contiguous()

    def forward_channels_last(self, x: Tensor) -> Tensor:
        for block in self.attn:
            x = block.forward_channels_last(x)
        return x + self.mlp(self.norm_mlp(x))
