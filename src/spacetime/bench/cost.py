"""A cost model of video attention: pairs, FLOPs and peak memory, from the shape alone.

Pure functions of a pattern (its type and attributes) and a :class:`VideoShape`; nothing here
runs a kernel. Two pair counts are kept apart:

``useful``
    the (query, key) pairs the pattern allows: ``pattern.dense_mask(t, h, w).sum()`` per clip.
``executed``
    the pairs the kernel is handed: the full rectangle of every sequence it attends over.
    A masked pattern (causal, local temporal, cross-frame at the clip's edges, padded or
    shifted windows) executes more pairs than it uses.

FLOPs follow the usual matmul convention: ``q k^T`` and ``p v`` cost ``2 d`` each per pair
and head (softmax and masking are not counted), a linear layer ``2 * in * out`` per token, and
a backward pass twice its forward (so forward+backward is 3x forward).

Memory is a model of the peak working set of one attention layer (projections, the pattern's
regrouped copies, the backend's workspace) in bytes, over the input and the weights. How a
backend holds its scores is looked up in :data:`BACKEND_MEMORY`: ``"materialize"`` (the whole
``(n, m)`` score matrix and its softmax), ``"stream"`` (a flash kernel, ``O(n)`` workspace) or
``"chunked"`` (cache-sized chunks of scores, but the probabilities kept for the backward). A
backend the table does not know is treated as materializing: the conservative choice for
skipping shapes that would not fit. Register a new backend with one line in the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..checks import positive_int
from ..ops.patterns import CrossFrame, Joint, Pattern, Spatial, Temporal, Window

__all__ = [
    "VideoShape",
    "Pairs",
    "Cost",
    "BACKEND_MEMORY",
    "attention_pairs",
    "attention_flops",
    "projection_flops",
    "attention_memory",
    "layer_cost",
    "speedup",
]

#: how each backend holds its scores (see the module docstring); unknown backends: "materialize"
BACKEND_MEMORY: dict[str, str] = {"math": "materialize", "sdpa": "stream", "short": "chunked"}
MEMORY_KINDS = ("materialize", "stream", "chunked")
#: the score block one chunk of a ``"chunked"`` backend holds
CHUNK_BYTES = 1 << 20

MODES = ("fwd", "fwdbwd")


@dataclass(frozen=True)
class VideoShape:
    """The shape of one attention layer's input: ``(b, t, h, w, dim)`` and its head split.

    ``head_dim`` defaults to ``dim // heads``; ``bytes_per_element`` is 4 (fp32).
    """

    b: int
    t: int
    h: int
    w: int
    dim: int = 128
    heads: int = 4
    head_dim: int | None = None
    bytes_per_element: int = 4

    def __post_init__(self):
        for name in ("b", "t", "h", "w", "dim", "heads", "bytes_per_element"):
            positive_int(name, getattr(self, name))
        if self.head_dim is None:
            if self.dim % self.heads:
                raise ValueError(
                    f"dim must be divisible by heads when head_dim is None; got dim={self.dim}, heads={self.heads}")
            object.__setattr__(self, "head_dim", self.dim // self.heads)
        elif not isinstance(self.head_dim, int) or self.head_dim < 1:
            raise ValueError(f"head_dim must be a positive int or None; got {self.head_dim!r}")

    @property
    def tokens(self) -> int:
        """``b * t * h * w``."""
        return self.b * self.t * self.h * self.w

    @property
    def inner(self) -> int:
        """``heads * head_dim``, the width of q, k and v."""
        return self.heads * self.head_dim

    def label(self) -> str:
        return f"{self.t}x{self.h}x{self.w}"


@dataclass(frozen=True)
class Pairs:
    """Attention pairs of one clip (batch element), summed over its sequences (not over heads)."""

    useful: int
    executed: int

    def __add__(self, other: Pairs) -> Pairs:
        return Pairs(self.useful + other.useful, self.executed + other.executed)


@dataclass(frozen=True)
class Cost:
    """The model's numbers for one attention layer (or a factorized stack of them) on one shape.

    FLOPs and bytes are for the whole batch; ``*_flops`` are forward FLOPs (use :meth:`flops`
    for a mode). ``memory`` maps ``"fwd"``/``"fwdbwd"`` to predicted peak bytes.
    """

    pairs: Pairs
    attn_flops: int
    attn_flops_useful: int
    proj_flops: int
    memory: dict

    def flops(self, mode: str = "fwd", *, projections: bool = True) -> int:
        """Executed FLOPs of ``mode`` (``"fwd"`` or ``"fwdbwd"`` = 3x forward)."""
        _check_mode(mode)
        total = self.attn_flops + (self.proj_flops if projections else 0)
        return total * (3 if mode == "fwdbwd" else 1)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")


def _band_sum(t: int, k: int | None, causal: bool) -> int:
    """Number of (i, j) frame pairs, ``0 <= i, j < t``, with ``|i - j| <= k`` (and ``j <= i`` if causal)."""
    total = 0
    for i in range(t):
        lo = 0 if k is None else max(0, i - k)
        hi = i if causal else (t - 1 if k is None else min(t - 1, i + k))
        if k is not None and causal:
            hi = min(hi, i + k)
        total += max(0, hi - lo + 1)
    return total


def _segments(length: int, ws: int, shift: int) -> list[int]:
    """Lengths of the tube segments along one axis: ``shift`` first (if any), then ``ws`` each."""
    segs = [shift] if shift else []
    rest = length - shift
    segs += [ws] * (rest // ws) + ([rest % ws] if rest % ws else [])
    return segs


def attention_pairs(pattern: Pattern | Sequence[Pattern], t: int, h: int, w: int) -> Pairs:
    """Useful and executed (query, key) pairs of one ``t x h x w`` clip (per head).

    ``pattern`` may be a sequence of patterns applied one after the other (factorized
    attention is ``(Spatial(), Temporal())``): their pairs add up.
    """
    if not isinstance(pattern, Pattern):
        patterns = tuple(pattern)
        if not patterns or not all(isinstance(p, Pattern) for p in patterns):
            raise TypeError(f"pattern must be a Pattern or a non-empty sequence of Patterns; got {pattern!r}")
        return sum((attention_pairs(p, t, h, w) for p in patterns[1:]), attention_pairs(patterns[0], t, h, w))
    for name, n in (("t", t), ("h", h), ("w", w)):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive int; got {n!r}")
    hw = h * w
    if isinstance(pattern, Spatial):
        full = t * hw * hw
        return Pairs(full, full)
    if isinstance(pattern, Temporal):
        window = pattern.window if pattern.window is not None and pattern.window < t - 1 else None
        return Pairs(hw * _band_sum(t, window, pattern.causal), hw * t * t)
    if isinstance(pattern, Joint):
        n = t * hw
        return Pairs(n * n, n * n)
    if isinstance(pattern, CrossFrame):
        span = 2 * min(pattern.window, t - 1) + 1
        return Pairs(hw * hw * _band_sum(t, pattern.window, False), t * hw * span * hw)
    if isinstance(pattern, Window):
        size, shift = pattern.effective(t, h, w)
        useful, windows = 1, 1
        for n, ws, s in zip((t, h, w), size, shift):
            useful *= sum(seg * seg for seg in _segments(n, ws, s))
            windows *= -(-n // ws)
        tube = size[0] * size[1] * size[2]
        return Pairs(useful, windows * tube * tube)
    raise TypeError(f"pattern must be Spatial, Temporal, Joint, Window or CrossFrame; got {type(pattern).__name__}")


def _as_patterns(pattern: Pattern | Sequence[Pattern]) -> tuple[Pattern, ...]:
    return (pattern,) if isinstance(pattern, Pattern) else tuple(pattern)


def attention_flops(pattern: Pattern | Sequence[Pattern], shape: VideoShape, *, useful: bool = False) -> int:
    """Forward FLOPs of the softmax attention itself: ``4 * head_dim * heads * pairs * b``."""
    pairs = attention_pairs(pattern, shape.t, shape.h, shape.w)
    count = pairs.useful if useful else pairs.executed
    return 4 * shape.head_dim * shape.heads * count * shape.b


def projection_flops(pattern: Pattern | Sequence[Pattern], shape: VideoShape) -> int:
    """Forward FLOPs of the qkv and output projections, one pair of them per pattern in the stack."""
    per_layer = 2 * shape.tokens * shape.dim * 3 * shape.inner + 2 * shape.tokens * shape.inner * shape.dim
    return per_layer * len(_as_patterns(pattern))


def _sequences(pattern: Pattern, shape: VideoShape) -> tuple[int, int, int, int]:
    """``(sequences, n, m, mask_elements)`` of the attention call the pattern makes."""
    b, t, h, w = shape.b, shape.t, shape.h, shape.w
    if isinstance(pattern, Spatial):
        return b * t, h * w, h * w, 0
    if isinstance(pattern, Temporal):
        return b * h * w, t, t, t * t if pattern.window is not None else 0
    if isinstance(pattern, Joint):
        return b, t * h * w, t * h * w, 0
    if isinstance(pattern, CrossFrame):
        span = 2 * min(pattern.window, t - 1) + 1
        return b * t, h * w, span * h * w, (b * t * span * h * w if span > 1 else 0)
    if isinstance(pattern, Window):
        size, shift = pattern.effective(t, h, w)
        windows = math.prod(-(-n // ws) for n, ws in zip((t, h, w), size))
        tube = math.prod(size)
        padded = any(n % ws for n, ws in zip((t, h, w), size))
        return b * windows, tube, tube, (b * windows * tube * tube if padded or any(shift) else 0)
    raise TypeError(f"pattern must be Spatial, Temporal, Joint, Window or CrossFrame; got {type(pattern).__name__}")


def attention_memory(pattern: Pattern | Sequence[Pattern], shape: VideoShape, backend: str = "sdpa",
                     mode: str = "fwd", *, projections: bool = True) -> int:
    """Predicted peak working set (bytes) of one attention layer per pattern, run one after another.

    The largest layer of a stack sets the peak in ``fwd``; in ``fwdbwd`` every layer's saved
    activations are alive at once, so they add up, plus the largest backward workspace.

    Per layer (``N`` tokens, ``I = heads * head_dim``, ``E`` bytes per element):
    qkv projection ``3 N I``; the pattern's regrouped q/k/v (``N I`` for q, ``span N I`` each for
    k and v: ``span`` is the frames a cross-frame query sees, or the padding of windows); the
    attention output and its regrouped copy ``2 N I``; the output projection ``N dim``.
    Score matrices ``S = sequences * heads * n * m * E``: two alive in the forward of a
    materializing backend (scores, probabilities), three in its backward; a streaming backend
    keeps a log-sum-exp row per query instead; a chunked one holds a chunk of scores, and in
    ``fwdbwd`` keeps all the probabilities ``S`` for the backward. Masks cost 6 bytes an
    element (bool copies and a float conversion). Backward adds the gradients of everything
    saved. With ``projections=False`` (the pattern alone on given q/k/v) the projection terms
    are dropped.
    """
    _check_mode(mode)
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a backend name (str); got {type(backend).__name__}")
    E, N, inner = shape.bytes_per_element, shape.tokens, shape.inner
    saved_total, fwd_peak, bwd_workspace = 0, 0, 0
    for p in _as_patterns(pattern):
        seqs, n, m, mask_elems = _sequences(p, shape)
        q_tokens = seqs * n  # padded windows hold more tokens than the clip
        kv_tokens = seqs * m
        acts = E * inner * (q_tokens + 2 * kv_tokens + 2 * q_tokens)
        if projections:
            acts += E * (3 * N * inner + N * shape.dim)
        masks = 6 * mask_elems
        scores = E * seqs * shape.heads * n * m
        kind = BACKEND_MEMORY.get(backend, "materialize")
        if kind == "stream":
            lse = E * seqs * shape.heads * n
            work_fwd, saved, work_bwd = lse, lse, lse
        elif kind == "chunked":
            chunk = min(scores, CHUNK_BYTES + E * n * m)
            work_fwd, saved, work_bwd = chunk, scores, chunk
        else:
            work_fwd, saved, work_bwd = 2 * scores, scores, 3 * scores
        fwd_peak = max(fwd_peak, acts + masks + work_fwd)
        saved_total += acts + masks + saved
        bwd_workspace = max(bwd_workspace, acts + work_bwd)  # gradients mirror the activations
    return fwd_peak if mode == "fwd" else saved_total + bwd_workspace


def layer_cost(pattern: Pattern | Sequence[Pattern], shape: VideoShape, backend: str = "sdpa", *,
               projections: bool = True) -> Cost:
    """Pairs, FLOPs and predicted memory of attention layers with ``pattern`` on ``shape``.

    ``projections=False`` costs the pattern alone on given q/k/v (no qkv or output projection).
    """
    if not isinstance(shape, VideoShape):
        raise TypeError(f"shape must be a VideoShape; got {type(shape).__name__}")
    pairs = attention_pairs(pattern, shape.t, shape.h, shape.w)
    return Cost(
        pairs=pairs,
        attn_flops=attention_flops(pattern, shape),
        attn_flops_useful=attention_flops(pattern, shape, useful=True),
        proj_flops=projection_flops(pattern, shape) if projections else 0,
        memory={mode: attention_memory(pattern, shape, backend, mode, projections=projections) for mode in MODES},
    )


def speedup(fast: Pattern | Sequence[Pattern], slow: Pattern | Sequence[Pattern], shape: VideoShape, *,
            projections: bool = True) -> float:
    """Predicted speed-up of ``fast`` over ``slow``: the ratio of their executed forward FLOPs."""
    a, b = layer_cost(fast, shape), layer_cost(slow, shape)
    return b.flops(projections=projections) / a.flops(projections=projections)
