"""Exact attention for many short sequences on CPU (the ``"short"`` backend).

Temporal attention is ``b*h*w`` independent sequences of ``t <= 32`` frames. Every
general kernel spends most of its time per sequence there (tiny GEMMs, a softmax over
rows of 8-32 values), not on arithmetic. This kernel computes the same
``softmax(q k^T * scale + mask) v`` with these changes (``benchmarks/temporal_attention.md``
has the numbers):

1. **Chunks.** The ``(b*heads)`` sequences are processed in chunks of about 1 MiB of
   scores with reused buffers. This bounds the temporaries; the speed was the same for
   chunks from 128 KiB to the whole batch (the batched GEMMs dominate).
2. **Transposed scores.** Scores are kept as ``s^T`` (``(chunk, m, n)``): the softmax sum
   over keys is then a reduction over a non-innermost axis, which PyTorch vectorises across
   queries (~2x faster than summing rows of 16 contiguous values). Both products with the
   probabilities read the transposed operand for free (BLAS ``transa``).
3. **Base-2 exponent, cheap row maxima.** ``log2(e)`` is folded into the GEMM's ``alpha``
   so that ``exp2`` is used: ``torch.exp`` on CPU (MKL) was 13x slower on ``-inf`` (every
   masked logit) and 130x slower on inputs below ``-87`` (denormal results); ``exp2`` was
   not slower. The per-query maximum is a halving tree of ``torch.maximum`` (2.5x faster
   than ``amax`` over 8 or 16 keys). A single maximum per sequence would be faster still, but it lets a masked key
   change the rounding of other rows: causal attention would no longer ignore the future
   exactly, so it is not used.
4. **A hand-written backward** that reuses the stored probabilities and does every pass on
   the cache-resident chunk.

Masks (bool or additive float, with gradient for float masks), ``causal`` and
``dropout_p`` are all served. Dropout draws its mask exactly as ``F.dropout`` does on the
``(b, heads, n, m)`` probabilities, so ``"short"`` equals ``"math"`` under one seed.

The arithmetic is fp32 (inputs of other dtypes are converted, like ``"math"``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["short_attention", "CHUNK_BYTES"]

#: Target size of one chunk's score block; 1 MiB keeps a chunk in a core's L2 cache.
CHUNK_BYTES = 1 << 20

_LOG2E = 1.0 / math.log(2.0)


def _chunk_size(total: int, n: int, m: int) -> int:
    return max(1, min(total, CHUNK_BYTES // (4 * n * m)))


def _scores_t(out: Tensor, q: Tensor, k: Tensor, bias_t: Tensor | None, alpha: float) -> Tensor:
    """``out <- alpha * k q^T + bias_t``: transposed base-2 logits, ``(c, m, n)``."""
    q_t = q.transpose(1, 2)  # (c, d, n) view: BLAS reads it transposed, no copy
    if bias_t is None:
        return torch.baddbmm(out, k, q_t, beta=0.0, alpha=alpha, out=out)  # (c, m, d) @ (c, d, n)
    out.copy_(bias_t)
    return out.baddbmm_(k, q_t, beta=1.0, alpha=alpha)


def _max_tree(st: Tensor) -> Tensor:
    """``(c, 1, n)`` maximum over axis 1 of ``st`` by halving with ``torch.maximum``."""
    x = st
    while x.shape[1] > 1:
        half = x.shape[1] // 2
        folded = torch.maximum(x[:, :half], x[:, half : 2 * half])
        if x.shape[1] % 2:
            folded[:, :1] = torch.maximum(folded[:, :1], x[:, 2 * half :])
        x = folded
    return x


def _row_max_t(st: Tensor) -> Tensor:
    """``(c, 1, n)`` maximum over axis 1 of ``st`` (``(c, m, n)``).

    For ``m <= 16`` the halving tree (each step vectorised over the contiguous ``n``) is
    ~2.5x faster than ``amax(dim=1)``; at 32 keys ``amax`` wins.
    """
    return st.amax(dim=1, keepdim=True) if st.shape[1] > 16 else _max_tree(st)


def _softmax_t(st: Tensor) -> None:
    """In-place softmax over axis 1 of transposed base-2 logits ``st`` (``(c, m, n)``).

    Each query's own maximum is subtracted, so a key it may not see (``-inf``) cannot change
    a single bit of its result: causal attention ignores the future exactly.
    """
    st.sub_(_row_max_t(st)).exp2_()
    st.div_(st.sum(dim=1, keepdim=True))


class _ShortAttention(torch.autograd.Function):
    """``(B, n, d)`` fp32 q, ``(B, m, d)`` k, ``(B, m, dv)`` v; bias_t ``(B|1, m, n)`` base-2."""

    @staticmethod
    def forward(ctx, q, k, v, bias_t, noise_t, scale):
        total, n, _ = q.shape
        m, dv = k.shape[1], v.shape[2]
        alpha = scale * _LOG2E
        keep_probs = any(ctx.needs_input_grad)
        step = _chunk_size(total, n, m)
        out = q.new_empty(total, n, dv)
        probs_t = q.new_empty(total, m, n) if keep_probs else q.new_empty(step, m, n)
        dropped = q.new_empty(step, m, n) if noise_t is not None else None
        for lo in range(0, total, step):
            hi = min(lo + step, total)
            sl = slice(lo, hi)
            st = probs_t[sl] if keep_probs else probs_t[: hi - lo]
            b_t = None if bias_t is None else bias_t[sl] if bias_t.shape[0] > 1 else bias_t
            _scores_t(st, q[sl], k[sl], b_t, alpha)
            _softmax_t(st)
            if noise_t is not None:
                st = torch.mul(st, noise_t[sl], out=dropped[: hi - lo])
            torch.bmm(st.transpose(1, 2), v[sl], out=out[sl])  # (c, n, m) @ (c, m, dv)
        ctx.scale = scale
        ctx.bias_shape = None if bias_t is None else bias_t.shape
        ctx.save_for_backward(q, k, v, probs_t if keep_probs else None, noise_t)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, probs_t, noise_t = ctx.saved_tensors
        need_q, need_k, need_v, need_bias = ctx.needs_input_grad[:4]
        grad_out = grad_out.contiguous()
        total, n, _ = q.shape
        m = k.shape[1]
        step = _chunk_size(total, n, m)
        # contiguous gradients whatever q, k, v's strides: (b)bmm into a strided out= runs one small
        # matmul per sequence, each a parallel region (seconds per call where threads sleep between)
        dq = q.new_empty(q.shape) if need_q else None
        dk = k.new_empty(k.shape) if need_k else None
        dv = v.new_empty(v.shape) if need_v else None
        dbias_t = q.new_empty(total, m, n) if need_bias else None
        dp_buf = q.new_empty(step, m, n)
        pd_buf = q.new_empty(step, m, n) if noise_t is not None else None
        for lo in range(0, total, step):
            hi = min(lo + step, total)
            sl, c = slice(lo, hi), hi - lo
            pt, go = probs_t[sl], grad_out[sl]
            if need_v:
                pdt = pt if noise_t is None else torch.mul(pt, noise_t[sl], out=pd_buf[:c])
                torch.bmm(pdt, go, out=dv[sl])  # (c, m, n) @ (c, n, dv)
            dpt = torch.bmm(v[sl], go.transpose(1, 2), out=dp_buf[:c])  # (c, m, dv) @ (c, dv, n)
            if noise_t is not None:
                dpt.mul_(noise_t[sl])
            delta = (dpt * pt).sum(dim=1, keepdim=True)  # (c, 1, n)
            dst = dpt.sub_(delta).mul_(pt)  # d loss / d logits, transposed
            if need_bias:
                dbias_t[sl] = dst
            if need_q:
                torch.baddbmm(dq[sl], dst.transpose(1, 2), k[sl], beta=0.0, alpha=ctx.scale, out=dq[sl])
            if need_k:
                torch.baddbmm(dk[sl], dst, q[sl], beta=0.0, alpha=ctx.scale, out=dk[sl])
        if need_bias:  # the bias entered in base 2: d/d(bias_t) = log2(e)^-1 * d/d(natural bias)
            dbias_t = dbias_t.mul_(1.0 / _LOG2E)
            if ctx.bias_shape[0] == 1:
                dbias_t = dbias_t.sum(dim=0, keepdim=True)
        return dq, dk, dv, dbias_t, None, None


def _additive_bias(mask: Tensor | None, causal: bool, n: int, m: int, device) -> Tensor | None:
    """Bool / float mask and causal flag as one additive float bias (``-inf`` = masked)."""
    bias = None
    if mask is not None:
        bias = mask.float() if mask.dtype != torch.bool else torch.zeros(mask.shape, device=device).masked_fill(
            ~mask, float("-inf")
        )
    if causal:
        tril = torch.ones(n, m, dtype=torch.bool, device=device).tril()
        causal_bias = torch.zeros(n, m, device=device).masked_fill(~tril, float("-inf"))
        bias = causal_bias if bias is None else bias + causal_bias
    return bias


def short_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """Exact ``softmax(q k^T * scale + mask) v`` for many short sequences.

    Same contract as :func:`spacetime.ops.attention` with ``backend="short"`` (which
    validates the arguments and zeroes rows without any key before and after this call):
    ``q (b, heads, n, d)``, ``k (b, heads, m, d)``, ``v (b, heads, m, dv)``; ``mask`` bool
    (``True`` = may attend) or additive float broadcastable to ``(b, heads, n, m)``; every
    query row must have at least one finite logit. Returns ``(b, heads, n, dv)`` in the dtype
    of ``q``, computed in fp32.
    """
    b, heads, n, d = q.shape
    m, dv = k.shape[2], v.shape[3]
    total = b * heads
    scale = d**-0.5 if scale is None else float(scale)
    qf, kf, vf = (x.float().reshape(total, x.shape[2], x.shape[3]) for x in (q, k, v))

    bias = _additive_bias(mask, causal, n, m, q.device)
    bias_t = None
    if bias is not None:  # to (B or 1, m, n): transposed, in base-2 units
        if bias.ndim <= 2 or all(size == 1 for size in bias.shape[:-2]):
            shared = bias.reshape(bias.shape[-2:]) if bias.ndim >= 2 else bias
            bias_t = (shared.expand(n, m) * _LOG2E).t().contiguous().unsqueeze(0)
        else:
            bias_t = (bias.expand(b, heads, n, m) * _LOG2E).reshape(total, n, m).transpose(1, 2).contiguous()

    noise_t = None
    if dropout_p > 0.0:  # the draw F.dropout makes on the (b, heads, n, m) probabilities
        noise = torch.empty(b, heads, n, m, device=q.device).bernoulli_(1.0 - dropout_p).div_(1.0 - dropout_p)
        noise_t = noise.reshape(total, n, m).transpose(1, 2)

    out = _ShortAttention.apply(qf, kf, vf, bias_t, noise_t, scale)
    return out.reshape(b, heads, n, dv).to(q.dtype)
