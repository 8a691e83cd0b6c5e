"""Attention patterns over video tokens: groupings and masks over :func:`attention`.

A pattern maps per-token queries, keys and values on the video grid,
``(b, t, h, w, heads, d)``, to the attention output on the same grid. It decides which
tokens form a sequence (frames, pixels, tubes, the whole clip) and which keys each query
may see (causal, a band of frames, the real tokens of a padded window); the softmax
itself is always :func:`spacetime.ops.attention`.

Every pattern also states its semantics densely: :meth:`Pattern.dense_mask` is the
``(t*h*w, t*h*w)`` boolean matrix of who-sees-whom. Joint attention under that mask is the
definition each pattern is tested against; the fast paths never build it.

Every built-in pattern takes ``frame_mask=`` (bool ``(b, t)``, ``True`` = real frame) for a batch
of clips padded to one length: padded frames are never keys and their outputs are zeros. The
key mask is built the same way as the keys (repeated, partitioned or gathered): one flag per
key token, broadcast over the queries unless the pattern already has a mask of its own, and no
work at all when no mask is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor

from ..checks import int_at_least, int_tuple
from .attention import attention
from .prefix import SequenceAttention, check_prefix

__all__ = ["Pattern", "Spatial", "Temporal", "Joint", "Window", "CrossFrame", "PATTERNS", "check_grid",
           "check_frame_mask"]


def check_grid(q: Tensor, k: Tensor, v: Tensor) -> tuple[int, int, int, int]:
    """Validate ``(b, t, h, w, heads, d)`` grids; return ``(b, t, h, w)``."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != 6:
            raise ValueError(f"{name} must have shape (b, t, h, w, heads, d); got {tuple(x.shape)}")
    if not (q.shape[:5] == k.shape[:5] == v.shape[:5]):
        raise ValueError(
            "q, k, v must share (b, t, h, w, heads); got "
            f"{tuple(q.shape[:5])}, {tuple(k.shape[:5])}, {tuple(v.shape[:5])}"
        )
    b, t, h, w = q.shape[:4]
    if min(b, t, h, w) == 0:
        raise ValueError(f"video grid must be non-empty; got (b, t, h, w) = {(b, t, h, w)}")
    return b, t, h, w


def check_frame_mask(frame_mask, b: int, t: int, device=None, name: str = "frame_mask") -> Tensor:
    """Validate a per-sample frame mask: bool ``(b, t)``, ``True`` = a real frame. Returns it."""
    if not isinstance(frame_mask, Tensor):
        raise TypeError(f"{name} must be a bool torch.Tensor of shape (b, t) or None; got {type(frame_mask).__name__}")
    if frame_mask.dtype != torch.bool:
        raise ValueError(f"{name} must have dtype torch.bool (True = real frame); got {frame_mask.dtype}")
    if tuple(frame_mask.shape) != (b, t):
        raise ValueError(
            f"{name} must have shape (b, t) = {(b, t)} to match the video; got {tuple(frame_mask.shape)}"
        )
    if device is not None and frame_mask.device != torch.device(device):
        raise ValueError(f"{name} must be on the device of the video ({device}); got {frame_mask.device}")
    return frame_mask


def _token_coords(t: int, h: int, w: int, device=None) -> tuple[Tensor, Tensor, Tensor]:
    """Frame, row and column index of each of the ``t*h*w`` tokens in ``(t h w)`` order."""
    tt, hh, ww = torch.meshgrid(
        torch.arange(t, device=device), torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    return tt.reshape(-1), hh.reshape(-1), ww.reshape(-1)


class Pattern:
    """Base class. Subclasses are small frozen dataclasses.

    ``pattern(q, k, v, frame_mask=m)`` with a bool ``(b, t)`` mask (``True`` = real frame) runs
    a batch of clips padded to one length: a padded frame is never a key, and the outputs at
    padded frames are zeros. A pattern opts in with ``supports_frame_mask = True`` and an
    ``_attend(..., frame_mask=...)``; the others raise ``ValueError`` when given a mask.

    A subclass implements ``_attend(q, k, v, attend)``: it groups the grids into sequences
    ``(b * g, heads, n, d)`` (batch first), calls ``attend(q, k, v, mask=None, causal=False)`` once
    (a :class:`~spacetime.ops.prefix.SequenceAttention`, which joins prefix tokens and biases) and
    puts the output back on the grid.
    """

    #: whether ``_attend`` accepts ``frame_mask=``
    supports_frame_mask: ClassVar[bool] = False

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, *, backend: str | None = None, dropout_p: float = 0.0,
                 frame_mask: Tensor | None = None, prefix: tuple[Tensor, Tensor, Tensor] | None = None,
                 prefix_mode: str = "all", bias: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """The pattern's attention on ``(b, t, h, w, heads, d)`` grids; see the module docstring.

        ``prefix``: ``(q, k, v)`` of prefix tokens, each ``(b, p, heads, d)``, that every video query
        also sees (:mod:`spacetime.ops.prefix`); the call then returns ``(out, prefix_out)``, the
        prefix queries answered as ``prefix_mode`` says (``"all"``: over every token of the clip;
        ``"mean"``: within each of the pattern's sequences, averaged). ``bias``: an additive
        ``(heads, n, m)`` bias on the scores of every sequence (a window's relative positions).
        """
        b, t, h, w = check_grid(q, k, v)
        if frame_mask is not None:
            if not self.supports_frame_mask:
                raise ValueError(f"pattern {self!r} does not support frame_mask; use one that does or pass "
                                 f"frame_mask=None")
            check_frame_mask(frame_mask, b, t, q.device)
        if prefix is not None:
            prefix = check_prefix(prefix, b, q.shape[4], q.shape[5], q)
            if frame_mask is not None and prefix_mode == "mean":
                raise ValueError("prefix_mode='mean' averages the prefix over the pattern's sequences and takes no "
                                 "frame_mask; use prefix_mode='all' with frame masks")
        heads_first = None if prefix is None else tuple(x.transpose(1, 2) for x in prefix)  # (b, heads, p, d)
        attend = SequenceAttention(b, backend=backend, dropout_p=dropout_p, prefix=heads_first,
                                   prefix_mode=prefix_mode, bias=bias)
        masks = {} if frame_mask is None else {"frame_mask": frame_mask}  # the default path: no extra work
        out = self._attend(q, k, v, attend, **masks)
        if frame_mask is not None:
            out = out.masked_fill(~frame_mask[:, :, None, None, None, None], 0.0)  # padded queries -> 0
        if prefix is None:
            return out
        prefix_out = attend.prefix_out if prefix_mode == "mean" else \
            _prefix_over_clip(heads_first, k, v, frame_mask, backend, dropout_p)
        return out, prefix_out.transpose(1, 2)  # (b, p, heads, d)

    def _attend(self, q, k, v, attend, frame_mask=None) -> Tensor:  # pragma: no cover - abstract
        """The pattern's sequences of ``q, k, v`` through ``attend`` (a :class:`SequenceAttention`)."""
        raise NotImplementedError

    def dense_mask(self, t: int, h: int, w: int, device=None) -> Tensor:
        """``(t*h*w, t*h*w)`` bool: entry ``[i, j]`` says whether token ``i`` attends to token ``j``."""
        raise NotImplementedError  # pragma: no cover - abstract

    @property
    def name(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True)
class Spatial(Pattern):
    """Attention among the ``h*w`` pixels of each frame; frames never mix.

    A frame mask needs no key mask here: padded frames only ever see themselves, and their
    outputs are zeroed by :meth:`Pattern.__call__`.
    """

    supports_frame_mask: ClassVar[bool] = True

    def _attend(self, q, k, v, attend, frame_mask=None):
        b, t, h, w = q.shape[:4]
        seq = lambda x: rearrange(x, "b t h w heads d -> (b t) heads (h w) d")  # noqa: E731
        out = attend(seq(q), seq(k), seq(v))
        return rearrange(out, "(b t) heads (h w) d -> b t h w heads d", b=b, h=h)

    def dense_mask(self, t, h, w, device=None):
        ft, _, _ = _token_coords(t, h, w, device)
        return ft[:, None] == ft[None, :]


@dataclass(frozen=True)
class Temporal(Pattern):
    """Attention across the ``t`` frames of each pixel; pixels never mix.

    Args:
        causal: frame ``i`` sees frames ``0..i`` only.
        window: if set to ``k``, frame ``i`` sees frames ``i-k..i+k`` only (``k >= 0``).
    """

    causal: bool = False
    window: int | None = None

    def __post_init__(self):
        if self.window is not None:
            int_at_least("window", self.window, 0, note=" or None (the local temporal window k: frames i-k..i+k)")

    def band_mask(self, t: int, device=None) -> Tensor | None:
        """``(t, t)`` bool band mask of the local window over frames, or ``None`` when every frame is in reach."""
        if self.window is None or self.window >= t - 1:
            return None
        idx = torch.arange(t, device=device)
        return (idx[:, None] - idx[None, :]).abs() <= self.window

    supports_frame_mask: ClassVar[bool] = True

    def _attend(self, q, k, v, attend, frame_mask=None):
        b, t, h, w, heads = q.shape[:5]
        # A prefix or a per-head bias comes per (b h w) sequence: that layout (copies). Otherwise the
        # view (b, h w heads, t, d), each pixel's heads as sequences of one clip (no copy).
        per_pixel = getattr(attend, "prefix", None) is not None or getattr(attend, "bias", None) is not None
        groups = "(b h w) heads" if per_pixel else "b (h w heads)"
        seq = lambda x: rearrange(x, f"b t h w heads d -> {groups} t d")  # noqa: E731
        mask = self.band_mask(t, q.device)
        if frame_mask is not None:  # real frames as keys: (b, t) -> (b h w | b, 1, 1, t)
            keys = repeat(frame_mask, "b t -> (b h w) 1 1 t", h=h, w=w) if per_pixel else frame_mask[:, None, None]
            mask = keys if mask is None else keys & mask
        out = attend(seq(q), seq(k), seq(v), mask=mask, causal=self.causal)
        return rearrange(out, f"{groups} t d -> b t h w heads d", b=b, h=h, w=w, heads=heads)

    def dense_mask(self, t, h, w, device=None):
        ft, fh, fw = _token_coords(t, h, w, device)
        keep = (fh[:, None] == fh[None, :]) & (fw[:, None] == fw[None, :])
        if self.causal:
            keep &= ft[None, :] <= ft[:, None]
        if self.window is not None:
            keep &= (ft[:, None] - ft[None, :]).abs() <= self.window
        return keep


@dataclass(frozen=True)
class Joint(Pattern):
    """Full attention over all ``t*h*w`` tokens (ViViT's joint space-time attention).

    On the ``sdpa`` backend the ``(thw)^2`` score matrix is never materialised.
    """

    supports_frame_mask: ClassVar[bool] = True

    def _attend(self, q, k, v, attend, frame_mask=None):
        b, t, h, w = q.shape[:4]
        seq = lambda x: rearrange(x, "b t h w heads d -> b heads (t h w) d")  # noqa: E731
        mask = None if frame_mask is None else repeat(frame_mask, "b t -> b 1 1 (t h w)", h=h, w=w)
        out = attend(seq(q), seq(k), seq(v), mask=mask)
        return rearrange(out, "b heads (t h w) d -> b t h w heads d", t=t, h=h)

    def dense_mask(self, t, h, w, device=None):
        n = t * h * w
        return torch.ones(n, n, dtype=torch.bool, device=device)


@dataclass(frozen=True)
class Window(Pattern):
    """Attention within non-overlapping 3D tubes of ``size = (wT, wH, wW)`` tokens.

    ``shift`` moves the tube grid by ``(sT, sH, sW)`` as in Video Swin's shifted windows:
    the grid is rolled and the tubes that wrap around the clip's edge are split by a mask,
    so tokens from opposite edges never meet.

    Sizes the window does not divide are padded at the end, and a padded position is never
    a key: each real token sees exactly the real tokens of its tube. (Video Swin and
    torchvision let real tokens attend to zero-padded keys.) As in Video Swin, an axis no
    longer than the window uses one window of the axis' length and no shift.
    """

    size: tuple[int, int, int] = (2, 7, 7)
    shift: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self):
        size = int_tuple("window_size", self.size, 3, axes="(wT, wH, wW)")
        shift = int_tuple("shift", self.shift, 3, low=0, axes="(sT, sH, sW)")
        for axis, s, ws in zip("THW", shift, size):
            if not 0 <= s < ws:
                raise ValueError(f"shift {shift} must satisfy 0 <= shift < window_size on each axis; got s{axis}={s} with w{axis}={ws}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "shift", shift)

    def effective(self, t: int, h: int, w: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The window and shift actually used on a ``t x h x w`` clip (clipped to the clip)."""
        size, shift = [], []
        for length, ws, s in zip((t, h, w), self.size, self.shift):
            size.append(min(ws, length))
            shift.append(0 if length <= ws else s)
        return tuple(size), tuple(shift)

    @staticmethod
    def _labels(length: int, ws: int, s: int, device=None) -> Tensor:
        """Tube index along one axis for original coordinates ``0..length-1``."""
        x = torch.arange(length, device=device)
        return torch.where(x < s, torch.zeros_like(x), 1 + torch.div(x - s, ws, rounding_mode="floor"))

    def token_labels(self, t: int, h: int, w: int, device=None) -> Tensor:
        """``(t*h*w,)`` tube id of each token in ``(t h w)`` order: two tokens attend iff their ids match."""
        size, shift = self.effective(t, h, w)
        lt, lh, lw = (self._labels(n, ws, s, device) for n, ws, s in zip((t, h, w), size, shift))
        ft, fh, fw = _token_coords(t, h, w, device)
        return (lt[ft] * (h + 1) + lh[fh]) * (w + 1) + lw[fw]  # per-axis ids are <= the axis length

    def dense_mask(self, t, h, w, device=None):
        label = self.token_labels(t, h, w, device)
        return label[:, None] == label[None, :]

    def _window_mask(self, dims, size, shift, device) -> Tensor | None:
        """``(num_windows, n, n)`` bool over the padded, rolled grid, or ``None`` if no mask is needed."""
        padded = [-(-n // ws) * ws for n, ws in zip(dims, size)]
        if padded == list(dims) and not any(shift):
            return None
        labels, valid = [], []
        for n, npad, ws, s in zip(dims, padded, size, shift):
            x = (torch.arange(npad, device=device) + s) % npad  # original coordinate at each rolled position
            labels.append(torch.where(x < s, torch.zeros_like(x), 1 + torch.div(x - s, ws, rounding_mode="floor")))
            valid.append(x < n)
        lt, lh, lw = labels
        label = (lt[:, None, None] * (padded[1] + 1) + lh[None, :, None]) * (padded[2] + 1) + lw[None, None, :]
        real = valid[0][:, None, None] & valid[1][None, :, None] & valid[2][None, None, :]
        pattern = "(nt wt) (nh wh) (nw ww) -> (nt nh nw) (wt wh ww)"
        label = rearrange(label, pattern, wt=size[0], wh=size[1], ww=size[2])
        real = rearrange(real, pattern, wt=size[0], wh=size[1], ww=size[2])
        return (label[:, :, None] == label[:, None, :]) & real[:, None, :]

    supports_frame_mask: ClassVar[bool] = True

    def _attend(self, q, k, v, attend, frame_mask=None):
        b, t, h, w = q.shape[:4]
        size, shift = self.effective(t, h, w)
        pads = [(-n) % ws for n, ws in zip((t, h, w), size)]

        def partition(x: Tensor) -> Tensor:
            if any(pads):  # F.pad pads the last axes first: (d, heads, w, h, t)
                x = F.pad(x, (0, 0, 0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
            if any(shift):
                x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
            return rearrange(
                x, "b (nt wt) (nh wh) (nw ww) heads d -> (b nt nh nw) heads (wt wh ww) d",
                wt=size[0], wh=size[1], ww=size[2],
            )

        mask = self._window_mask((t, h, w), size, shift, q.device)
        if mask is not None:  # (num_windows, n, n) -> (b * num_windows, 1, n, n)
            mask = mask.unsqueeze(0).expand(b, *mask.shape).reshape(-1, 1, *mask.shape[1:])
        if frame_mask is not None:  # real frames as keys, partitioned like k: (b nw, 1, 1, n)
            real = frame_mask[:, :, None, None, None, None].expand(b, t, h, w, 1, 1).to(q.dtype)
            keys = rearrange(partition(real) > 0.5, "bnw 1 n 1 -> bnw 1 1 n")
            mask = keys if mask is None else keys & mask
        out = attend(partition(q), partition(k), partition(v), mask=mask)
        nt, nh, nw = ((n + p) // ws for n, p, ws in zip((t, h, w), pads, size))
        out = rearrange(
            out, "(b nt nh nw) heads (wt wh ww) d -> b (nt wt) (nh wh) (nw ww) heads d",
            b=b, nt=nt, nh=nh, nw=nw, wt=size[0], wh=size[1], ww=size[2],
        )
        if any(shift):
            out = torch.roll(out, shifts=shift, dims=(1, 2, 3))
        return out[:, :t, :h, :w]


@dataclass(frozen=True)
class CrossFrame(Pattern):
    """Spatial attention that also sees the neighbouring frames.

    The pixels of frame ``i`` attend to every pixel of frames ``i-window..i+window`` (those that
    exist), the band :class:`Temporal` ``(window=...)`` names for one pixel; ``window = 0`` is plain
    spatial attention.
    """

    window: int = 1

    def __post_init__(self):
        int_at_least("window", self.window, 0, note=" (neighbour frames on each side)")

    supports_frame_mask: ClassVar[bool] = True

    def _attend(self, q, k, v, attend, frame_mask=None):
        b, t, h, w = q.shape[:4]
        reach = min(self.window, t - 1)
        span = 2 * reach + 1

        def neighbours(x: Tensor) -> Tensor:  # frames i-reach..i+reach for every frame i
            x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, 0, reach, reach))
            x = x.unfold(1, span, 1)  # (b, t, h, w, heads, d, span)
            return rearrange(x, "b t h w heads d j -> (b t) heads (j h w) d")

        qs = rearrange(q, "b t h w heads d -> (b t) heads (h w) d")
        mask = None
        if reach > 0:
            frame = torch.arange(t, device=q.device)[:, None] + torch.arange(span, device=q.device)[None, :] - reach
            real = (frame >= 0) & (frame < t)  # (t, span)
            mask = real[:, :, None].expand(t, span, h * w).reshape(t, 1, 1, span * h * w)
            mask = mask.unsqueeze(0).expand(b, *mask.shape).reshape(b * t, 1, 1, span * h * w)
        if frame_mask is not None:  # real frames as keys, gathered like k: (b t, 1, 1, span h w)
            real = frame_mask[:, :, None, None, None, None].expand(b, t, h, w, 1, 1).to(q.dtype)
            keys = rearrange(neighbours(real) > 0.5, "bt 1 m 1 -> bt 1 1 m")
            mask = keys if mask is None else keys & mask
        out = attend(qs, neighbours(k), neighbours(v), mask=mask)
        return rearrange(out, "(b t) heads (h w) d -> b t h w heads d", b=b, h=h)

    def dense_mask(self, t, h, w, device=None):
        ft, _, _ = _token_coords(t, h, w, device)
        return (ft[:, None] - ft[None, :]).abs() <= self.window


def _prefix_over_clip(prefix, k: Tensor, v: Tensor, frame_mask: Tensor | None, backend, dropout_p) -> Tensor:
    """Prefix queries ``(b, heads, p, d)`` answered over every prefix token and every real token of the clip."""
    pq, pk, pv = prefix
    flat = lambda x: rearrange(x, "b t h w heads d -> b heads (t h w) d")  # noqa: E731
    mask = None
    if frame_mask is not None:  # (b, 1, 1, p + t h w): the prefix keys, then the real frames' tokens
        real = repeat(frame_mask, "b t -> b (t hw)", hw=k.shape[2] * k.shape[3])
        mask = torch.cat([real.new_ones(real.shape[0], pk.shape[2]), real], dim=1)[:, None, None, :]
    return attention(pq, torch.cat([pk, flat(k)], dim=2), torch.cat([pv, flat(v)], dim=2), mask=mask, backend=backend,
                     dropout_p=dropout_p)


PATTERNS = {"spatial": Spatial, "temporal": Temporal, "joint": Joint, "window": Window, "cross_frame": CrossFrame}
