"""The one attention operator.

Every attention pattern in spacetime ends in a call to :func:`attention`. It takes
``(b, heads, n, d)`` queries and ``(b, heads, m, d)`` keys/values, the layout of
``F.scaled_dot_product_attention``, and dispatches to a backend:

``"math"``
    explicit ``softmax(q k^T * scale + mask) v`` computed in fp32. The reference every
    test compares against; it materialises the ``(n, m)`` score matrix.
``"sdpa"`` (default)
    ``torch.nn.functional.scaled_dot_product_attention`` (a flash kernel on CPU and GPU).
``"short"``
    :mod:`spacetime.ops.short_attention`: exact attention for many short sequences,
    chunked to stay in cache, with a hand-written backward (fp32 arithmetic).
``"fused"``
    :mod:`spacetime.ops.fused_attention`: a C++ kernel built on first use (fp32 CPU, head dims
    that are multiples of 8, no dropout, masks without gradient). Where it cannot serve a call
    or could not be built, it runs the torch path ``backend=None`` would have taken without it.

Dispatch when ``backend=None``: if a process-wide default was set with
:func:`set_default_backend` or :func:`use_backend`, it is used for every call. Otherwise the
rule is by shape, device and dtype. fp32 CPU calls go to ``"fused"`` when the kernel is built
and serves them and either ``d <= FUSED_MAX_HEAD_DIM`` (16: small heads, any length) or
``max(n, m) <= FUSED_MAX_LEN`` (512: temporal attention's strided view, windows, spatial
attention over small frames). That is where it measured faster than the torch path it replaces,
forward + backward, alternating in one process (``python benchmarks/kernel_dispatch.py``, table
in ``benchmarks/kernel_dispatch.md``): 0.25-0.89x the time of ``short``/SDPA on 2 threads at
every shape of the table (head dims 8-64, n = 8-512), 0.30-0.96x on one thread but for temporal
attention with d = 64 at T = 8 (1.15x). Longer sequences with larger heads keep SDPA: at 1024
tokens with head_dim 32 the kernel ties with it, at 4096 tokens over four sequences it loses
(``benchmarks/attention.py``).
Without the kernel, fp32 CPU calls with ``n, m <= SHORT_MAX_LEN`` (32) go to ``"short"``.
Everything else goes to ``"sdpa"``; ``backend="sdpa"`` always forces it. Under ``torch.compile``
the rule is the one without the kernel (dynamo cannot trace its ``ctypes`` call).

Masks are boolean (``True`` = may attend) or additive floats, broadcastable to
``(b, heads, n, m)``. A query row with no key it may attend to yields zeros (and zero
gradient), never NaN, on every backend.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import float_tensor
from . import fused_attention as _fused
from .short_attention import short_attention

__all__ = [
    "attention",
    "available_backends",
    "default_backend",
    "set_default_backend",
    "use_backend",
    "DEFAULT_BATCH_LIMIT",
    "SHORT_MAX_LEN",
    "FUSED_MAX_LEN",
    "FUSED_MAX_HEAD_DIM",
    "select_backend",
]

#: CUDA's grid limit on the batch axis of many attention kernels: ``b * heads`` above it
#: crashes temporal attention in AnimateDiff and diffusers. We split the batch instead.
DEFAULT_BATCH_LIMIT = 65_535

#: Longest query/key length that ``backend=None`` sends to ``"short"`` on CPU (see above).
SHORT_MAX_LEN = 32

#: ``backend=None`` sends fp32 CPU calls to ``"fused"`` when the head dim is at most this ...
FUSED_MAX_HEAD_DIM = 16
#: ... or ``max(n, m)`` is at most this (module doc).
FUSED_MAX_LEN = 512

Backend = Callable[[Tensor, Tensor, Tensor, "Tensor | None", bool, float, float], Tensor]


def _math_backend(q, k, v, mask, causal, scale, dropout_p):
    """Explicit softmax attention in fp32 (the reference)."""
    dtype = q.dtype
    scores = torch.matmul(q.float(), k.float().transpose(-2, -1)) * scale  # (b heads n m)
    if causal:
        n, m = scores.shape[-2:]
        keep = torch.ones(n, m, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.float()
    probs = scores.softmax(dim=-1)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return torch.matmul(probs, v.float()).to(dtype)


def _sdpa_backend(q, k, v, mask, causal, scale, dropout_p):
    """PyTorch's fused scaled-dot-product attention."""
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal, scale=scale
    )


def _short_backend(q, k, v, mask, causal, scale, dropout_p):
    """Chunked exact attention for many short sequences (see :mod:`.short_attention`)."""
    return short_attention(q, k, v, mask=mask, causal=causal, scale=scale, dropout_p=dropout_p)


def _fused_backend(q, k, v, mask, causal, scale, dropout_p):
    """The C++ kernel of :mod:`.fused_attention`; the torch path it replaces when it cannot serve
    (or under ``torch.compile``, which cannot trace a ``ctypes`` call)."""
    if not torch.compiler.is_compiling() and _fused.available() and \
            _fused.unsupported(q, k, v, mask, dropout_p) is None:
        return _fused.fused_attention(q, k, v, mask=mask, causal=causal, scale=scale)
    fallback = _short_backend if max(q.shape[-2], k.shape[-2]) <= SHORT_MAX_LEN else _sdpa_backend
    return fallback(q, k, v, mask, causal, scale, dropout_p)


_BACKENDS: dict[str, Backend] = {"math": _math_backend, "sdpa": _sdpa_backend, "short": _short_backend,
                                 "fused": _fused_backend}
_default: str | None = None  # None: "sdpa", with short fp32 CPU sequences sent to "short"


def available_backends() -> tuple[str, ...]:
    """Names accepted by ``backend=``."""
    return tuple(_BACKENDS)


def default_backend() -> str:
    """The backend used when ``backend=None`` (``"sdpa"`` unless changed).

    While it has not been set explicitly, short fp32 CPU sequences still go to
    ``"short"``; :func:`select_backend` tells which backend a given call uses.
    """
    return _default if _default is not None else "sdpa"


def select_backend(q: Tensor, k: Tensor, backend: str | None = None, *, v: Tensor | None = None,
                   mask: Tensor | None = None, dropout_p: float = 0.0) -> str:
    """The backend :func:`attention` uses for queries ``q`` and keys ``k`` (see the module doc)."""
    if backend is not None:
        return _check_backend(backend)
    if _default is not None:
        return _default
    n, m = q.shape[-2], k.shape[-2]
    if q.device.type != "cpu" or q.dtype != torch.float32:
        return "sdpa"
    if not torch.compiler.is_compiling() and _fused_serves(q, k, v, mask, dropout_p):
        return "fused"
    return "short" if n <= SHORT_MAX_LEN and m <= SHORT_MAX_LEN else "sdpa"


def _fused_serves(q: Tensor, k: Tensor, v: Tensor | None, mask: Tensor | None, dropout_p: float) -> bool:
    """The kernel's part of the dispatch rule (module doc): small heads or short sequences."""
    short = max(q.shape[-2], k.shape[-2]) <= FUSED_MAX_LEN
    return (q.shape[-1] <= FUSED_MAX_HEAD_DIM or short) and _fused.available() and \
        _fused.unsupported(q, k, k if v is None else v, mask, dropout_p) is None


def _check_backend(name: str) -> str:
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {sorted(_BACKENDS)}; got {name!r}")
    return name


def set_default_backend(name: str) -> None:
    """Set the process-wide default backend; it then serves every ``backend=None`` call."""
    global _default
    _default = _check_backend(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run a block with another default backend: ``with use_backend("math"): model(x)``."""
    global _default
    previous, _default = _default, _check_backend(name)
    try:
        yield
    finally:
        _default = previous


def _validate(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        float_tensor(name, t, 4, form="a (b, heads, n, d) tensor")
        if t.numel() == 0:
            raise ValueError(f"{name} must be non-empty; got shape {tuple(t.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share one dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device; got {q.device}, {k.device}, {v.device}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same length m; got k m={k.shape[-2]}, v m={v.shape[-2]}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same head dim d; got q d={q.shape[-1]}, k d={k.shape[-1]}")
    if not (q.shape[:2] == k.shape[:2] == v.shape[:2]):
        raise ValueError(
            "q, k, v must have the same (b, heads); got "
            f"q {tuple(q.shape[:2])}, k {tuple(k.shape[:2])}, v {tuple(v.shape[:2])}"
        )
    if mask is not None:
        if not isinstance(mask, Tensor):
            raise TypeError(f"mask must be a torch.Tensor or None; got {type(mask).__name__}")
        if mask.dtype != torch.bool and not mask.is_floating_point():
            raise ValueError(f"mask must be bool (True = attend) or floating point (additive); got {mask.dtype}")
        if mask.device != q.device:
            raise ValueError(f"mask must be on the device of q ({q.device}); got {mask.device}")
        if mask.ndim > 4:
            raise ValueError(f"mask must broadcast to (b, heads, n, m); got {mask.ndim} dims {tuple(mask.shape)}")
        target = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        try:
            torch.broadcast_shapes(mask.shape, target)
        except RuntimeError:
            raise ValueError(
                f"mask must broadcast to (b, heads, n, m) = {target}; got {tuple(mask.shape)}"
            ) from None


def _merge_causal(mask: Tensor | None, causal: bool, n: int, m: int) -> tuple[Tensor | None, bool]:
    """With a mask, the causal rule joins it (backends then see one mask and ``causal=False``)."""
    if not causal or mask is None:
        return mask, causal
    tril = torch.ones(n, m, dtype=torch.bool, device=mask.device).tril()
    return ((mask & tril) if mask.dtype == torch.bool else mask.masked_fill(~tril, float("-inf"))), False


def _open_empty_rows(mask: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """``(mask, row_ok)``: query rows with no key they may see are opened to every key (no NaN), and
    ``row_ok (..., n, 1)`` says which rows to keep; ``None`` when every row has a key."""
    if mask is None:
        return None, None
    allowed = mask if mask.dtype == torch.bool else mask > float("-inf")
    row_ok = allowed.any(dim=-1, keepdim=True)
    # Eager: skip the fix-up when every row has a key. Compiled: no data-dependent branch.
    if not torch.compiler.is_compiling() and bool(row_ok.all()):
        return mask, None
    # let empty rows attend everywhere, then zero them: no NaN, zero gradient
    return (mask | ~row_ok if mask.dtype == torch.bool else mask.masked_fill(~row_ok, 0.0)), row_ok


def _in_batch_chunks(fn: Backend, q, k, v, mask, causal: bool, scale: float, dropout_p: float,
                     batch_limit: int) -> Tensor:
    """``fn`` on at most ``batch_limit`` of ``b * heads`` at a time, split along ``b`` (and along the heads
    when they alone exceed it); exactly equal to one call."""
    b, heads = q.shape[:2]
    if b * heads <= batch_limit:
        return fn(q, k, v, mask, causal, scale, dropout_p)
    if heads > batch_limit:  # e.g. temporal attention's (b, h w heads, t, d): split the heads first
        parts = []
        for i in range(0, heads, batch_limit):
            sl = slice(i, min(i + batch_limit, heads))
            m_sl = mask if mask is None or mask.ndim < 3 or mask.shape[-3] == 1 else mask[..., sl, :, :]
            parts.append(_in_batch_chunks(fn, q[:, sl], k[:, sl], v[:, sl], m_sl, causal, scale, dropout_p,
                                          batch_limit))
        return torch.cat(parts, dim=1)
    per_chunk = max(1, batch_limit // heads)
    parts = []
    for i in range(0, b, per_chunk):
        sl = slice(i, min(i + per_chunk, b))
        m_sl = mask if mask is None or mask.ndim < 4 or mask.shape[0] == 1 else mask[sl]
        parts.append(fn(q[sl], k[sl], v[sl], m_sl, causal, scale, dropout_p))
    return torch.cat(parts, dim=0)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    backend: str | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    batch_limit: int = DEFAULT_BATCH_LIMIT,
) -> Tensor:
    """Scaled dot-product attention, the single softmax of the library.

    Args:
        q: ``(b, heads, n, d)`` queries.
        k: ``(b, heads, m, d)`` keys.
        v: ``(b, heads, m, dv)`` values.
        mask: bool (``True`` = may attend) or additive float, broadcastable to
            ``(b, heads, n, m)``. Rows without any allowed key give zeros.
        causal: query ``i`` sees keys ``j <= i`` (top-left aligned, as in SDPA).
        backend: ``"math"``, ``"sdpa"`` or ``"short"``; ``None`` picks one as
            :func:`select_backend` says.
        scale: logit scale, ``d ** -0.5`` by default.
        dropout_p: dropout on the attention weights. Callers gate it on ``training``.
        batch_limit: the largest ``b * heads`` one kernel call gets; larger batches are
            split along ``b`` and the results concatenated (exactly equal).

    Returns:
        ``(b, heads, n, dv)`` in the dtype of ``q``.
    """
    _validate(q, k, v, mask)
    name = select_backend(q, k, backend, v=v, mask=mask, dropout_p=dropout_p)
    if batch_limit < 1:
        raise ValueError(f"batch_limit must be >= 1; got {batch_limit}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1); got {dropout_p}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite; got {scale}")
    mask, causal = _merge_causal(mask, causal, q.shape[-2], k.shape[-2])
    mask, row_ok = _open_empty_rows(mask)
    out = _in_batch_chunks(_BACKENDS[name], q, k, v, mask, causal, scale, dropout_p, batch_limit)
    return out if row_ok is None else out.masked_fill(~row_ok, 0.0)
