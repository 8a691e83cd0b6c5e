"""Attention layers over video tensors: projections around one pattern."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import float_tensor, one_of
from ..ops.encodings import ROPE_AXES, ROPE_PAIRS, apply_rotary, check_rope_dims, rope_at, rope_grid, rope_split
from ..ops.layout import check_layout, check_video, from_channels_last, to_channels_last
from ..ops.patterns import PATTERNS, Pattern, Spatial, Temporal, check_frame_mask
from ..ops.prefix import PREFIX_MODES

__all__ = ["SpaceTimeAttention", "MHAStyleAttention", "FactorizedAttention", "resolve_pattern", "check_heads",
           "check_tokens"]


def resolve_pattern(pattern: Pattern | str) -> Pattern:
    """A :class:`Pattern` instance, or the name of one with default settings."""
    if isinstance(pattern, Pattern):
        return pattern
    if isinstance(pattern, str) and pattern in PATTERNS:
        return PATTERNS[pattern]()
    raise ValueError(f"pattern must be a Pattern instance or one of {sorted(PATTERNS)}; got {pattern!r}")


def check_tokens(x, b: int, dim: int, name: str = "prefix") -> Tensor:
    """A ``(b, p, dim)`` tensor of tokens beside a video grid (prefix tokens), checked."""
    float_tensor(name, x, 3, form=f"a (b, p, dim) = ({b}, p, {dim}) tensor of tokens")
    if x.shape[0] != b or x.shape[2] != dim or x.shape[1] < 1:
        raise ValueError(f"{name} must be (b, p, dim) = ({b}, p >= 1, {dim}); got {tuple(x.shape)}")
    return x


def check_heads(dim: int, num_heads: int, head_dim: int | None = None) -> int:
    """Validate the head split and return the head dimension."""
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive int; got {dim!r}")
    if not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int; got {num_heads!r}")
    if head_dim is None:
        if dim % num_heads:
            raise ValueError(f"dim must be divisible by num_heads; got dim={dim}, num_heads={num_heads}")
        return dim // num_heads
    if not isinstance(head_dim, int) or head_dim < 1:
        raise ValueError(f"head_dim must be a positive int or None; got {head_dim!r}")
    return head_dim


class SpaceTimeAttention(nn.Module):
    """Multi-head self-attention over a video with any :mod:`~spacetime.ops.patterns` pattern.

    ``x -> qkv projection -> pattern attention -> output projection``; no norm, no residual.

    Args:
        dim: channels of the input.
        num_heads: attention heads.
        pattern: a :class:`~spacetime.ops.Pattern` (``Spatial()``, ``Temporal(causal=True)``,
            ``Window((2, 7, 7), shift=(1, 3, 3))``, ...) or its name.
        head_dim: per-head width; ``dim // num_heads`` by default.
        qkv_bias: bias on the qkv projection.
        qk_norm: LayerNorm on each head's queries and keys.
        attn_drop, proj_drop: dropout on attention weights and on the output (training only).
        layout: axis order of the input and output, one of ``"bcthw"``, ``"btchw"``, ``"bthwc"``.
        backend: attention backend for this module; ``None`` follows the global default.
        rope: rotary position embedding of queries and keys before the pattern: ``None``,
            ``"t"`` (by frame index) or ``"thw"`` (frame, row and column on three parts of each
            head, see :func:`~spacetime.ops.encodings.rope_split`). Works with every pattern and
            any clip length.
        rope_base: the longest rotary period.
        rope_pairs: which channels turn together (:data:`~spacetime.ops.encodings.ROPE_PAIRS`):
            ``"halves"`` (channel ``i`` with ``i + p/2`` of each part, the default), ``"interleaved"``
            (``2i`` with ``2i + 1``, Wan's) or ``"interleaved_tiled"`` (V-JEPA 2's).
        rope_dims: ``None`` (the split of :func:`~spacetime.ops.encodings.rope_split`), or the
            rotated channels of each axis of ``rope``, ``(dt,)`` or ``(dt, dh, dw)``, each even, at
            most ``head_dim`` in all; the rest of each head is not rotated. V-JEPA 2:
            ``(p, p, p)`` with ``p = 2 * ((head_dim // 3) // 2)``.
        prefix_mode: how prefix tokens (``forward(..., prefix=...)``) are answered: ``"all"``, over
            every token of the clip, or ``"mean"``, within each of the pattern's sequences and
            averaged (TimeSformer's class token; :mod:`spacetime.ops.prefix`).

    Parameters: ``qkv`` (``dim -> 3 * heads * head_dim``, q/k/v then heads), ``proj``.

    ``forward(x, frame_mask=None)``: a bool ``(b, t)`` mask (``True`` = real frame) keeps padded
    frames out of every key set and makes the layer's output zero at them (see
    :class:`~spacetime.ops.Pattern`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        pattern: Pattern | str = Spatial(),
        *,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        layout: str = "bthwc",
        backend: str | None = None,
        rope: str | None = None,
        rope_base: float = 10000.0,
        rope_pairs: str = "halves",
        rope_dims: tuple[int, ...] | None = None,
        prefix_mode: str = "all",
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = check_heads(dim, num_heads, head_dim)
        if rope is not None and rope not in ROPE_AXES:
            raise ValueError(f"rope must be None or one of {ROPE_AXES}; got {rope!r}")
        self.rope, self.rope_base = rope, float(rope_base)
        self.rope_pairs = one_of("rope_pairs", rope_pairs, ROPE_PAIRS)
        if rope is None and (rope_dims is not None or rope_pairs != "halves"):
            raise ValueError(f"rope_dims and rope_pairs shape the rotary embedding: build the layer with rope='t' or "
                             f"rope='thw'; got rope=None, rope_pairs={rope_pairs!r}, rope_dims={rope_dims!r}")
        self.rope_dims = check_rope_dims("rope_dims", self.head_dim, rope, rope_dims) if rope is not None else None
        self.rope_parts = rope_split(self.head_dim, rope, self.rope_dims) if rope is not None else None
        self.inner_dim = self.num_heads * self.head_dim
        self.pattern = resolve_pattern(pattern)
        self.layout = check_layout(layout)
        self.backend = backend
        self.prefix_mode = one_of("prefix_mode", prefix_mode, PREFIX_MODES)
        self.attn_drop = float(attn_drop)
        factory = {"device": device, "dtype": dtype}
        self._build_projections(qkv_bias, factory)
        self.q_norm = nn.LayerNorm(self.head_dim, **factory) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, **factory) if qk_norm else nn.Identity()
        self.proj_drop = nn.Dropout(proj_drop)

    def _build_projections(self, qkv_bias: bool, factory: dict) -> None:
        self.qkv = nn.Linear(self.dim, 3 * self.inner_dim, bias=qkv_bias, **factory)
        self.proj = nn.Linear(self.inner_dim, self.dim, **factory)

    def _project_qkv(self, x: Tensor) -> Tensor:
        return self.qkv(x)

    def _project_out(self, x: Tensor) -> Tensor:
        return self.proj(x)

    def forward(self, x: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        """``x`` in ``self.layout`` -> same shape; ``frame_mask`` bool ``(b, t)``, ``True`` = real frame."""
        b, t, _, _ = check_video(x, self.layout, self.dim)
        if frame_mask is not None:
            check_frame_mask(frame_mask, b, t, x.device)
        out = self.forward_channels_last(to_channels_last(x, self.layout), frame_mask=frame_mask)
        return from_channels_last(out, self.layout).contiguous()

    def forward_channels_last(self, x: Tensor, frame_mask: Tensor | None = None, positions: Tensor | None = None,
                              prefix: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """``(b, t, h, w, c)`` -> ``(b, t, h, w, c)`` without layout checks (for composing blocks).

        ``positions`` ``(b, t, h, w, 3)``: the (frame, row, column) rotary positions of the tokens
        instead of their grid indices (:func:`~spacetime.ops.encodings.rope_at`); needs ``rope``.
        ``prefix`` ``(b, p, c)``: prefix tokens (a CLS token, registers) with the same projections,
        no rotary position; every token sees them, and they are answered as ``prefix_mode`` says.
        Returns ``(out, prefix_out)`` when a prefix is given.
        """
        b, t, h, w, _ = x.shape
        q, k, v = self._qkv(x)  # each (b, t, h, w, heads, d)
        q, k = self._rotate(q, k, positions)
        drop = self.attn_drop if self.training else 0.0
        extra = {"bias": bias} if (bias := self.attention_bias(t, h, w, x.device)) is not None else {}
        if prefix is not None:
            check_tokens(prefix, b, self.dim, "prefix")
            extra.update(prefix=self._qkv(prefix), prefix_mode=self.prefix_mode)
        out = self.pattern(q, k, v, backend=self.backend, dropout_p=drop, frame_mask=frame_mask, **extra)
        out, prefix_out = out if prefix is not None else (out, None)
        out = self.proj_drop(self._project_out(out.reshape(b, t, h, w, self.inner_dim)))
        if frame_mask is not None:  # padded frames output zeros (not the projection's bias)
            out = out.masked_fill(~frame_mask[:, :, None, None, None], 0.0)
        if prefix is None:
            return out
        return out, self.proj_drop(self._project_out(prefix_out.reshape(b, -1, self.inner_dim)))

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(..., c)`` tokens -> q, k, v ``(..., heads, d)``, queries and keys normed (``qk_norm``)."""
        q, k, v = self._project_qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).unbind(dim=-3)
        return self.q_norm(q), self.k_norm(k), v

    def _rotate(self, q: Tensor, k: Tensor, positions: Tensor | None) -> tuple[Tensor, Tensor]:
        """Rotary positions on ``(b, t, h, w, heads, d)`` queries and keys: the grid's, or ``positions``."""
        b, t, h, w = q.shape[:4]
        if positions is not None:
            if self.rope is None:
                raise ValueError("positions set the rotary positions of the tokens: build the layer with rope='t' or "
                                 "rope='thw'")
            if tuple(positions.shape) != (b, t, h, w, 3):
                raise ValueError(f"positions must have shape (b, t, h, w, 3) = {(b, t, h, w, 3)}; "
                                 f"got {tuple(positions.shape)}")
            cos, sin = rope_at(positions, self.head_dim, self.rope, **self._rope_options())  # (b, t, h, w, 1, r)
        elif self.rope is not None:  # cos, sin: (t, h, w, 1, r), broadcast over b and heads
            cos, sin = rope_grid(t, h, w, self.head_dim, self.rope, device=q.device, **self._rope_options())
        else:
            return q, k
        parts, pairs = self.rope_parts, self.rope_pairs  # sum(parts) = r <= d channels rotated, the rest kept
        return apply_rotary(q, cos, sin, parts, pairs=pairs), apply_rotary(k, cos, sin, parts, pairs=pairs)

    def _rope_options(self) -> dict:
        return {"base": self.rope_base, "dims": self.rope_dims, "pairs": self.rope_pairs}

    def attention_bias(self, t: int, h: int, w: int, device=None) -> Tensor | None:
        """An additive ``(heads, n, m)`` bias on the scores of the pattern's sequences (``None``: none). Layers
        with a relative-position bias (Swin's windows) override this."""
        return None

    def extra_repr(self) -> str:
        rope = f", rope={self.rope!r}" if self.rope is not None else ""
        rope += f", rope_pairs={self.rope_pairs!r}" if self.rope_pairs != "halves" else ""
        rope += f", rope_dims={self.rope_dims}" if self.rope_dims is not None else ""
        return f"dim={self.dim}, num_heads={self.num_heads}, pattern={self.pattern}, layout={self.layout!r}{rope}"


class MHAStyleAttention(SpaceTimeAttention):
    """:class:`SpaceTimeAttention` with ``nn.MultiheadAttention``'s parameter names.

    ``in_proj_weight``, ``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``: a state_dict
    of an ``nn.MultiheadAttention(dim, num_heads)`` loads with ``strict=True``.
    """

    def _build_projections(self, qkv_bias: bool, factory: dict) -> None:
        if self.inner_dim != self.dim:
            raise ValueError(f"MHAStyleAttention needs head_dim * num_heads == dim; got {self.inner_dim} != {self.dim}")
        self.in_proj_weight = nn.Parameter(torch.empty(3 * self.dim, self.dim, **factory))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * self.dim, **factory)) if qkv_bias else None
        self.out_proj = nn.Linear(self.dim, self.dim, **factory)
        nn.init.xavier_uniform_(self.in_proj_weight)  # as nn.MultiheadAttention initialises
        nn.init.zeros_(self.out_proj.bias)

    def _project_qkv(self, x: Tensor) -> Tensor:
        return F.linear(x, self.in_proj_weight, self.in_proj_bias)

    def _project_out(self, x: Tensor) -> Tensor:
        return self.out_proj(x)


class FactorizedAttention(nn.Module):
    """Spatial attention within each frame, then temporal attention per pixel (or the reverse).

    No norm and no residual: the attention of text 000. ``order="time_space"`` runs the
    temporal layer first. Submodules: ``spatial_attn`` and ``temporal_attn``, built by
    ``attention_cls`` (``SpaceTimeAttention`` or ``MHAStyleAttention``).
    """

    ORDERS = ("space_time", "time_space")

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        *,
        order: str = "space_time",
        temporal: Temporal = Temporal(),
        layout: str = "bthwc",
        attention_cls: type[SpaceTimeAttention] = SpaceTimeAttention,
        **kwargs,
    ):
        super().__init__()
        if order not in self.ORDERS:
            raise ValueError(f"order must be one of {self.ORDERS}; got {order!r}")
        if not isinstance(temporal, Temporal):
            raise ValueError(f"temporal must be a Temporal pattern; got {temporal!r}")
        self.dim, self.order, self.layout = dim, order, check_layout(layout)
        self.spatial_attn = attention_cls(dim, num_heads, Spatial(), **kwargs)
        self.temporal_attn = attention_cls(dim, num_heads, temporal, **kwargs)

    def forward(self, x: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        """``x`` in ``self.layout`` -> same shape; ``frame_mask`` bool ``(b, t)``, ``True`` = real frame."""
        b, t, _, _ = check_video(x, self.layout, self.dim)
        if frame_mask is not None:
            check_frame_mask(frame_mask, b, t, x.device)
        x = to_channels_last(x, self.layout)
        first, second = (self.spatial_attn, self.temporal_attn)
        if self.order == "time_space":
            first, second = second, first
        x = first.forward_channels_last(x, frame_mask=frame_mask)
        x = second.forward_channels_last(x, frame_mask=frame_mask)
        return from_channels_last(x, self.layout).contiguous()
