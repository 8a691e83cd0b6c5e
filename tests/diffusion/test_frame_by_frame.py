"""Next-frame models: a VideoUNet that takes known (clean) context frames, its training clips and its sampler."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from spacetime.cli import main
from spacetime.diffusion.config import DEMO_CONFIG, TrainConfig
from spacetime.diffusion.objective import (
    blend_last_frame,
    clip_end_weights,
    copy_blend_max,
    given_prefix,
    next_frame_clips,
)
from spacetime.diffusion.sample import sample_videos
from spacetime.diffusion.train import load_model, resolve_measured, train
from spacetime.models.video_unet import VideoUNet, VideoUNetConfig


def test_known_mask_changes_the_output_and_none_means_no_frame_known():
    torch.manual_seed(0)
    model = VideoUNet.from_preset("tiny", known_frames=True)
    for p in model.parameters():
        nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 1, 4, 16, 16), torch.tensor([10, 500])
    none = torch.zeros(2, 4, dtype=torch.bool)
    some = torch.tensor([[True, True, False, False], [True, False, False, False]])
    assert torch.equal(model(x, t), model(x, t, known=none))
    assert not torch.allclose(model(x, t, known=some), model(x, t, known=none))


def head_on_every_frame(model: VideoUNet, *args, **kwargs) -> torch.Tensor:
    """``model``'s output with its head run on every frame, as a sequence-parallel shard runs it (also the
    reference ``benchmarks/step_parts.py`` times)."""
    model._make_frames = lambda x, features, known, temperature: VideoUNet._head(
        model, features, model._frames_before(x) if model.mix is not None else None, temperature)
    try:
        return model(*args, **kwargs)
    finally:
        del model._make_frames


@pytest.mark.parametrize("motion_head", [0, 2])
def test_frames_given_in_every_video_come_back_as_given_and_the_rest_as_if_the_head_ran_on_all(motion_head):
    torch.manual_seed(0)
    model = VideoUNet.from_preset("tiny", known_frames=True, motion_head=motion_head).double()
    for p in model.parameters():
        nn.init.normal_(p, std=0.05)
    x, t = torch.randn(3, 1, 5, 16, 16, dtype=torch.float64), torch.tensor([10, 500, 900])
    known = torch.zeros(3, 5, dtype=torch.bool)
    known[:, :2] = True  # frames 0 and 1 given everywhere, frame 3 in one video only
    known[1, 3] = True

    def run(forward):
        model.zero_grad()
        out = forward(x, t, known=known)
        out[:, :, 2:].square().sum().backward()  # a next-frame loss: the given frames weigh nothing
        return out, {name: p.grad.clone() for name, p in model.named_parameters()}

    out, grads = run(model)
    full, full_grads = run(lambda *a, **k: head_on_every_frame(model, *a, **k))
    assert torch.equal(out[:, :, :2], x[:, :, :2]) and not torch.allclose(full[:, :, :2], x[:, :, :2])
    torch.testing.assert_close(out[:, :, 2:], full[:, :, 2:], rtol=1e-12, atol=1e-12)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-10, atol=1e-12, msg=name)
    with torch.no_grad():
        assert torch.equal(model(x, t, known=torch.ones(3, 5, dtype=torch.bool)), x)
        scattered = torch.eye(3, 5, dtype=torch.bool)  # every frame is still to make in some video
        assert torch.equal(model(x, t, known=scattered), head_on_every_frame(model, x, t, known=scattered))


def test_known_frames_bad_input_names_the_argument():
    model = VideoUNet.from_preset("tiny", known_frames=True)
    x, t = torch.randn(2, 1, 4, 16, 16), torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"known must be a bool \(B, T\) = \(2, 4\).*got torch.bool \(2, 3\)"):
        model(x, t, known=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="known must be a bool.*got torch.float32"):
        model(x, t, known=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="known was given but this VideoUNet takes no known frames"):
        VideoUNet.from_preset("tiny")(x, t, known=torch.zeros(2, 4, dtype=torch.bool))


def test_next_frame_clips_end_at_a_random_frame_with_black_before_the_start():
    gen = torch.Generator().manual_seed(0)
    videos = torch.arange(40 * 5, dtype=torch.float32).reshape(40, 1, 5, 1, 1)  # frame j of video i holds 5i + j
    clips = next_frame_clips(videos, 2, gen)
    assert clips.shape == (40, 1, 3, 1, 1)
    ends = set()
    for i, clip in enumerate(clips[:, 0, :, 0, 0].tolist()):
        j = int(clip[-1]) - 5 * i
        ends.add(j)
        assert clip == [5 * i + k if k >= 0 else -1.0 for k in (j - 2, j - 1, j)]
    assert ends == set(range(5))  # every frame, the first ones included, ends some clip
    same, drawn = next_frame_clips(videos, 2, torch.Generator().manual_seed(0), with_ends=True)
    assert torch.equal(same, clips)
    assert drawn.tolist() == [int(c[-1]) - 5 * i for i, c in enumerate(clips[:, 0, :, 0, 0])]


def test_first_clip_ends_favour_frame_one_and_uniform_ones_do_not():
    weights = clip_end_weights(8, "first")
    assert torch.allclose(weights.sum(), torch.tensor(1.0)) and weights[1] == 3 / 8 and weights[0] == 1 / 8
    assert torch.allclose(weights[2:], torch.full((6,), 1 / 12))
    gen = torch.Generator().manual_seed(1)
    videos = torch.arange(8, dtype=torch.float32).reshape(1, 1, 8, 1, 1).expand(4000, -1, -1, -1, -1)
    ends = next_frame_clips(videos, 1, gen, "first")[:, 0, -1, 0, 0].long()
    counts = torch.bincount(ends, minlength=8) / 4000
    assert torch.allclose(counts, weights, atol=0.025)
    assert torch.equal(clip_end_weights(8, "uniform"), torch.full((8,), 1 / 8))
    with pytest.raises(ValueError, match=r"clip_ends must be one of \('uniform', 'first'\); got 'last'"):
        clip_end_weights(8, "last")
    with pytest.raises(ValueError, match=r"clip_ends must be one of"):
        TrainConfig(clip_ends="last")


def test_given_prefix_gives_the_context_clean_and_weights_only_the_rest():
    x0, xt = torch.rand(3, 1, 4, 2, 2), torch.randn(3, 1, 4, 2, 2)
    out, known, weight = given_prefix(x0, xt, 3)
    assert torch.equal(known, torch.tensor([[True, True, True, False]] * 3))
    assert torch.equal(out[:, :, :3], x0[:, :, :3]) and torch.equal(out[:, :, 3], xt[:, :, 3])
    assert weight[:, :, :3].eq(0).all() and weight[:, :, 3].eq(1).all()


def test_blend_last_frame_mixes_the_last_frame_with_the_one_before_in_a_fraction_of_clips():
    clips = torch.rand(400, 1, 3, 2, 2)
    out = blend_last_frame(clips, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :, :2], clips[:, :, :2])
    last, prev, made = clips[:, 0, 2], clips[:, 0, 1], out[:, 0, 2]
    lam = ((made - prev) * (last - prev)).sum((1, 2)) / ((last - prev) ** 2).sum((1, 2))
    torch.testing.assert_close(made, lam[:, None, None] * last + (1 - lam[:, None, None]) * prev)
    blended = (lam < 1 - 1e-5)
    assert 0.4 < blended.float().mean() < 0.6 and lam.min() >= 0
    assert torch.equal(blend_last_frame(clips, 0.0), clips)
    with pytest.raises(ValueError, match="copy_blend=0.5 blends a next frame with the one before it: it needs "
                                         "context_frames >= 1 and prediction='sample'"):
        TrainConfig(model="tiny", copy_blend=0.5)
    with pytest.raises(ValueError, match=r"copy_blend must be a fraction in \[0, 1\]; got 2"):
        TrainConfig(model="tiny", context_frames=2, prediction="sample", copy_blend=2)


def test_near_copy_blends_stay_within_half_a_pixel_of_the_copy_at_the_heads_reach():
    from spacetime.data.bouncing import disk_stamp, render_disks

    # a disk that moves 2 px per axis (the reach): any blend of it with the frame before, at the frame's share that
    # copy_blend_span="near" allows, keeps its centre within half a pixel of the copy, never at a 1-px move
    video = render_disks(np.array([[4, 4], [4, 4], [6, 6]]), 16, disk_stamp(6)) * 2 - 1
    clips = torch.from_numpy(video)[None, None].expand(200, 1, 3, 16, 16)
    reach = 2
    assert copy_blend_max("near", reach) == 0.25 and copy_blend_max("whole", reach) == 1.0
    near = blend_last_frame(clips, 1.0, torch.Generator().manual_seed(0), copy_max=copy_blend_max("near", reach))
    whole = blend_last_frame(clips, 1.0, torch.Generator().manual_seed(0))
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")

    def centre(frames):  # (n, h, w) in [-1, 1] -> (n, 2) centre of mass (x, y)
        mass = (frames + 1) / 2
        return torch.stack([(mass * xs).sum((-2, -1)), (mass * ys).sum((-2, -1))], -1) / mass.sum((-2, -1))[:, None]

    shift_near = centre(near[:, 0, 2]) - centre(clips[:, 0, 1])
    shift_whole = centre(whole[:, 0, 2]) - centre(clips[:, 0, 1])
    assert shift_near.min() >= -1e-5 and shift_near.max() <= 0.5 + 1e-5  # nearer the copy than any 1-px move
    assert shift_whole.max() > 1.5  # the whole span reaches well past a 1-px move
    torch.testing.assert_close(shift_near, shift_whole / 4)  # the same draws, the frame's share scaled
    per_clip = copy_blend_max("near-first", reach, torch.tensor([1, 2] * 100))  # near where the clip ends at frame 1
    assert per_clip.tolist() == [0.25, 1.0] * 100
    mixed = blend_last_frame(clips, 1.0, torch.Generator().manual_seed(0), copy_max=per_clip)
    assert torch.equal(mixed[0::2], near[0::2]) and torch.equal(mixed[1::2], whole[1::2])
    with pytest.raises(ValueError, match=r"copy_max must be a number in \(0, 1\], or a \(200,\) tensor of them; "
                                         r"got 0.0"):
        blend_last_frame(clips, 1.0, copy_max=0)
    with pytest.raises(ValueError, match="needs the frames the clips end at"):
        copy_blend_max("near-first", reach)
    with pytest.raises(ValueError, match="reach must be an int >= 1 \\(a motion head's"):
        copy_blend_max("near", 0)
    with pytest.raises(ValueError, match="copy_blend_span must be one of"):
        TrainConfig(model="tiny", context_frames=2, prediction="sample", copy_blend=0.5, copy_blend_span="far")
    with pytest.raises(ValueError, match="copy_blend_span='near' keeps copy blends within half a pixel of the copy "
                                         "at a motion head's reach: set model_overrides motion_head >= 1"):
        TrainConfig(model="tiny", context_frames=2, prediction="sample", copy_blend=0.5, copy_blend_span="near")


def test_move_blend_mixes_the_frame_with_a_moved_copy_of_the_one_before_the_frame_the_larger_part():
    from spacetime.ops.motion import shift_offsets, shifted_copies

    clips = torch.rand(300, 1, 3, 6, 6)
    out = blend_last_frame(clips, 0.25, torch.Generator().manual_seed(0), moved=0.5, radius=1, fill=-1.0)
    assert torch.equal(out[:, :, :2], clips[:, :, :2])
    last, made = clips[:, 0, 2], out[:, 0, 2]
    partners = torch.cat([clips[:, 0, 1:2], shifted_copies(clips[:, 0, 1], 1, fill=-1.0)], 1)  # (b, 1 + 9, h, w)
    kinds = []
    for i in range(len(clips)):
        if torch.equal(made[i], last[i]):
            kinds.append("clean")
            continue
        d = last[i] - partners[i]  # the blend lam * last + (1 - lam) * partner, for the partner that fits
        lam = ((made[i] - partners[i]) * d).sum((1, 2)) / d.square().sum((1, 2))
        err = (lam[:, None, None] * d + partners[i] - made[i]).abs().amax((1, 2))
        j = int(err.argmin())
        assert err[j] < 1e-5
        if j == 0:
            kinds.append("copy")
        else:
            assert shift_offsets(1)[j - 1] != (0, 0) and 0.5 - 1e-5 <= lam[j] <= 1 + 1e-5
            kinds.append("moved")
    share = {k: kinds.count(k) / len(kinds) for k in ("clean", "copy", "moved")}
    assert 0.15 < share["copy"] < 0.35 and 0.4 < share["moved"] < 0.6 and 0.15 < share["clean"] < 0.35
    same = blend_last_frame(clips, 0.5, torch.Generator().manual_seed(3))  # moved=0: the copy blend as it was
    assert torch.equal(same, blend_last_frame(clips, 0.5, torch.Generator().manual_seed(3), moved=0.0, radius=2))
    with pytest.raises(ValueError, match="radius must be an int >= 1 when moved > 0"):
        blend_last_frame(clips, 0.0, moved=0.5)
    motion = {"model_overrides": {"motion_head": 2}, "prediction": "sample"}
    with pytest.raises(ValueError, match=r"move_blend must be a fraction in \[0, 1 - copy_blend=0.5\]; got 0.75"):
        TrainConfig(model="tiny", context_frames=2, copy_blend=0.5, move_blend=0.75, **motion)
    with pytest.raises(ValueError, match="move_blend=0.25 blends a next frame with moved copies of the one before "
                                         "it: it needs context_frames >= 1 and model_overrides motion_head >= 1"):
        TrainConfig(model="tiny", context_frames=2, prediction="sample", move_blend=0.25)
    assert TrainConfig(model="tiny", context_frames=2, move_blend=0.25, **motion).move_blend == 0.25


class _Recorder(nn.Module):
    """A next-frame 'model' that predicts zeros and records what it was given."""

    def __init__(self):
        super().__init__()
        self.config = VideoUNetConfig(known_frames=True)
        self.w = nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, x, t, known=None):
        self.calls.append((x.clone(), known.clone()))
        return torch.zeros_like(x) + self.w


def test_next_frame_sampler_feeds_the_context_frames_before_each_new_frame():
    model = _Recorder()
    videos = sample_videos(model, (1, 4, 2, 2), 2, sampler="ddim", steps=3, timesteps=100, context=2, seed=0,
                           progress=False)
    assert videos.shape == (2, 1, 4, 2, 2) and len(model.calls) == 4 * 3  # T rounds of `steps` calls
    made = torch.cat([torch.zeros(2, 1, 2, 2, 2), videos], dim=2)  # black (0 in [0, 1]) before the first frame
    for frame in range(4):
        for x, known in model.calls[frame * 3:(frame + 1) * 3]:
            assert x.shape == (2, 1, 3, 2, 2)
            assert torch.equal(known, torch.tensor([[True, True, False]] * 2))
            # the context is the finished frames of the output, unchanged, in every call
            assert torch.equal(((x[:, :, :2] + 1) / 2).clamp(0, 1), made[:, :, frame:frame + 2])


def test_lead_in_fills_the_context_before_the_start_in_training_clips_and_in_the_sampler():
    videos = torch.rand(6, 1, 4, 2, 2)
    clips, ends = next_frame_clips(videos, 2, torch.Generator().manual_seed(0), with_ends=True, lead_in=0.25)
    same = next_frame_clips(videos, 2, torch.Generator().manual_seed(0))  # black lead-in, the same draws
    for clip, black, j in zip(clips, same, ends.tolist()):
        lead = max(2 - j, 0)  # context frames from before the start
        assert clip[:, :lead].eq(0.25).all() and black[:, :lead].eq(-1).all()
        assert torch.equal(clip[:, lead:], black[:, lead:])
    model = _Recorder()
    sample_videos(model, (1, 3, 2, 2), 2, sampler="ddim", steps=2, timesteps=100, context=2, lead_in=0.25,
                  progress=False)
    first, second = model.calls[0][0], model.calls[2][0]  # the first call of frames 0 and 1
    assert first[:, :, :2].eq(0.25).all() and second[:, :, 0].eq(0.25).all()
    with pytest.raises(ValueError, match=r"lead_in must be a number in \[-1, 1\] \(a pixel value\); got 2"):
        TrainConfig(model="tiny", context_frames=2, lead_in=2)
    with pytest.raises(ValueError, match="lead_in=0.0 fills the context before a video's start: it needs "
                                         "context_frames >= 1"):
        TrainConfig(model="tiny", lead_in=0.0)


def test_next_frame_sampler_continues_given_frames():
    model = _Recorder()
    given = torch.rand(1, 2, 2, 2).round()  # two frames, the same for every video
    videos = sample_videos(model, (1, 5, 2, 2), 3, steps=2, timesteps=100, context=2, given=given, progress=False)
    assert len(model.calls) == 3 * 2  # only the three missing frames are made
    assert torch.equal(videos[:, :, :2], given.expand(3, -1, -1, -1, -1))
    first_x = model.calls[0][0]
    assert torch.equal(first_x[:, :, :2], given.expand(3, -1, -1, -1, -1) * 2 - 1)
    with pytest.raises(ValueError, match=r"given must hold N=3 clips of C=1 channels, 1 to 4 frames of 2x2; got"):
        sample_videos(model, (1, 5, 2, 2), 3, steps=1, context=2, given=torch.rand(1, 5, 2, 2), progress=False)
    with pytest.raises(ValueError, match=r"given must hold finite values in \[0, 1\]"):
        sample_videos(model, (1, 5, 2, 2), 3, steps=1, context=2, given=given + 1, progress=False)


def test_context_frames_config_checks():
    with pytest.raises(ValueError, match=r"context_frames must be an int in \[0, frames=8\).*got 8"):
        TrainConfig(context_frames=8)
    with pytest.raises(ValueError, match="context_frames .* does not take cameras"):
        TrainConfig(data="camera", model="camera", context_frames=2)
    with pytest.raises(ValueError, match="known_frames=True makes a next-frame model: set context_frames"):
        TrainConfig(model_overrides={"known_frames": True})
    assert TrainConfig(context_frames=2).unet_config().known_frames
    with pytest.raises(ValueError, match="context=2: a next-frame model .* this model has known_frames=False"):
        sample_videos(VideoUNet.from_preset("tiny"), (1, 4, 16, 16), 1, steps=1, context=2, progress=False)
    with pytest.raises(ValueError, match="context=0: a next-frame model .* this model has known_frames=True"):
        sample_videos(_Recorder(), (1, 4, 16, 16), 1, steps=1, progress=False)


def test_next_frame_model_trains_resumes_and_samples_deterministically(tmp_path):
    cfg = TrainConfig(model="tiny", frames=4, size=16, digit_size=6, batch_size=4, log_every=1, warmup_steps=2,
                      steps=3, context_frames=2)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == 3 and torch.isfinite(torch.tensor(summary["loss"]))
    model, meta = load_model(tmp_path / "run" / "checkpoints")
    assert model.config.known_frames and meta["train_config"]["context_frames"] == 2
    kw = {"steps": 2, "timesteps": cfg.timesteps, "context": 2, "seed": 3, "progress": False}
    a, b = sample_videos(model, (1, 4, 16, 16), 2, **kw), sample_videos(model, (1, 4, 16, 16), 2, **kw)
    assert a.shape == (2, 1, 4, 16, 16) and torch.equal(a, b)


def test_motion_head_model_predicts_the_clean_frame_trains_and_samples(tmp_path):
    with pytest.raises(ValueError, match="motion_head=2 makes the network draw the clean frame: set "
                                         "prediction='sample'; got prediction='v_prediction'"):
        TrainConfig(model="tiny", context_frames=2, model_overrides={"motion_head": 2})
    cfg = TrainConfig(model="tiny", frames=4, size=16, digit_size=6, batch_size=4, log_every=1, warmup_steps=2,
                      steps=3, context_frames=2, model_overrides={"motion_head": 2, "motion_fill": -1.0},
                      prediction="sample", copy_blend=0.25, move_blend=0.5)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == 3 and torch.isfinite(torch.tensor(summary["loss"]))
    model, _ = load_model(tmp_path / "run" / "checkpoints")
    assert model.config.motion_head == 2 and model.config.motion_fill == -1.0
    kw = {"steps": 2, "timesteps": cfg.timesteps, "context": 2, "seed": 3, "prediction": "sample", "progress": False}
    a, b = sample_videos(model, (1, 4, 16, 16), 2, **kw), sample_videos(model, (1, 4, 16, 16), 2, **kw)
    assert a.shape == (2, 1, 4, 16, 16) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    sharp = sample_videos(model, (1, 4, 16, 16), 2, **kw, motion_temperature=0.5)
    assert sharp.shape == a.shape and not torch.equal(sharp, a)
    with pytest.raises(ValueError, match="motion_temperature must be a number > 0 .*got -1"):
        sample_videos(model, (1, 4, 16, 16), 2, **kw, motion_temperature=-1)
    plain = VideoUNet.from_preset("tiny", known_frames=True)
    with pytest.raises(ValueError, match="motion_temperature=0.5 scales a motion head's choice: this VideoUNet has none"):
        sample_videos(plain, (1, 4, 16, 16), 2, **kw, motion_temperature=0.5)
    with pytest.raises(ValueError, match="motion_temperature=0.5 scales a motion head's choice: set model_overrides"):
        TrainConfig(model="tiny", context_frames=2, prediction="sample", motion_temperature=0.5)


def test_demo_recipe_is_a_valid_next_frame_config_and_the_demo_runs_end_to_end(tmp_path, capsys):
    cfg = TrainConfig.from_dict(DEMO_CONFIG)
    assert cfg.measured_fields() == ["motion_head", "motion_fill"]
    resolved, measured = resolve_measured(cfg)
    assert cfg.context_frames == 3 and resolved.unet_config().known_frames  # what text 004's disks need
    # measured from text 004's disks, the head's reach and fill are the constants the recipe once wrote down
    assert (resolved.unet_config().motion_head, resolved.unet_config().motion_fill) == (2, -1.0)
    assert measured["reach"] == 2 and measured["fill"] == -1.0
    argv = ["demo", "--out", str(tmp_path / "demo"), "--model", "tiny", "--frames", "4", "--size", "16",
            "--digit-size", "6", "--steps", "2", "--batch-size", "2", "--num-samples", "2", "--sample-steps", "2",
            "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "next-frame, 3 frames of context" in out and "[3/3] plausibility" in out
    videos = np.load(tmp_path / "demo" / "samples" / "samples.npy")
    assert videos.shape == (2, 1, 4, 16, 16)
    config = json.loads((tmp_path / "demo" / "samples" / "sample_config.json").read_text())
    assert config["context_frames"] == 3 and config["sampler"] == "ddpm"
    record = json.loads((tmp_path / "demo" / "demo.json").read_text())  # what the run was, and on what machine
    assert record["steps"] == 2 and record["num_videos"] == 2 and record["machine"]["matmul_gflops"] > 0
    assert f"fp32 matmul {record['machine']['matmul_gflops']:.0f} GFLOP/s" in out


def test_train_processes_runs_data_parallel_workers_and_checks_its_arguments(tmp_path):
    from spacetime.diffusion.train import train_processes

    cfg = TrainConfig(model="tiny", frames=4, size=16, digit_size=6, batch_size=4, log_every=1, warmup_steps=2,
                      steps=2, context_frames=2)
    summary = train_processes(cfg, tmp_path / "run", procs=2, progress=False)
    assert summary["world_size"] == 2 and summary["step"] == 2 and summary["ranks_agree"]
    model, meta = load_model(tmp_path / "run" / "checkpoints")
    assert meta["step"] == 2
    with pytest.raises(ValueError, match="procs must be a positive int; got 0"):
        train_processes(cfg, tmp_path / "x", procs=0)
    with pytest.raises(ValueError, match=r"batch_size \(4\) must be divisible by procs \(3\)"):
        train_processes(cfg, tmp_path / "x", procs=3)
