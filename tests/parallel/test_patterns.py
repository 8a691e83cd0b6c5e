"""Every attention pattern on a clip split across 2, 3 and 4 gloo processes equals one process: outputs and input
gradients (fp32 within 1e-6, fp64 within 1e-12), with frame masks, prefix tokens, and uneven T and H*W."""

import pytest
import torch
import torch.distributed as dist

from spacetime.ops import CrossFrame, Joint, Spatial, Temporal, Window
from spacetime.parallel import ShardedPattern, all_sum, gather_video, init_groups, shard_video
from tests.parallel.harness import run_ranks

PATTERNS = [Spatial(), Temporal(), Temporal(causal=True), Temporal(window=1), Joint(), Window((2, 2, 3)),
            Window((1, 2, 2), shift=(0, 1, 1)), CrossFrame(1)]
TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def _inputs(dtype, t, h, w, heads, d=8, b=2, p=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    grids = [torch.randn(b, t, h, w, heads, d, generator=gen, dtype=dtype) for _ in range(3)]
    prefix = [torch.randn(b, p, heads, d, generator=gen, dtype=dtype) for _ in range(3)]
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, -1] = False  # the second clip is a frame shorter
    return grids, prefix, mask


def _close(a, b, dtype, what):
    tol = TOL[dtype] * max(1.0, b.abs().max().item())
    err = (a - b).abs().max().item()
    assert err <= tol, f"{what}: max |difference| {err:.3g} > {tol:.3g}"


def _check_pattern(rank, world, pattern, dtype, t, h, w, use_prefix, use_mask):
    group = dist.group.WORLD
    (q, k, v), prefix, mask = _inputs(dtype, t, h, w, heads=2 * world)  # Ulysses: heads divisible by sp
    weights = torch.randn(q.shape, generator=torch.Generator().manual_seed(7), dtype=dtype)
    kw = {"backend": "sdpa"}
    if use_prefix:
        kw["prefix"] = tuple(prefix)
    if use_mask:
        kw["frame_mask"] = mask
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    ref = pattern(*leaves, **kw)
    ref_out, ref_prefix = ref if use_prefix else (ref, None)
    loss = (ref_out * weights).sum() + (ref_prefix.sum() if use_prefix else 0)
    ref_grads = torch.autograd.grad(loss, leaves)
    local = [shard_video(x, group, layout="bthwc").detach().requires_grad_() for x in (q, k, v)]
    local_kw = dict(kw, frame_mask=shard_video(mask[:, :, None, None, None], group, "bthwc")[:, :, 0, 0, 0]) \
        if use_mask else kw
    got = ShardedPattern(pattern, group, frames=t)(*local, **local_kw)
    out, prefix_out = got if use_prefix else (got, None)
    _close(gather_video(out.detach(), group, "bthwc", frames=t), ref_out.detach(), dtype, f"{pattern!r} output")
    if use_prefix:
        _close(prefix_out.detach(), ref_prefix.detach(), dtype, f"{pattern!r} prefix output")
    local_loss = (out * shard_video(weights, group, "bthwc")).sum() + (prefix_out.sum() / world if use_prefix else 0)
    grads = torch.autograd.grad(local_loss, local)
    for name, g, r in zip("qkv", grads, ref_grads):
        _close(gather_video(g, group, "bthwc", frames=t), r, dtype, f"{pattern!r} d{name}")


def _every_pattern(rank, world, dtype, t, h, w, patterns=PATTERNS):
    for pattern in patterns:
        if isinstance(pattern, Window) and any(o % min(pattern.size[0], t) for o in _offsets(t, world)):
            continue  # misaligned windows are an error, tested below
        for use_prefix, use_mask in ((False, False), (True, False), (False, True), (True, True)):
            _check_pattern(rank, world, pattern, dtype, t, h, w, use_prefix, use_mask)


def _offsets(t, world):
    sizes = [t // world + (i < t % world) for i in range(world)]
    return [sum(sizes[:i]) for i in range(world)]


@pytest.mark.parametrize("world, t, h, w", [(2, 5, 3, 5), (3, 7, 2, 3), (4, 9, 3, 3)])
def test_every_pattern_equals_one_process(world, t, h, w):
    run_ranks(_every_pattern, world, torch.float64, t, h, w)


def test_every_pattern_equals_one_process_in_fp32():
    run_ranks(_every_pattern, 2, torch.float32, 6, 4, 4)


@pytest.mark.parametrize("world, t, h, w", [(2, 4, 3, 5), (3, 6, 2, 3), (4, 8, 3, 3)])
def test_windows_over_several_frames_equal_one_process(world, t, h, w):
    # shards of 2 frames: every boundary falls on a window boundary in time, so the windows run locally
    windows = [Window((2, 2, 3)), Window((2, 2, 2), shift=(0, 1, 1))]
    run_ranks(_every_pattern, world, torch.float64, t, h, w, windows)


def _mean_prefix(rank, world):
    group = dist.group.WORLD
    (q, k, v), prefix, _ = _inputs(torch.float64, 5, 2, 3, heads=2)
    ref_out, ref_prefix = Spatial()(q, k, v, prefix=tuple(prefix), prefix_mode="mean")
    local = [shard_video(x, group, "bthwc") for x in (q, k, v)]
    out, prefix_out = ShardedPattern(Spatial(), group)(*local, prefix=tuple(prefix), prefix_mode="mean")
    _close(gather_video(out, group, "bthwc"), ref_out, torch.float64, "mean-mode output")
    _close(prefix_out, ref_prefix, torch.float64, "mean-mode prefix (TimeSformer's class token)")


def test_the_class_token_mean_over_frames_spans_every_rank():
    run_ranks(_mean_prefix, 3)


def _errors(rank, world):
    group = dist.group.WORLD
    grids, _, _ = _inputs(torch.float64, 6, 2, 1, heads=2)  # 2 heads, H*W = 2 pixels, 6 frames over 3 ranks
    local = [shard_video(x, group, "bthwc") for x in grids]
    cases = [
        (lambda: ShardedPattern(Joint(), group, frames=6)(*local), "num_heads=2 must be divisible by sp=3"),
        (lambda: ShardedPattern(Temporal(), group, frames=6)(*local), "H\\*W=2 pixels cannot be split over sp=3"),
        (lambda: ShardedPattern(Window((4, 1, 1)), group, frames=6)(*local), "must fall on window boundaries"),
        (lambda: ShardedPattern(Window((2, 2, 1), shift=(1, 1, 0)), group, frames=6)(*local),
         "windows shifted in time cross the shards"),
        (lambda: ShardedPattern(CrossFrame(3), group, frames=6)(*local), "at least window=3 frames"),
        (lambda: ShardedPattern(Spatial(), group)(*[x[:, :3] if rank == 1 else x[:, :2] for x in grids]),
         r"the ranks hold \[2, 3, 2\] frames; .* is \[3, 2, 2\] \(shards of different shapes"),
        (lambda: ShardedPattern(Spatial(), group, frames=2)(*local), "T=2 frames, fewer than the sp=3 ranks"),
        (lambda: ShardedPattern(Temporal(), group, frames=6)(*local, prefix=tuple(x[:, :1, 0, 0] for x in grids),
                                                           prefix_mode="mean"), "prefix_mode='mean' .* Spatial"),
        (lambda: ShardedPattern(object(), group), "has no sequence-parallel form"),
        (lambda: ShardedPattern(Spatial(), None), "group must be a torch.distributed ProcessGroup"),
    ]
    for make, message in cases:
        with pytest.raises((ValueError, TypeError), match=message):
            make()
    others = dist.new_group([0, 1])  # every rank creates it; rank 2 is not in it
    if rank == 2:
        with pytest.raises(ValueError, match="this rank is not a member"):
            ShardedPattern(Spatial(), others)
    fresh = dist.new_group(list(range(world)))  # not checked yet
    real = dist.all_to_all_single

    def even_sizes_only(*args, **kwargs):  # a backend without the uneven all-to-all
        raise RuntimeError("all_to_all_single: split sizes must be equal")

    dist.all_to_all_single = even_sizes_only
    try:
        with pytest.raises(ValueError, match=r"its backend \(gloo\) does not do the all-to-all with uneven sizes"):
            ShardedPattern(Spatial(), fresh)
    finally:
        dist.all_to_all_single = real


def test_bad_shards_and_groups_are_refused_by_name():
    run_ranks(_errors, 3)


def _groups(rank, world):
    dp_group, sp_group = init_groups(2)  # world 4 = dp 2 x sp 2
    assert dist.get_process_group_ranks(sp_group) == [rank // 2 * 2, rank // 2 * 2 + 1]  # neighbours split a clip
    assert dist.get_process_group_ranks(dp_group) == [rank % 2, rank % 2 + 2]  # the same place in each clip
    assert all_sum(torch.tensor([float(rank)]), sp_group).item() == 2 * (rank // 2 * 2) + 1
    with pytest.raises(ValueError, match="sp=3 must divide the world size 4"):
        init_groups(3)


def test_init_groups_arranges_the_world_as_dp_by_sp():
    run_ranks(_groups, 4)
