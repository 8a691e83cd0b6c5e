import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from spacetime.cli import main
from spacetime.data.bouncing import BouncingDisks
from spacetime.diffusion.config import TrainConfig
from spacetime.diffusion.schedules import make_scheduler
from spacetime.diffusion.train import load_model, train
from spacetime.io import CheckpointError, load_weights
from spacetime.io.video import read_gif, read_video
from spacetime.models.video_unet import VideoUNet

TINY = dict(model="tiny", frames=4, size=16, digit_size=6, batch_size=4, log_every=1, warmup_steps=2)
USER = {k: v for k, v in TINY.items() if k != "digit_size"}  # the user's own videos have no disk size


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = VideoUNet.from_preset("tiny")
    data = BouncingDisks(num_frames=4, size=16, digit_size=6)
    x0 = torch.stack([data[0], data[1]]) * 2 - 1
    sched = make_scheduler("ddpm", num_train_timesteps=100)
    noise, t = torch.randn_like(x0), torch.tensor([20, 60])
    xt, target = sched.add_noise(x0, noise, t), sched.get_velocity(x0, noise, t)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(model(xt, t), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


@pytest.mark.slow
def test_resume_is_bit_exact(tmp_path):
    cfg = TrainConfig(**TINY, steps=6, checkpoint_every=3)
    train(cfg, tmp_path / "straight", progress=False)
    interrupted = TrainConfig(**{**TINY, "steps": 6, "checkpoint_every": 3})
    # run 3 steps, as if killed after the checkpoint at step 3, then resume to 6
    train(TrainConfig(**{**TINY, "steps": 3, "checkpoint_every": 3}), tmp_path / "resumed", progress=False)
    torch.manual_seed(123)  # a different global RNG state must not matter: it is restored
    summary = train(interrupted, tmp_path / "resumed", resume=True, progress=False)
    assert summary["start_step"] == 3 and summary["step"] == 6
    a, _ = load_weights(tmp_path / "straight" / "checkpoints" / "step-000006.safetensors")
    b, _ = load_weights(tmp_path / "resumed" / "checkpoints" / "step-000006.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # model and EMA weights
    rows = (tmp_path / "resumed" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]


def test_train_sample_eval_cli_end_to_end(tmp_path, capsys):
    run, samples = tmp_path / "run", tmp_path / "samples"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({**TINY, "steps": 2, "lr": 1e-3}))
    assert main(["train", "--config", str(tmp_path / "cfg.yaml"), "--steps", "3", "--out", str(run), "--quiet"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["steps"] == 3 and saved["lr"] == 1e-3 and saved["model"] == "tiny"  # flags override the file
    assert (run / "loss.png").stat().st_size > 0 and len((run / "log.csv").read_text().splitlines()) == 4
    assert main(["sample", "--checkpoint", str(run), "--num", "2", "--steps", "3", "--out", str(samples),
                 "--quiet"]) == 0
    videos = np.load(samples / "samples.npy")
    assert videos.shape == (2, 1, 4, 16, 16)
    expected = (np.clip(videos[1, 0], 0, 1) * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(read_gif(samples / "video_001.gif"), expected)
    assert read_video(samples / "video_000.mp4", grayscale=True).shape == (4, 64, 64)
    assert (samples / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((samples / "sample_config.json").read_text())["steps"] == 3
    assert main(["eval", str(samples), "--digit-size", "6"]) == 0
    report = json.loads((samples / "eval.json").read_text())
    assert report["num_videos"] == 2 and 0 <= report["plausible_fraction"] <= 1
    assert "plausible:" in capsys.readouterr().out
    model, meta = load_model(run)
    assert meta["step"] == 3 and not model.training


def test_eval_cli_on_training_data(tmp_path, capsys):
    assert main(["eval", "--training-data", "20", "--out", str(tmp_path)]) == 0
    assert "plausible: 20/20 = 100.0%" in capsys.readouterr().out


def test_bad_checkpoints_and_configs_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="without checkpoints/latest.json"):
        load_model(tmp_path)
    (tmp_path / "x.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="x.safetensors: not a readable safetensors file"):
        load_model(tmp_path / "x.safetensors")
    from spacetime.io import save_weights

    save_weights(tmp_path / "other.safetensors", {"w": torch.zeros(1)}, {"kind": "video_classifier"})
    with pytest.raises(CheckpointError, match="holds a 'video_classifier' checkpoint; expected 'video_diffusion'"):
        load_model(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="cannot resume"):
        train(TrainConfig(**TINY, steps=1), tmp_path / "fresh", resume=True, progress=False)
    with pytest.raises(ValueError, match="data='folder' needs data_path"):
        TrainConfig(data="folder")
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="model_overrides has unknown fields"):
        TrainConfig(model_overrides={"width": 3})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no clip of 4 frames among 0 video file"):
        train(TrainConfig(**{**USER, "data": "folder", "data_path": str(tmp_path / "empty")}, steps=1),
              tmp_path / "r", progress=False)


@pytest.mark.slow
def test_torchrun_two_processes_end_with_identical_parameters(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "spacetime",
           "train", "--model", "tiny", "--frames", "4", "--size",
           "16", "--digit-size", "6", "--batch-size", "4", "--steps", "3", "--log-every", "1", "--out",
           str(tmp_path / "ddp"), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "parameters identical on all 2 ranks: True" in done.stdout
    assert (tmp_path / "ddp" / "checkpoints" / "step-000003.safetensors").exists()
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["batch_size"] == 4


@pytest.mark.parametrize("kind", ["mnist", "folder"])
def test_train_on_user_data(tmp_path, kind):
    from spacetime.data.bouncing import create_dataset
    from spacetime.io.video import write_gif

    videos = create_dataset(4, 6, 32, rng=np.random.default_rng(0)).numpy()[:, 0]
    if kind == "mnist":
        path = tmp_path / "mm.npy"
        np.save(path, (videos.transpose(1, 0, 2, 3) * 255).astype(np.uint8))  # (T, N, H, W)
    else:
        path = tmp_path / "videos"
        for i, v in enumerate(videos):
            write_gif(path / f"{i}.gif", v)
    cfg = TrainConfig(**{**USER, "data": kind, "data_path": str(path), "size": 16, "frames": 4}, steps=2)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == 2 and np.isfinite(summary["loss"])


def test_cli_bad_input_is_one_clear_line(tmp_path, capsys):
    assert main(["train", "--size", "30", "--out", str(tmp_path / "r")]) == 2
    assert "size must be a multiple of 8" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path / "s")]) == 2
    assert "nothing: file not found" in capsys.readouterr().err
    (tmp_path / "v.npy").write_bytes(b"junk")
    assert main(["eval", str(tmp_path / "v.npy")]) == 2
    assert "v.npy: not a readable .npy array" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", "--model", "tiny", "--data", "folder", "--data-path", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "r2")]) == 2
    assert "no clip of 8 frames among 0 video file" in capsys.readouterr().err


def test_self_conditioned_model_trains_and_samples_deterministically(tmp_path):
    from spacetime.diffusion.sample import sample_videos

    cfg = TrainConfig(**TINY, steps=3, model_overrides={"self_condition": True}, checkpoint_every=3)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == 3 and np.isfinite(summary["loss"])
    model, _ = load_model(tmp_path / "run" / "checkpoints")
    a, b = (sample_videos(model, (1, 4, 16, 16), 2, steps=3, seed=5) for _ in range(2))
    assert torch.equal(a, b) and a.shape == (2, 1, 4, 16, 16)


def test_num_videos_fixes_the_training_set():
    from spacetime.diffusion.train import make_dataset

    fixed = make_dataset(TrainConfig(**TINY, num_videos=6))
    assert len(fixed) == 6 and torch.equal(fixed[5], make_dataset(TrainConfig(**TINY))[5])
    assert len(make_dataset(TrainConfig(data="camera", model="camera", num_videos=3))) == 3
    with pytest.raises(ValueError, match="num_videos must be a positive int or None"):
        TrainConfig(num_videos=0)
    with pytest.raises(ValueError, match="num_videos applies to the generated data"):
        TrainConfig(data="mnist", data_path="x.npy", num_videos=8)


def test_time_decay_ends_the_learning_rate_at_the_time_limit_or_the_last_step():
    from spacetime.diffusion.train import learning_rate as _lr

    cfg = TrainConfig(**TINY, steps=1000, lr=1e-3, lr_decay="time", time_limit=10.0)
    by_steps = TrainConfig(**TINY, steps=1000, lr=1e-3, time_limit=10.0)
    assert _lr(cfg, 1, 0.0) == _lr(by_steps, 1, 0.0)  # warm-up is per step either way
    assert _lr(cfg, 100, 600.0) == pytest.approx(1e-4)  # the clock ran out first: the decay's end
    assert _lr(cfg, 100, 300.0) == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # half the time: half way down the cosine
    assert _lr(cfg, 1000, 1.0) == pytest.approx(1e-4)  # the last step came first
    assert _lr(by_steps, 100, 600.0) == _lr(by_steps, 100, 0.0) > 9e-4  # "steps" ignores the clock
    with pytest.raises(ValueError, match="lr_decay='time' decays the learning rate over time_limit minutes"):
        TrainConfig(**TINY, lr_decay="time")
    with pytest.raises(ValueError, match="lr_decay must be one of"):
        TrainConfig(**TINY, lr_decay="epochs", time_limit=1.0)


def test_time_limit_counts_resumed_parts_and_stop_after_ends_one_call(tmp_path):
    cfg = TrainConfig(**TINY, steps=50, checkpoint_every=100, time_limit=60.0, lr_decay="time")
    first = train(cfg, tmp_path, progress=False, stop_after=0.0)  # stops after its first step, with a checkpoint
    assert first["step"] == 1 and first["stopped_by_time_limit"] and first["train_seconds"] > 0
    second = train(cfg, tmp_path, resume=True, progress=False, stop_after=0.0)
    assert second["start_step"] == 1 and second["step"] == 2 and second["train_seconds"] > first["train_seconds"]
    seconds = [float(r.split(",")[3]) for r in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    assert seconds == sorted(seconds) and seconds[-1] >= first["train_seconds"]  # one clock across the parts
    spent = TrainConfig(**{**cfg.to_dict(), "time_limit": second["train_seconds"] / 60})
    third = train(spent, tmp_path, resume=True, progress=False)  # the run's budget is spent: one step, then stop
    assert third["step"] == 3 and third["stopped_by_time_limit"]


def test_sample_cli_guides_with_an_earlier_checkpoint_of_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    train(TrainConfig(**TINY, steps=6, checkpoint_every=2), run, progress=False)  # checkpoints at 2, 4, 6
    out = tmp_path / "guided"
    assert main(["sample", "--checkpoint", str(run), "--num", "2", "--steps", "3", "--out", str(out),
                 "--guidance", "1.5", "--quiet"]) == 0
    used = json.loads((out / "sample_config.json").read_text())
    assert used["guidance"] == 1.5 and used["guide"].endswith("step-000002.safetensors") and used["guide_step"] == 2
    assert "guided by" in capsys.readouterr().out
    assert main(["sample", "--checkpoint", str(run), "--num", "2", "--steps", "3", "--out", str(tmp_path / "plain"),
                 "--quiet"]) == 0
    assert json.loads((tmp_path / "plain" / "sample_config.json").read_text())["guidance"] == 0
    assert not np.array_equal(np.load(out / "samples.npy"), np.load(tmp_path / "plain" / "samples.npy"))
    explicit = tmp_path / "explicit"
    assert main(["sample", "--checkpoint", str(run), "--num", "2", "--steps", "3", "--out", str(explicit),
                 "--guidance", "1.5", "--guide", str(run / "checkpoints" / "step-000002.safetensors"),
                 "--quiet"]) == 0
    assert np.array_equal(np.load(out / "samples.npy"), np.load(explicit / "samples.npy"))
    first = run / "checkpoints" / "step-000002.safetensors"
    assert main(["sample", "--checkpoint", str(first), "--num", "1", "--steps", "2", "--out", str(tmp_path / "x"),
                 "--guidance", "1", "--quiet"]) == 2  # nothing earlier to guide with: one clear line
    assert "has no earlier checkpoint beside it to guide with" in capsys.readouterr().err
    with pytest.raises(ValueError, match="guide_at must be a fraction in"):
        TrainConfig(**TINY, guide_at=1.0)
