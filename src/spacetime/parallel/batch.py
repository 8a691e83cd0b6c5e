"""A training step on ``dp x sp`` processes that is the step of one process: how a batch is divided, and how the
gradients come back together.

Every process draws the randomness of the whole batch alike (the same generator, the same draws), then keeps
its part: data-parallel rank ``d`` of ``dp`` a contiguous run of the clips, and within its clips the frames of
its sequence-parallel rank (:func:`~spacetime.parallel.shard.shard_video`'s sizes). One clip's noise, timestep
and data are then the same on its shards, and the step does not depend on the split. Each process's loss is
its share of the batch's: its terms over the count of its data-parallel part, so that the sum over the
sequence-parallel group is that part's loss and the mean over the data-parallel groups the batch's.
:func:`sum_gradients` adds the processes' gradients and divides by ``dp``: the gradient of one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from ..checks import positive_int
from .shard import Sharding, init_groups

__all__ = ["BatchSplit", "sum_gradients"]


@dataclass(frozen=True)
class BatchSplit:
    """Where this process's part of a step's batch lies: data-parallel rank ``dp_rank`` of ``dp``, and the frames of
    its place in ``sp_group`` (``None``: whole clips)."""

    dp_rank: int
    dp: int
    sp: int
    sp_group: object = None

    @classmethod
    def create(cls, sp: int) -> BatchSplit:
        """The split of this process in a world of ``dp x sp`` (the default process group up; one process: dp=sp=1).

        Creates the groups (:func:`~spacetime.parallel.shard.init_groups`): every process calls it, in the same order.
        """
        positive_int("sp", sp)
        if not dist.is_available() or not dist.is_initialized():
            if sp != 1:
                raise ValueError(f"sp={sp} splits each clip across sp processes; this is one process (sp must be 1)")
            return cls(0, 1, 1)
        world = dist.get_world_size()
        if world % sp:
            raise ValueError(f"sp={sp} must divide the number of processes ({world}): processes = dp x sp")
        _, sp_group = init_groups(sp)
        return cls(dist.get_rank() // sp, world // sp, sp, sp_group)

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.dp:
            raise ValueError(f"batch_size ({batch_size}) must be divisible by the data-parallel degree dp={self.dp} "
                             f"(processes / sp)")

    def samples(self, x: Tensor) -> Tensor:
        """This process's clips of a batch-first tensor of the whole batch."""
        n = x.shape[0] // self.dp
        return x[self.dp_rank * n:(self.dp_rank + 1) * n]

    def frames(self, x: Tensor, dim: int = 2) -> Tensor:
        """This process's frames (on axis ``dim``) of a tensor of whole clips."""
        if self.sp_group is None:
            return x
        return Sharding.of(self.sp_group, x.shape[dim]).slice(x, dim)

    def local(self, x: Tensor, dim: int = 2) -> Tensor:
        """This process's part of a tensor of the whole batch: its clips, their frames on axis ``dim``."""
        return self.frames(self.samples(x), dim)


@torch.no_grad()
def sum_gradients(parameters, dp: int) -> None:
    """Every process's gradients summed over the world and divided by ``dp``, in place (one flat all-reduce)."""
    parameters = [p for p in parameters if p.requires_grad]
    if not parameters or not dist.is_initialized() or dist.get_world_size() == 1:
        return
    used = torch.tensor([p.grad is not None for p in parameters], dtype=torch.int32, device=parameters[0].device)
    dist.all_reduce(used)  # a parameter some process used gets a gradient everywhere; one nobody used keeps None
    grads = []
    for p, n in zip(parameters, used.tolist()):
        if n and p.grad is None:
            p.grad = torch.zeros_like(p)
        if n:
            grads.append(p.grad)
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dp
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))
