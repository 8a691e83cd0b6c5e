"""Groups and shards: which ranks split a clip, and which frames each holds.

``init_groups(sp)`` arranges the world as ``dp x sp``: ranks ``[k sp, (k + 1) sp)`` split one clip
(a sequence-parallel group), and the ranks with the same place in their group form a data-parallel
group. A rank of a sequence-parallel group holds a contiguous run of the clip's frames, the sizes
``torch.tensor_split`` gives (the first ``T % sp`` ranks one frame more): :func:`shard_video` takes it,
:func:`gather_video` puts the clip back together (with a gradient), :class:`Sharding` says where the
run sits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from ..checks import positive_int
from ..ops.layout import check_layout
from .comm import counted, exchange, group_device, split_sizes

__all__ = ["init_groups", "Sharding", "shard_video", "gather_video", "check_group", "frame_axis"]

_CHECKED: set[int] = set()


def init_groups(sp: int, backend: str | None = None) -> tuple[dist.ProcessGroup, dist.ProcessGroup]:
    """``(dp_group, sp_group)`` of this rank in a world of ``dp x sp`` ranks (the default group must be up).

    Every rank must call it, in the same order as any other group it creates (``torch.distributed.new_group``).
    """
    positive_int("sp", sp)
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("init_groups needs torch.distributed's default process group: call "
                           "torch.distributed.init_process_group first (torchrun sets up its environment)")
    world, rank = dist.get_world_size(), dist.get_rank()
    if world % sp:
        raise ValueError(f"sp={sp} must divide the world size {world} (world = dp x sp)")
    dp = world // sp
    sp_groups = [dist.new_group(list(range(k * sp, (k + 1) * sp)), backend=backend) for k in range(dp)]
    dp_groups = [dist.new_group(list(range(i, world, sp)), backend=backend) for i in range(sp)]
    return dp_groups[rank % sp], sp_groups[rank // sp]


def check_group(group) -> dist.ProcessGroup:
    """``group``, checked once: this rank belongs to it, and its backend does the uneven all-to-all sharding needs."""
    if group is dist.GroupMember.NON_GROUP_MEMBER:
        raise ValueError("group: this rank is not a member of the group it was given")
    if group is None or not isinstance(group, dist.ProcessGroup):
        raise TypeError(f"group must be a torch.distributed ProcessGroup (from init_groups); got "
                        f"{type(group).__name__}")
    if id(group) not in _CHECKED:
        world = dist.get_world_size(group)
        try:  # uneven splits: rank i sends i + 1 values to every rank
            probe = torch.zeros(world * (dist.get_rank(group) + 1), device=group_device(group))
            out = probe.new_empty(sum(i + 1 for i in range(world)))
            dist.all_to_all_single(out, probe, [i + 1 for i in range(world)], [dist.get_rank(group) + 1] * world,
                                   group=group)
        except (RuntimeError, NotImplementedError) as exc:
            raise ValueError(f"group: its backend ({dist.get_backend(group)}) does not do the all-to-all with uneven "
                             f"sizes that sequence parallelism needs: {str(exc).splitlines()[0]}") from None
        _CHECKED.add(id(group))
    return group


def frame_axis(layout: str) -> int:
    """The frame axis of a video in ``layout`` (``"bcthw"``: 2)."""
    return check_layout(layout).index("t")


@dataclass(frozen=True)
class Sharding:
    """Where this rank's frames sit: ``sizes[i]`` frames on rank ``i``, this rank's from global index ``offset``."""

    rank: int
    world: int
    frames: int
    sizes: tuple[int, ...]

    @classmethod
    def of(cls, group, frames: int) -> Sharding:
        world = dist.get_world_size(group)
        if frames < world:
            raise ValueError(f"the clip has T={frames} frames, fewer than the sp={world} ranks that split it")
        return cls(dist.get_rank(group), world, frames, tuple(split_sizes(frames, world)))

    @classmethod
    def agree(cls, group, local: int) -> Sharding:
        """The sharding of this rank's ``local`` frames, from every rank's count (a collective): shards of sizes
        other than ``torch.tensor_split``'s are refused on every rank alike."""
        world = dist.get_world_size(group)
        device = group_device(group)
        counts = [torch.zeros((), dtype=torch.long, device=device) for _ in range(world)]
        with counted("metadata", [], group, 8):
            dist.all_gather(counts, torch.tensor(local, device=device), group=group)
        counts = [int(c) for c in counts]
        sharding = cls.of(group, sum(counts))
        if tuple(counts) != sharding.sizes:
            raise ValueError(f"the ranks hold {counts} frames; a clip of T={sum(counts)} split over {world} ranks is "
                             f"{list(sharding.sizes)} (shards of different shapes: use shard_video)")
        return sharding

    @property
    def offset(self) -> int:
        return sum(self.sizes[:self.rank])

    @property
    def local(self) -> int:
        return self.sizes[self.rank]

    def slice(self, x: Tensor, dim: int) -> Tensor:
        """This rank's frames of a whole-clip tensor ``x`` (frames on ``dim``)."""
        return x.narrow(dim, self.offset, self.local)


def shard_video(x: Tensor, group, layout: str = "bcthw", unit: int = 1) -> Tensor:
    """This rank's contiguous frames of a clip ``x`` in ``layout`` (sizes as ``torch.tensor_split`` gives them).

    ``unit``: split in runs of this many frames (a tubelet's, so that every rank holds whole tubelets).
    """
    check_group(group)
    dim = frame_axis(layout)
    positive_int("unit", unit)
    if x.shape[dim] % unit:
        raise ValueError(f"x has {x.shape[dim]} frames, not a multiple of unit={unit} (the tubelet's frames)")
    sharding = Sharding.of(group, x.shape[dim] // unit)
    return x.narrow(dim, sharding.offset * unit, sharding.local * unit)


def gather_video(x: Tensor, group, layout: str = "bcthw", frames: int | None = None, unit: int = 1) -> Tensor:
    """The whole clip from every rank's frames (the inverse of :func:`shard_video` with the same ``unit``), on
    every rank.

    ``frames`` (the clip's T) saves a round of communication. The gradient of the gathered clip is summed
    over the ranks and each gets its own frames' part (a reduce-scatter).
    """
    check_group(group)
    dim, world = frame_axis(layout), dist.get_world_size(group)
    positive_int("unit", unit)
    if x.shape[dim] % unit or (frames is not None and frames % unit):
        raise ValueError(f"x holds {x.shape[dim]} frames (a clip of T={frames}): not runs of unit={unit} frames")
    if frames is None:
        sharding = Sharding.agree(group, x.shape[dim] // unit)
    else:
        sharding = Sharding.of(group, frames // unit)
    if x.shape[dim] != sharding.local * unit:
        raise ValueError(f"x holds {x.shape[dim]} frames on rank {sharding.rank}; a clip of T={frames} split over "
                         f"{world} ranks gives it {sharding.local * unit}")
    shapes = [tuple(n if d != dim else size * unit for d, n in enumerate(x.shape)) for size in sharding.sizes]
    return torch.cat(exchange([x] * world, group, shapes), dim=dim)
