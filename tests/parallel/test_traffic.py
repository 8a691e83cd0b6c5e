"""What a rank sends, counted by count_traffic() against the formulas: a spatial + temporal pair moves its activations
by pixels and back, 2M(P-1)/P elements for a share of M; Joint (Ulysses) moves q, k, v and the output by heads,
4M(P-1)/P per layer, so two Joint layers send four times a factorized pair; Spatial sends nothing; CrossFrame
passes each neighbour its keys and values of `window` frames; backward sends what forward sent."""

import pytest
import torch
import torch.distributed as dist

from spacetime.layers import FactorizedAttention, SpaceTimeAttention
from spacetime.ops import CrossFrame, Joint, Spatial
from spacetime.parallel import count_traffic, parallelize, shard_video
from tests.parallel.harness import run_ranks


def _sent(module, x):
    """Elements this rank sends in forward and in backward."""
    with count_traffic() as forward:
        out = module(x)
    with count_traffic() as backward:
        out.square().sum().backward()
    return forward.sent, backward.sent


def _traffic(rank, world):
    group = dist.group.WORLD
    b, t, h, w, dim, heads = 2, 2 * world, 4, 6, 8 * world, world
    x = torch.randn(b, t, h, w, dim)
    local = shard_video(x, group, "bthwc").requires_grad_()
    share = local.numel()  # M: this rank's share of the activations
    moved = share * (world - 1) // world  # what one all-to-all of them sends to the other ranks

    pair = parallelize(FactorizedAttention(dim, heads, rope="thw"), group)
    assert _sent(pair, local) == (2 * moved, 2 * moved)
    joint = parallelize(SpaceTimeAttention(dim, heads, Joint()), group)
    assert _sent(joint, local) == (4 * moved, 4 * moved)  # two of these: four times a factorized pair
    spatial = parallelize(SpaceTimeAttention(dim, heads, Spatial()), group)
    assert _sent(spatial, local) == (0, 0)

    cross = parallelize(SpaceTimeAttention(dim, heads, CrossFrame(1)), group)
    neighbours = (rank > 0) + (rank < world - 1)
    frame_of_kv = 2 * b * h * w * dim  # one frame of k and v
    assert _sent(cross, local) == (neighbours * frame_of_kv, neighbours * frame_of_kv)


@pytest.mark.parametrize("world", [2, 4])
def test_traffic_matches_the_formulas(world):
    run_ranks(_traffic, world)


def test_nothing_is_counted_outside_the_block():
    from spacetime.parallel.comm import _COUNTERS

    with count_traffic() as traffic:
        assert _COUNTERS == [traffic]
    assert _COUNTERS == [] and traffic.sent == 0 and traffic.calls == 0
