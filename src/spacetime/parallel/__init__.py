"""Sequence parallelism: one clip split by frames across the ranks of a group, exact against one process.

``init_groups(sp)`` arranges the world as ``dp x sp``; :func:`shard_video` and :func:`gather_video` split
and join a clip; :func:`reshard` moves a split between frames and pixels (or heads);
:class:`ShardedPattern` runs any attention pattern on this rank's frames, and :func:`parallelize` makes a
whole model take this rank's frames and return its frames of the output; :func:`count_traffic` counts
what a rank sends. docs/parallel.md has the guide and the measurements. Built on
``torch.distributed`` (gloo on CPUs, nccl on GPUs).
"""

from .comm import Traffic, all_sum, count_traffic, halo, reshard, split_sizes
from .modules import is_parallel, parallelize
from .patterns import ShardedPattern
from .shard import Sharding, check_group, gather_video, init_groups, shard_video

__all__ = ["init_groups", "shard_video", "gather_video", "reshard", "halo", "all_sum", "split_sizes", "Sharding",
           "check_group", "ShardedPattern", "parallelize", "is_parallel", "count_traffic", "Traffic"]
