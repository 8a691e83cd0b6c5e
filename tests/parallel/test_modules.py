"""parallelize(): FactorizedAttention (both orders), TransformerBlock, VideoTransformer and VideoUNet on a clip split
across 2, 3 and 4 gloo processes equal the same module on the whole clip in one process: outputs and input
gradients (fp32 within 1e-6, fp64 within 1e-12), parameter gradients summed over the ranks (fp32 within 1e-5), with
frame masks, rotary positions, uneven T and H*W; and what cannot run sharded is refused by name."""

import pytest
import torch
import torch.distributed as dist
from torch import nn

from spacetime.blocks import TransformerBlock
from spacetime.layers import FactorizedAttention, SpaceTimeAttention
from spacetime.models import VideoTransformer, VideoTransformerConfig, VideoUNet, VideoUNetConfig
from spacetime.ops import CrossFrame, Joint, Spatial, Temporal, Window
from spacetime.parallel import all_sum, gather_video, is_parallel, parallelize, shard_video
from tests.parallel.harness import run_ranks

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}
PARAM_TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _close(got, want, tol, what):
    bound = tol * max(1.0, want.abs().max().item())
    err = (got - want).abs().max().item()
    assert err <= bound, f"{what}: max |difference| {err:.3g} > {bound:.3g}"


def _rand(*shape, dtype, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _randomize(module, seed=0):
    """Every parameter random (zero-initialised output convs and position mixes too), so that every one matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return module


def check(make, x, layout, dtype, *, unit=1, frame_mask=None, replicated=False, train=False, call=None, name=""):
    """``make()`` in one process on the whole clip ``x`` against ``parallelize(make())`` on this rank's frames."""
    group, world = dist.group.WORLD, dist.get_world_size()
    call = call or (lambda m, v, mask: m(v) if mask is None else m(v, frame_mask=mask))
    frame_axis = layout.index("t")
    ref = _randomize(make().to(dtype)).train(train)
    sharded = parallelize(_randomize(make().to(dtype)).train(train), group)
    assert is_parallel(sharded)
    whole = x.clone().requires_grad_()
    torch.manual_seed(5)  # stochastic depth: the same draws in both
    out_ref = call(ref, whole, frame_mask)
    weights = _rand(*out_ref.shape, dtype=dtype, seed=9)
    (out_ref * weights).sum().backward()
    local = shard_video(x, group, layout, unit=unit).detach().requires_grad_()
    mask = None
    if frame_mask is not None:  # this rank's frames of the mask, as of the clip
        mask = shard_video(frame_mask[:, None, :, None, None], group, "bcthw", unit=unit)[:, 0, :, 0, 0]
    torch.manual_seed(5)
    out = call(sharded, local, mask)
    if replicated:  # the same output on every rank: each counts a 1/world share of the loss
        _close(out.detach(), out_ref.detach(), TOL[dtype], f"{name} output")
        loss = (out * weights).sum() / world
    else:
        frames = x.shape[frame_axis]
        _close(gather_video(out.detach(), group, layout, frames=frames, unit=unit), out_ref.detach(), TOL[dtype],
               f"{name} output")
        loss = (out * shard_video(weights, group, layout, unit=unit)).sum()
    loss.backward()
    _close(gather_video(local.grad, group, layout, frames=x.shape[frame_axis], unit=unit), whole.grad, TOL[dtype],
           f"{name} input gradient")
    for (key, p), q in zip(sharded.named_parameters(), ref.parameters()):
        assert (p.grad is None) == (q.grad is None), f"{name} {key}: gradient on one side only"
        if p.grad is not None:
            _close(all_sum(p.grad, group), q.grad, PARAM_TOL[dtype], f"{name} {key} gradient")
    assert list(sharded.state_dict()) == list(ref.state_dict())  # checkpoints move between the two


def _mask(b, t, short):
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, t - short:] = False  # the second clip is shorter
    return mask


def _layers(rank, world, dtype, t, h, w):
    heads = 2 * world  # Ulysses (Joint) needs the heads divisible by sp
    dim = 16 * world  # head_dim 8: rotary over (t, h, w)
    x = _rand(2, t, h, w, dim, dtype=dtype, seed=1)
    mask = _mask(2, t, 1)
    for order in ("space_time", "time_space"):
        for temporal in (Temporal(), Temporal(causal=True), Temporal(window=1)):
            check(lambda: FactorizedAttention(dim, heads, order=order, temporal=temporal, rope="thw"), x,
                  "bthwc", dtype, frame_mask=mask, name=f"FactorizedAttention {order} {temporal!r}")
    for patterns in ((Spatial(), Temporal()), (Joint(),), (CrossFrame(1),), (Window((1, 2, 2), shift=(0, 1, 1)),)):
        check(lambda: TransformerBlock(dim, heads, patterns, rope="t", drop_path=0.5), x, "bthwc", dtype,
              frame_mask=mask, train=True, name=f"TransformerBlock {patterns}")
    check(lambda: SpaceTimeAttention(dim, heads, Joint()), x, "bthwc", dtype, name="SpaceTimeAttention Joint")


@pytest.mark.parametrize("world, t, h, w", [(2, 5, 3, 5), (3, 7, 2, 3), (4, 9, 3, 3)])
def test_layers_and_blocks_equal_one_process(world, t, h, w):
    run_ranks(_layers, world, torch.float64, t, h, w)


def test_layers_and_blocks_equal_one_process_in_fp32():
    run_ranks(_layers, 2, torch.float32, 6, 4, 4)


TRANSFORMERS = [
    {"variant": "divided", "pool": "token"},  # TimeSformer: the class token joins each frame's spatial attention
    {"variant": "joint", "pool": "token", "space_encoding": "flat"},  # ViViT / VideoMAE tables over (t, h, w)
    {"variant": "joint", "pool": "cls", "time_encoding": "rope", "space_encoding": "rope"},
    {"variant": "divided", "pool": "mean", "time_encoding": "sinusoidal", "drop_path": 0.3},
    {"variant": "factorized_encoder", "pool": "mean"},
    {"variant": "space_only", "pool": "cls"},
]


def _transformers(rank, world, dtype, frames):
    tubelet = (2, 2, 3)
    x = _rand(2, 3, frames, 6, 9, dtype=dtype, seed=2)
    for options in TRANSFORMERS:
        config = VideoTransformerConfig(num_classes=5, num_frames=frames, image_size=(6, 9), tubelet=tubelet,
                                        dim=16 * world, depth=2, num_heads=2 * world, temporal_depth=1, **options)
        mean_prefix = options["variant"] == "divided" and options["pool"] == "token"  # takes no frame mask
        check(lambda: VideoTransformer(config), x, "bcthw", dtype, unit=2,
              frame_mask=None if mean_prefix else _mask(2, frames, 2),
              replicated=True, train=options.get("drop_path", 0) > 0, name=f"VideoTransformer {options}")


@pytest.mark.parametrize("world, frames", [(2, 10), (3, 14), (4, 16)])  # token frames 5, 7 (uneven), 8
def test_video_transformers_equal_one_process(world, frames):
    run_ranks(_transformers, world, torch.float64, frames)


def test_video_transformers_equal_one_process_in_fp32():
    run_ranks(_transformers, 2, torch.float32, 8)


UNETS = [
    {"attention": [None, "factorized"], "rope": "thw", "pixel_stem": 8, "motion_head": 1, "known_frames": True},
    {"attention": ["temporal", "cross_frame"], "conv": "3d", "self_condition": True, "camera": "plucker"},
    {"attention": [None, "joint"], "temporal_kernel": 1, "rope": "thw", "camera": "world"},
]


def _unets(rank, world, dtype, frames):
    x = _rand(2, 1, frames, 8, 12, dtype=dtype, seed=3)
    t = torch.tensor([3, 700])
    cameras = torch.zeros(2, frames, 6, dtype=dtype)
    cameras[..., 3:5] = _rand(2, frames, 2, dtype=dtype, seed=4)
    known = _mask(2, frames, frames - 1)  # the first frame given
    for options in UNETS:
        config = VideoUNetConfig(patch=2, channels=[8, 16 * world], head_dim=8, **options)  # Joint: heads % sp == 0

        def call(model, v, _mask, options=options):
            kw = {}
            sharded = v.shape[2] != frames
            if options.get("camera"):
                kw["cameras"] = shard_video(cameras[:, None], dist.group.WORLD)[:, 0] if sharded else cameras
            if options.get("known_frames"):
                kw["known"] = shard_video(known[:, None, :, None, None], dist.group.WORLD)[:, 0, :, 0, 0] \
                    if sharded else known
            if options.get("self_condition"):
                kw["x_self"] = v.detach().flip(-1)
            return model(v, t, **kw)

        check(lambda: VideoUNet(config), x, "bcthw", dtype, call=call, name=f"VideoUNet {options}")


@pytest.mark.parametrize("world, frames", [(2, 5), (3, 7), (4, 6)])
def test_video_unets_equal_one_process(world, frames):
    run_ranks(_unets, world, torch.float64, frames)


def test_video_unets_equal_one_process_in_fp32():
    run_ranks(_unets, 2, torch.float32, 6)


def _refusals(rank, world):
    group = dist.group.WORLD
    cases = [
        (lambda: parallelize(nn.Linear(4, 4), group), TypeError, "parallelize takes a VideoUNet, VideoTransformer"),
        (lambda: parallelize(nn.Sequential(), group), TypeError, "got Sequential"),
        (lambda: parallelize(FactorizedAttention(8, 2), None), TypeError, "group must be a torch.distributed"),
    ]
    for fn, kind, message in cases:
        with pytest.raises(kind, match=message):
            fn()
    block = TransformerBlock(8, 2, (Spatial(),))
    block.attn[0].extra = nn.BatchNorm1d(8)  # a module that cannot run on part of the clip
    with pytest.raises(ValueError, match=r"attn.0.extra \(BatchNorm1d\) has no sequence-parallel form"):
        parallelize(block, group)
    assert not is_parallel(block) and not isinstance(block.attn[0].attn.pattern, type(None))  # left as it was
    assert type(block.attn[0].attn.pattern) is Spatial
    unet = parallelize(VideoUNet(VideoUNetConfig(patch=2, channels=[8, 16], attention=[None, "joint"], head_dim=8)),
                       group)
    with pytest.raises(ValueError, match="VideoUNet is sequence-parallel already"):
        parallelize(unet, group)
    with pytest.raises(ValueError, match=r"frames, fewer than the sp=2 ranks"):  # T smaller than sp
        unet(torch.zeros(1, 1, rank, 8, 8), torch.tensor([1]))
    model = parallelize(VideoTransformer(VideoTransformerConfig(num_frames=8, image_size=8, tubelet=(2, 4, 4),
                                                                dim=8, depth=1, num_heads=2)), group)
    with pytest.raises(ValueError, match="tubelet"):  # shards that split a tubelet: shard_video(x, unit=2)
        model(torch.zeros(1, 3, 3 + 2 * rank, 8, 8))
    joint = parallelize(SpaceTimeAttention(6, 3, Joint()), group)
    with pytest.raises(ValueError, match="num_heads=3 must be divisible by sp=2"):
        joint(torch.zeros(1, 2, 2, 2, 6))
    window = parallelize(SpaceTimeAttention(8, 2, Window((2, 2, 2))), group)
    with pytest.raises(ValueError, match="must fall on window boundaries"):
        window(torch.zeros(1, 3, 2, 2, 8))  # 6 frames: 3 a rank, windows of 2
    with pytest.raises(ValueError, match=r"the ranks hold \[2, 3\] frames"):  # shards of different shapes
        parallelize(FactorizedAttention(8, 2), group)(torch.zeros(1, 2 + rank, 2, 2, 8))
    with pytest.raises(ValueError, match="not a multiple of unit=2"):
        shard_video(torch.zeros(1, 3, 5, 2, 2), group, unit=2)


def test_what_cannot_run_sharded_is_refused_by_name():
    run_ranks(_refusals, 2)
