"""Position encodings for any number of frames: sinusoidal tables, rotary (RoPE), resampling.

Parameter-free functions; the modules that hold learned tables live in
:mod:`spacetime.layers.embeddings`.

``sinusoidal_table``
    ``(n, dim)`` features ``[sin(p f_i), cos(p f_i)]`` of arbitrary (even fractional) positions,
    so a clip of any length gets an encoding.
``rope_grid`` / ``apply_rotary``
    rotary position embedding on the ``(b, t, h, w, heads, d)`` query/key grids of a pattern:
    1-D over time (``axes="t"``) or 3-D over time, rows and columns (``axes="thw"``), where the
    head dim is split into three parts (:func:`rope_split`). Rotary makes the attention score
    of two tokens depend only on their offset, so it extends to clips longer than trained.
    ``pairs`` (:data:`ROPE_PAIRS`) says which channels turn together, ``dims`` how many channels
    each axis turns; the channels after them are left as they are.

Part ``k`` of width ``p`` (the axes in the order ``t``, ``h``, ``w``, then the unrotated rest)
turns at the frequencies ``base ** (-i / (p / 2))``, ``i < p / 2``, times the token's
coordinate on its axis. That lays out both video models with rotary in the libraries:
Wan (diffusers' ``WanRotaryPosEmbed``) is ``axes="thw", pairs="interleaved"`` with the default
split; V-JEPA 2 (transformers' ``VJEPA2RopeAttention``) is ``axes="thw",
pairs="interleaved_tiled", dims=(p, p, p)`` with ``p = 2 * ((head_dim // 3) // 2)``.
``resample_table``
    a learned ``(n, c)`` or ``(h, w, c)`` table linearly resampled to a new size (how a learned
    temporal embedding serves a different number of frames).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import is_int, one_of

__all__ = ["ROPE_AXES", "ROPE_PAIRS", "sinusoidal_table", "check_rope_dims", "rope_split", "rope_cos_sin", "rope_grid",
           "rope_at", "apply_rotary", "resample_table"]

#: the values ``SpaceTimeAttention(rope=...)`` accepts besides ``None``
ROPE_AXES = ("t", "thw")
#: which channels of a rotary part of width ``p`` turn together (``SpaceTimeAttention(rope_pairs=...)``):
#: ``"halves"``: ``i`` and ``i + p/2``, both by frequency ``i`` (GPT-NeoX, Llama; the default);
#: ``"interleaved"``: ``2i`` and ``2i + 1``, both by frequency ``i`` (GPT-J, Wan);
#: ``"interleaved_tiled"``: ``2i`` and ``2i + 1`` with the angles laid out as for ``"halves"``, channel ``j`` at
#: frequency ``j mod p/2``, so the two channels of a pair turn by different angles (V-JEPA 2's code). That is not a
#: rotation: norms change and scores are not a function of offsets alone; it is kept for the weights trained with it.
ROPE_PAIRS = ("halves", "interleaved", "interleaved_tiled")


def _check_dim(dim: int, name: str = "dim", even: bool = False) -> None:
    if not is_int(dim) or dim < 2 or (even and dim % 2):
        kind = "an even int >= 2" if even else "an int >= 2"
        raise ValueError(f"{name} must be {kind}; got {dim!r}")


def sinusoidal_table(positions: Tensor | int, dim: int, *, base: float = 10000.0) -> Tensor:
    """Sinusoidal features of positions: ``(n,) -> (n, dim)``, ``[sin(p f_i), cos(p f_i)]``.

    Args:
        positions: a 1-D tensor of positions (ints or floats, any range), or an int ``n`` for
            ``0..n-1``.
        dim: feature width; an odd ``dim`` gets one zero column at the end.
        base: the longest period; frequencies are ``f_i = base ** (-i / (dim // 2))``.

    Returns:
        fp32 ``(n, dim)`` on the device of ``positions``.
    """
    if is_int(positions):
        if positions < 1:
            raise ValueError(f"positions must be >= 1 when given as a length; got {positions}")
        positions = torch.arange(positions)
    if not isinstance(positions, Tensor) or positions.ndim != 1:
        shape = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
        raise ValueError(f"positions must be an int length or a 1-D tensor (n,); got {shape}")
    _check_dim(dim)
    if not base > 1.0:
        raise ValueError(f"base must be > 1; got {base}")
    half = dim // 2
    freqs = torch.exp(-math.log(base) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    args = positions.float()[:, None] * freqs[None, :]  # (n, half)
    table = torch.cat([args.sin(), args.cos()], dim=-1)
    if dim % 2:
        table = F.pad(table, (0, 1))
    return table


def check_rope_dims(name: str, head_dim: int, axes: str, dims) -> tuple[int, ...] | None:
    """``dims`` (``None``, or one even int >= 0 per axis of ``axes``, rotating 2 to ``head_dim`` channels in all)
    as a tuple; ``name`` is the argument's name in the error."""
    if dims is None:
        return None
    try:
        items = tuple(dims)
    except TypeError:
        items = None
    if items is None or len(items) != len(axes) or not all(is_int(p) and p >= 0 and p % 2 == 0 for p in items):
        raise ValueError(f"{name} must be None or {len(axes)} even int(s) >= 0, one per axis of {axes!r}; got {dims!r}")
    if not is_int(head_dim) or not 2 <= sum(items) <= head_dim:
        raise ValueError(f"{name} {items} must rotate 2 to head_dim={head_dim} channels in all; got {sum(items)}")
    return tuple(int(p) for p in items)


def rope_split(head_dim: int, axes: str = "thw", dims=None) -> tuple[int, ...]:
    """How rotary divides a head of ``head_dim`` channels among the axes (each part even).

    ``"t"`` uses the whole head for time. ``"thw"`` gives rows and columns ``2 * (head_dim // 6)``
    channels each and time the rest (the largest part): ``64 -> (24, 20, 20)``, ``16 -> (8, 4, 4)``.
    ``dims``: the parts given explicitly, one per axis (:func:`check_rope_dims`); the channels after
    them are not rotated, and a part of 0 leaves its axis out.
    """
    if axes not in ROPE_AXES:
        raise ValueError(f"rope axes must be one of {ROPE_AXES}; got {axes!r}")
    if dims is not None:
        return check_rope_dims("dims", head_dim, axes, dims)
    if not isinstance(head_dim, int) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"rotary needs an even head_dim >= 2; got head_dim={head_dim!r}")
    if axes == "t":
        return (head_dim,)
    if head_dim < 6:
        raise ValueError(f"3-D rotary (rope='thw') needs head_dim >= 6 (an even part per axis); got {head_dim}")
    part = 2 * (head_dim // 6)
    return (head_dim - 2 * part, part, part)


def rope_cos_sin(positions: Tensor, dim: int, *, base: float = 10000.0, pairs: str = "halves") -> tuple[Tensor, Tensor]:
    """``(n,)`` positions -> ``cos, sin`` each ``(n, dim)`` for :func:`apply_rotary`.

    Pair ``i`` turns at frequency ``base ** (-2i/dim)``. ``pairs="halves"`` (the "rotate half"
    convention of GPT-NeoX and Llama) and ``"interleaved_tiled"`` lay the angles out as
    ``[a_0 .. a_{dim/2-1}, a_0 .. a_{dim/2-1}]``, ``"interleaved"`` as ``[a_0, a_0, a_1, a_1, ..]``.
    """
    _check_dim(dim, "rotary dim", even=True)
    pairs = one_of("pairs", pairs, ROPE_PAIRS)
    half = dim // 2
    freqs = base ** (-torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[:, None] * freqs[None, :]  # (n, half)
    if pairs == "interleaved":
        angles = angles.repeat_interleave(2, dim=-1)  # (n, dim): each pair's angle on both its channels
    else:
        angles = torch.cat([angles, angles], dim=-1)  # (n, dim)
    return angles.cos(), angles.sin()


def rope_grid(t: int, h: int, w: int, head_dim: int, axes: str = "t", *, base: float = 10000.0, device=None,
              dims=None, pairs: str = "halves") -> tuple[Tensor, Tensor]:
    """``cos, sin`` of shape ``(t, h, w, 1, r)``: they broadcast over ``(b, t, h, w, heads, d)``.

    Positions are the integer frame, row and column indices; ``axes="t"`` rotates by the frame
    index only, ``axes="thw"`` by all three on the parts of :func:`rope_split` (``dims``), which
    rotate ``r`` channels in all (``head_dim`` unless ``dims`` leaves a rest). ``pairs``: see
    :func:`rope_cos_sin`.
    """
    grid = torch.stack(torch.meshgrid(*(torch.arange(n, device=device) for n in (t, h, w)), indexing="ij"), -1)
    return rope_at(grid, head_dim, axes, base=base, dims=dims, pairs=pairs)


def rope_at(positions: Tensor, head_dim: int, axes: str = "thw", *, base: float = 10000.0, dims=None,
            pairs: str = "halves") -> tuple[Tensor, Tensor]:
    """``cos, sin`` of shape ``(..., 1, r)`` for tokens at arbitrary, possibly fractional positions.

    ``positions`` is ``(..., 3)``: each token's (frame, row, column), e.g. ``(b, t, h, w, 3)``
    with rows and columns moved by a camera so that tokens showing the same point of a scene
    share a position. ``axes="t"`` uses the frame coordinate only. On integer grids this equals
    :func:`rope_grid`. ``r`` is the number of channels the parts of :func:`rope_split` rotate.
    """
    parts = rope_split(head_dim, axes, dims)
    if not isinstance(positions, Tensor) or positions.ndim < 1 or positions.shape[-1] != 3:
        got = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
        raise ValueError(f"positions must have shape (..., 3) = (frame, row, column); got {got}")
    cos_parts, sin_parts = [], []
    for axis, dim in enumerate(parts):
        if dim == 0:  # an axis left out by dims
            continue
        cos, sin = rope_cos_sin(positions[..., axis].reshape(-1), dim, base=base, pairs=pairs)  # (n, dim)
        cos_parts.append(cos.view(*positions.shape[:-1], 1, dim))
        sin_parts.append(sin.view(*positions.shape[:-1], 1, dim))
    return torch.cat(cos_parts, dim=-1), torch.cat(sin_parts, dim=-1)


def _rotate_half_parts(x: Tensor, parts: tuple[int, ...]) -> Tensor:
    """Within each part ``[a, b]`` of the last axis, ``-> [-b, a]``."""
    pieces = []
    for chunk in x.split(list(parts), dim=-1):
        a, b = chunk.chunk(2, dim=-1)
        pieces.append(torch.cat([-b, a], dim=-1))
    return torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]


def _rotate_pairs(x: Tensor) -> Tensor:
    """Each pair ``(x[2i], x[2i+1])`` of the last axis ``-> (-x[2i+1], x[2i])``."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., r/2, 2): (even, odd) channel of each pair
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor, parts: tuple[int, ...] | None = None, *,
                 pairs: str = "halves") -> Tensor:
    """Rotate ``x`` (queries or keys, last axis ``d``) by the angles of ``cos, sin`` (last axis ``r <= d``).

    ``parts`` is the split of the first ``r`` channels among axes (:func:`rope_split`); ``None`` is
    one part. ``pairs`` (:data:`ROPE_PAIRS`) says which channels turn together; ``cos, sin`` must
    come from :func:`rope_cos_sin` with the same ``pairs``. The ``d - r`` channels after the parts
    are returned as they are. Computed in fp32 at least (fp64 for fp64 ``x``) and returned in the dtype
    of ``x``. With ``"halves"`` or ``"interleaved"`` the dot product of two rotated vectors depends only on the
    difference of their positions.
    """
    width = cos.shape[-1]
    parts = (width,) if parts is None else tuple(p for p in parts if p)
    if sum(parts) != width or sin.shape[-1] != width or width > x.shape[-1] or any(p % 2 for p in parts):
        raise ValueError(f"rotary parts {parts} (each even) must sum to the cos/sin width {width} (sin: "
                         f"{sin.shape[-1]}), at most the last axis of x ({x.shape[-1]})")
    pairs = one_of("pairs", pairs, ROPE_PAIRS)
    work = torch.promote_types(x.dtype, torch.float32)  # fp32 at least; fp64 stays fp64
    xf = (x if width == x.shape[-1] else x[..., :width]).to(work)
    turned = _rotate_half_parts(xf, parts) if pairs == "halves" else _rotate_pairs(xf)
    out = (xf * cos.to(work) + turned * sin.to(work)).to(x.dtype)
    return out if width == x.shape[-1] else torch.cat([out, x[..., width:]], dim=-1)


def resample_table(table: Tensor, size: int | tuple[int, ...]) -> Tensor:
    """A learned ``(n, c)``, ``(h, w, c)`` or ``(t, h, w, c)`` table linearly resampled to ``size`` (no-op if equal).

    Uses ``align_corners=False`` (each entry is the centre of a cell), as timm resamples its
    position embeddings; a size of 1 gives the mean of the middle entries.
    """
    size = (size,) if isinstance(size, int) else tuple(size)
    if table.ndim != len(size) + 1:
        raise ValueError(f"table of shape {tuple(table.shape)} cannot be resampled to size {size}")
    if any(not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"size must be ints >= 1; got {size}")
    if tuple(table.shape[:-1]) == size:
        return table
    if len(size) > 3:
        raise ValueError(f"size must have 1 to 3 axes; got {size}")
    mode = ("linear", "bilinear", "trilinear")[len(size) - 1]
    grid = table.movedim(-1, 0).unsqueeze(0).float()  # (1, c, *old)
    out = F.interpolate(grid, size=size, mode=mode, align_corners=False)
    return out.squeeze(0).movedim(0, -1).to(table.dtype)
