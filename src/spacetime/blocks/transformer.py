"""Pre-norm residual transformer blocks over videos."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..layers.attention import SpaceTimeAttention, resolve_pattern
from ..layers.mlp import Mlp
from ..ops.layout import check_layout, check_video, from_channels_last, to_channels_last
from ..ops.patterns import Pattern, Spatial, Temporal, check_frame_mask

__all__ = ["AttentionBlock", "TransformerBlock", "DropPath", "drop_path"]


def drop_path(x: Tensor, p: float = 0.0, training: bool = False, *more: Tensor) -> Tensor | tuple[Tensor, ...]:
    """Stochastic depth: zero a residual branch for a random ``p`` of the samples, scale the rest by ``1/(1-p)``.

    ``more`` tensors (the same samples' prefix tokens) share the draw; then all are returned.
    """
    if p == 0.0 or not training:
        return (x, *more) if more else x
    keep = x.new_empty(x.shape[0]).bernoulli_(1.0 - p)  # one draw per sample
    out = tuple(y * keep.view(-1, *([1] * (y.ndim - 1))) / (1.0 - p) for y in (x, *more))
    return out if more else out[0]


class DropPath(nn.Module):
    """:func:`drop_path` as a module (identity in eval mode)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop_path must be in [0, 1); got {p}")
        self.p = float(p)

    def forward(self, x: Tensor, *more: Tensor) -> Tensor | tuple[Tensor, ...]:
        return drop_path(x, self.p, self.training, *more)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _drop_path_module(p: float) -> nn.Module:
    return DropPath(p) if p > 0 else _Identity()


class _Identity(nn.Module):
    """``nn.Identity`` for one tensor or several (a block's tokens and its prefix tokens)."""

    def forward(self, x: Tensor, *more: Tensor) -> Tensor | tuple[Tensor, ...]:
        return (x, *more) if more else x


def _checked(x: Tensor, layout: str, dim: int, frame_mask: Tensor | None) -> Tensor:
    b, t, _, _ = check_video(x, layout, dim)
    if frame_mask is not None:
        check_frame_mask(frame_mask, b, t, x.device)
    return to_channels_last(x, layout)


class AttentionBlock(nn.Module):
    """``x + attn(norm(x))`` with any attention pattern.

    Submodules: ``norm`` (LayerNorm over channels, epsilon ``norm_eps``) and ``attn``
    (:class:`SpaceTimeAttention`). Extra keywords go to the attention layer (``head_dim``,
    ``qkv_bias``, ``qk_norm``, ``rope``, ``prefix_mode``, ...). ``drop_path`` is the stochastic-depth
    rate of the residual branch (training only). ``forward(x, frame_mask=None)`` passes a bool
    ``(b, t)`` frame mask to the pattern. Prefix tokens (``forward_channels_last(..., prefix=p)``)
    share the norm and the attention, unless ``sees_prefix=False``: then they pass unchanged.
    """

    def __init__(self, dim: int, num_heads: int = 8, pattern: Pattern | str = Spatial(), *,
                 layout: str = "bthwc", drop_path: float = 0.0, norm_eps: float = 1e-5, sees_prefix: bool = True,
                 device=None, dtype=None, **attn_kwargs):
        super().__init__()
        self.dim, self.layout, self.sees_prefix = dim, check_layout(layout), bool(sees_prefix)
        self.norm = nn.LayerNorm(dim, eps=norm_eps, device=device, dtype=dtype)
        self.attn = SpaceTimeAttention(dim, num_heads, pattern, device=device, dtype=dtype, **attn_kwargs)
        self.drop_path = _drop_path_module(drop_path)

    def forward(self, x: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        masks = {} if frame_mask is None else {"frame_mask": frame_mask}  # subclasses may not take one
        out = self.forward_channels_last(_checked(x, self.layout, self.dim, frame_mask), **masks)
        return from_channels_last(out, self.layout).contiguous()

    def forward_channels_last(self, x: Tensor, frame_mask: Tensor | None = None, positions: Tensor | None = None,
                              prefix: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """``positions``: rotary token positions ``(b, t, h, w, 3)`` (see :class:`SpaceTimeAttention`);
        ``prefix`` ``(b, p, c)``: prefix tokens, then ``(x, prefix)`` is returned."""
        extra = {} if positions is None else {"positions": positions}  # subclasses may not take them
        if prefix is None:
            return x + self.drop_path(self.attn.forward_channels_last(self.norm(x), frame_mask=frame_mask, **extra))
        if not self.sees_prefix:
            return x + self.drop_path(self.attn.forward_channels_last(self.norm(x), frame_mask=frame_mask,
                                                                      **extra)), prefix
        out, prefix_out = self.attn.forward_channels_last(self.norm(x), frame_mask=frame_mask, prefix=self.norm(prefix),
                                                          **extra)
        out, prefix_out = self.drop_path(out, prefix_out)
        return x + out, prefix + prefix_out


class TransformerBlock(nn.Module):
    """A pre-norm residual transformer block: one attention sub-block per pattern, then an MLP.

    ``patterns=(Spatial(), Temporal())`` is a factorized (TimeSformer-style divided) block,
    ``(Temporal(), Spatial())`` runs time first, ``(Joint(),)`` is a ViViT joint block,
    ``(Window(...),)`` a Video Swin block.

    Submodules: ``attn`` (a ``ModuleList`` of :class:`AttentionBlock`), ``norm_mlp``, ``mlp``.
    ``drop_path`` applies to every residual branch; ``forward(x, frame_mask=None)`` passes a bool
    ``(b, t)`` frame mask to every attention sub-block. ``norm_eps`` is every LayerNorm's epsilon,
    ``act`` the MLP's activation (:data:`~spacetime.layers.mlp.ACTIVATIONS`). Prefix tokens
    (``forward_channels_last(..., prefix=p)``) go through every sub-block whose ``sees_prefix``
    entry is true (one per pattern; default all) and through the MLP.
    """

    def __init__(self, dim: int, num_heads: int = 8, patterns: Sequence[Pattern | str] = (Spatial(), Temporal()), *,
                 mlp_ratio: float = 4.0, layout: str = "bthwc", drop_path: float = 0.0, norm_eps: float = 1e-5,
                 act: str = "gelu", sees_prefix: Sequence[bool] | None = None, device=None, dtype=None,
                 **attn_kwargs):
        super().__init__()
        if isinstance(patterns, (Pattern, str)):
            patterns = (patterns,)
        if len(patterns) == 0:
            raise ValueError("patterns must name at least one attention pattern; got an empty sequence")
        sees_prefix = (True,) * len(patterns) if sees_prefix is None else tuple(sees_prefix)
        if len(sees_prefix) != len(patterns):
            raise ValueError(f"sees_prefix needs one entry per pattern ({len(patterns)}); got {sees_prefix!r}")
        self.dim, self.layout = dim, check_layout(layout)
        factory = {"device": device, "dtype": dtype}
        self.attn = nn.ModuleList(
            AttentionBlock(dim, num_heads, resolve_pattern(p), drop_path=drop_path, norm_eps=norm_eps,
                           sees_prefix=seen, **factory, **attn_kwargs)
            for p, seen in zip(patterns, sees_prefix)
        )
        self.norm_mlp = nn.LayerNorm(dim, eps=norm_eps, **factory)
        self.mlp = Mlp(dim, mlp_ratio=mlp_ratio, act=act, **factory)
        self.drop_path = _drop_path_module(drop_path)

    def forward(self, x: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        out = self.forward_channels_last(_checked(x, self.layout, self.dim, frame_mask), frame_mask=frame_mask)
        return from_channels_last(out, self.layout).contiguous()

    def forward_channels_last(self, x: Tensor, frame_mask: Tensor | None = None, positions: Tensor | None = None,
                              prefix: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """``positions``: rotary token positions ``(b, t, h, w, 3)`` (see :class:`SpaceTimeAttention`);
        ``prefix`` ``(b, p, c)``: prefix tokens, then ``(x, prefix)`` is returned."""
        extra = {} if positions is None else {"positions": positions}
        if prefix is None:
            for block in self.attn:
                x = block.forward_channels_last(x, frame_mask=frame_mask, **extra)
            return x + self.drop_path(self.mlp(self.norm_mlp(x)))
        for block in self.attn:
            x, prefix = block.forward_channels_last(x, frame_mask=frame_mask, prefix=prefix, **extra)
        out, prefix_out = self.drop_path(self.mlp(self.norm_mlp(x)), self.mlp(self.norm_mlp(prefix)))
        return x + out, prefix + prefix_out
