"""The collectives sequence parallelism needs, each with its gradient: one all-to-all with uneven sizes does the
resharding (frames <-> pixels, frames <-> heads) and the halo exchange; sums over the group carry statistics.

Everything goes through ``torch.distributed.all_to_all_single`` with split sizes (gloo and nccl both
take uneven ones) or ``all_reduce``; the backward of an all-to-all is the all-to-all the other way,
and the backward of a sum every rank uses is the sum of the ranks' gradients.

:func:`count_traffic` counts what this rank sends through them (forward and backward), for the
benchmark and the tests that hold the traffic to its formula.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["exchange", "reshard", "halo", "all_sum", "split_sizes", "Traffic", "count_traffic"]


@dataclass
class Traffic:
    """What this rank sent to the other ranks of its groups while counting.

    ``sent`` counts the elements of all-to-all exchanges that leave this rank (what it keeps for itself
    is not counted), ``summed`` the elements of the reductions it joins (sums, and the maximum that combines
    attention across ranks; the bytes on the wire for those depend on the backend's algorithm: a ring sends
    ``2 (P - 1) / P`` of them); ``bytes_sent`` is ``sent`` in bytes. ``calls`` counts the collectives
    (metadata ones too) and ``seconds`` the wall time inside them (waiting for the other ranks included).
    """

    sent: int = 0
    bytes_sent: int = 0
    summed: int = 0
    calls: int = 0
    seconds: float = 0.0

    def _add(self, kind: str, elements: int, element_size: int, seconds: float) -> None:
        self.calls += 1
        self.seconds += seconds
        if kind in ("all_sum", "metadata"):
            self.summed += elements
        else:
            self.sent += elements
            self.bytes_sent += elements * element_size


_COUNTERS: list[Traffic] = []


@contextmanager
def count_traffic():
    """Count this rank's traffic through :func:`exchange` and :func:`all_sum` (forward and backward) inside the
    ``with`` block: ``with count_traffic() as traffic: ...``, then ``traffic.sent`` elements."""
    traffic = Traffic()
    _COUNTERS.append(traffic)
    try:
        yield traffic
    finally:
        _COUNTERS.remove(traffic)


@contextmanager
def counted(kind: str, sizes: list[int], group, element_size: int):
    """Around one collective: what this rank sends in it (to the other ranks) and how long it takes. ``kind``:
    ``"exchange"`` (``sizes``: the elements for each rank), ``"all_sum"`` (``[elements]``), ``"metadata"`` (a few
    integers: time and calls only)."""
    if not _COUNTERS:
        yield
        return
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    rank = dist.get_rank(group)
    if kind == "exchange":
        elements = sum(n for i, n in enumerate(sizes) if i != rank)
    else:
        elements = 0 if kind == "metadata" else sizes[0]
    for traffic in _COUNTERS:
        traffic._add(kind, elements, element_size, seconds)


def group_device(group) -> torch.device:
    """Where the small tensors of a collective on ``group`` (counts, probes, flags) live: this rank's GPU on nccl,
    which takes no CPU tensors, else the CPU."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def split_sizes(n: int, parts: int) -> list[int]:
    """The sizes ``torch.tensor_split`` gives ``n`` items in ``parts``: the first ``n % parts`` one larger."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


class _Exchange(torch.autograd.Function):
    """``all_to_all_single`` on flat buffers: ``send[i]`` elements go to rank ``i``, ``recv[i]`` come from it."""

    @staticmethod
    def forward(ctx, flat: Tensor, group, send: list[int], recv: list[int]) -> Tensor:
        ctx.group, ctx.send, ctx.recv = group, send, recv
        out = flat.new_empty(sum(recv))
        with counted("exchange", send, group, flat.element_size()):
            dist.all_to_all_single(out, flat.contiguous(), output_split_sizes=recv, input_split_sizes=send,
                                   group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        back = grad.new_empty(sum(ctx.send))
        with counted("exchange", ctx.recv, ctx.group, grad.element_size()):
            dist.all_to_all_single(back, grad.contiguous(), output_split_sizes=ctx.send, input_split_sizes=ctx.recv,
                                   group=ctx.group)
        return back, None, None, None


def exchange(chunks: list[Tensor], group, recv_shapes: list[tuple[int, ...]]) -> list[Tensor]:
    """Send ``chunks[i]`` to rank ``i`` of ``group`` and return what each rank sent here, shaped ``recv_shapes[i]``."""
    flat = torch.cat([c.reshape(-1) for c in chunks])
    recv = [int(torch.Size(s).numel()) for s in recv_shapes]
    out = _Exchange.apply(flat, group, [c.numel() for c in chunks], recv)
    return [piece.reshape(shape) for piece, shape in zip(out.split(recv), recv_shapes)]


def reshard(x: Tensor, group, split_dim: int, cat_dim: int, cat_sizes: list[int]) -> Tensor:
    """Move the split of a tensor from ``cat_dim`` to ``split_dim``.

    ``x`` holds this rank's part along ``cat_dim`` (rank ``i`` holds ``cat_sizes[i]`` entries) and all of
    ``split_dim``; the result holds all of ``cat_dim`` and this rank's part of ``split_dim`` (the sizes
    ``torch.tensor_split`` gives). Frames to pixels is ``split_dim`` = pixels, ``cat_dim`` = frames; the
    reverse swaps them. Exact: values are only moved.
    """
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    split_dim, cat_dim = split_dim % x.ndim, cat_dim % x.ndim
    sizes = split_sizes(x.shape[split_dim], world)
    chunks = list(x.split(sizes, dim=split_dim))
    shapes = []
    for i in range(world):  # what rank i sends here: its cat_dim part, this rank's split_dim part
        shape = list(x.shape)
        shape[split_dim], shape[cat_dim] = sizes[rank], cat_sizes[i]
        shapes.append(tuple(shape))
    return torch.cat(exchange(chunks, group, shapes), dim=cat_dim)


def halo(x: Tensor, group, dim: int, before: int, after: int) -> tuple[Tensor, Tensor]:
    """The ``before`` entries along ``dim`` that precede this rank's part (the end of the previous rank's) and the
    ``after`` entries that follow it (the start of the next rank's); empty at the ends of the whole tensor.

    Every rank's part must hold at least ``max(before, after)`` entries (the caller checks), so that the
    halo comes from the neighbours alone.
    """
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    dim = dim % x.ndim

    def part(start: int, length: int) -> Tensor:
        return x.narrow(dim, start, length)

    def shape(length: int) -> tuple[int, ...]:
        return tuple(length if d == dim else n for d, n in enumerate(x.shape))

    chunks, shapes = [part(0, 0)] * world, [shape(0)] * world
    if rank + 1 < world:  # the next rank's `before`: this part's end; and it sends its start back
        chunks[rank + 1], shapes[rank + 1] = part(x.shape[dim] - before, before), shape(after)
    if rank > 0:  # the previous rank's `after`: this part's start; and it sends its end
        chunks[rank - 1], shapes[rank - 1] = part(0, after), shape(before)
    received = exchange(chunks, group, shapes)
    # at the ends: the empty piece this rank sent itself, so that the result always comes out of the exchange (a
    # caller that uses it, empty or not, runs the exchange's backward on every rank alike)
    return received[rank - 1 if rank > 0 else rank], received[rank + 1 if rank + 1 < world else rank]


class _AllSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        ctx.group = group
        out = x.clone()
        with counted("all_sum", [out.numel()], group, out.element_size()):
            dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        out = grad.clone()
        with counted("all_sum", [out.numel()], ctx.group, out.element_size()):
            dist.all_reduce(out, group=ctx.group)
        return out, None


def all_sum(x: Tensor, group) -> Tensor:
    """The sum of ``x`` over the group, on every rank; its gradient sums the ranks' gradients (every rank uses it)."""
    return _AllSum.apply(x, group)
