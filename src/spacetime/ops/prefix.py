"""Prefix tokens and additive biases joined to a pattern's attention.

A pattern groups the video's tokens into sequences (frames, pixels, tubes, the whole clip) and
calls :func:`~spacetime.ops.attention` once on them. :class:`SequenceAttention` is that call: with
no prefix and no bias it is :func:`attention` itself; otherwise it joins

* **prefix tokens** ``(b, p, heads, d)`` (a CLS token, registers, text tokens): every video query
  also sees every prefix key, whatever its pattern. The prefix queries are answered in one of two
  ways (``prefix_mode``): ``"all"``, they attend to every prefix and video token of the clip (the
  pattern's :meth:`~spacetime.ops.patterns.Pattern.__call__` does that in a call of its own), or
  ``"mean"``, they join every sequence of the pattern as queries too and their outputs are
  averaged over the sequences (TimeSformer's class token in its spatial attention: one softmax
  per frame, the mean over frames);
* an **additive bias** ``(heads, n, m)`` on the scores of every sequence (a relative-position bias
  of a window, as in Swin), where the pattern's mask allows a key.

Sequences are ``(b * g, heads, n, d)`` with the batch as the leading factor, as every pattern
groups them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import one_of
from .attention import attention

__all__ = ["SequenceAttention", "PREFIX_MODES", "check_prefix"]

PREFIX_MODES = ("all", "mean")


def check_prefix(prefix, b: int, heads: int, d: int, ref: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(pq, pk, pv)``, each ``(b, p, heads, d)`` like the grid's queries ``ref``; returns them checked."""
    if not isinstance(prefix, (tuple, list)) or len(prefix) != 3:
        raise ValueError(f"prefix must be (q, k, v) of the prefix tokens, each (b, p, heads, d); got "
                         f"{type(prefix).__name__}")
    shapes = [tuple(x.shape) if isinstance(x, Tensor) else None for x in prefix]
    if None in shapes or len({s for s in shapes}) != 1 or len(shapes[0]) != 4 or shapes[0][0] != b \
            or shapes[0][2:] != (heads, d) or shapes[0][1] < 1:
        raise ValueError(f"prefix q, k, v must each be (b, p, heads, d) = ({b}, p >= 1, {heads}, {d}); got {shapes}")
    if any(x.dtype != ref.dtype or x.device != ref.device for x in prefix):
        raise ValueError(f"prefix q, k, v must have the dtype and device of the grid ({ref.dtype}, {ref.device})")
    return tuple(prefix)


class SequenceAttention:
    """The attention call of a pattern, ``attend(q, k, v, mask=None, causal=False)`` on ``(b * g, heads, n, d)``.

    ``prefix`` (``(b, heads, p, d)`` each) and ``bias`` (``(heads, n, m)``) are joined as the module
    docstring says; after the call, ``prefix_out`` holds the prefix queries' ``(b, heads, p, d)``
    output when ``prefix_mode="mean"``.
    """

    def __init__(self, b: int, *, backend: str | None = None, dropout_p: float = 0.0,
                 prefix: tuple[Tensor, Tensor, Tensor] | None = None, prefix_mode: str = "all",
                 bias: Tensor | None = None):
        self.b, self.backend, self.dropout_p = b, backend, dropout_p
        self.prefix, self.mode, self.bias = prefix, one_of("prefix_mode", prefix_mode, PREFIX_MODES), bias
        self.prefix_out: Tensor | None = None

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        if self.prefix is None and self.bias is None:
            return attention(q, k, v, mask=mask, causal=causal, backend=self.backend, dropout_p=self.dropout_p)
        n, m = q.shape[-2], k.shape[-2]
        if causal:  # joined keys or a bias would shift SDPA's top-left causal alignment: spell the mask out
            tril = torch.ones(n, m, dtype=torch.bool, device=q.device).tril()
            mask, causal = (tril if mask is None else mask & tril), False
        if self.bias is not None:
            mask = self._with_bias(mask, n, m)
        if self.prefix is not None:
            q, k, v, mask = self._with_prefix(q, k, v, mask)
        out = attention(q, k, v, mask=mask, backend=self.backend, dropout_p=self.dropout_p)
        if self.prefix is not None and self.mode == "mean":
            p = self.prefix[0].shape[-2]
            self.prefix_out = out[:, :, :p].unflatten(0, (self.b, -1)).mean(1)  # (b, heads, p, d): mean over groups
            out = out[:, :, p:]
        return out

    def _with_bias(self, mask: Tensor | None, n: int, m: int) -> Tensor:
        bias = self.bias
        if tuple(bias.shape[-2:]) != (n, m):
            raise ValueError(f"bias must be (heads, n, m) for this pattern's sequences of n={n} queries and m={m} "
                             f"keys; got {tuple(bias.shape)}")
        if mask is None:
            return bias
        return torch.where(mask, bias, torch.tensor(float("-inf"), dtype=bias.dtype, device=bias.device))

    def _with_prefix(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None):
        pq, pk, pv = self.prefix  # (b, heads, p, d)
        groups = q.shape[0] // self.b
        per_group = lambda x: x.repeat_interleave(groups, dim=0)  # noqa: E731  (b, ...) -> (b g, ...)
        k, v = torch.cat([per_group(pk), k], dim=-2), torch.cat([per_group(pv), v], dim=-2)
        if self.mode == "mean":
            q = torch.cat([per_group(pq), q], dim=-2)
        if mask is None:
            return q, k, v, None
        p = pk.shape[-2]
        mask = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))  # (G | 1, heads | 1, n | 1, m)
        seen = torch.ones(()) if mask.dtype == torch.bool else torch.zeros(())
        keys = seen.to(mask).expand(*mask.shape[:-1], p)
        mask = torch.cat([keys, mask], dim=-1)  # every query sees the prefix keys
        if self.mode == "mean" and mask.shape[-2] > 1:  # prefix queries see every key any query of the group sees
            allowed = mask if mask.dtype == torch.bool else mask > float("-inf")
            rows = allowed.any(dim=-2, keepdim=True)
            rows = rows if mask.dtype == torch.bool else torch.where(rows, 0.0, float("-inf")).to(mask.dtype)
            mask = torch.cat([rows.expand(*rows.shape[:-2], p, rows.shape[-1]), mask], dim=-2)
        return q, k, v, mask
