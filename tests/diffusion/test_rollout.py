"""``spacetime sample --frames N`` rolls a next-frame model out past its trained length, ``--given FILE`` continues a
user's clip; ``spacetime eval`` scores against the data the samples came from."""

import json

import numpy as np
import pytest
import torch

from spacetime.cli import main
from spacetime.data.bouncing import context_ceiling
from spacetime.diffusion.config import TrainConfig
from spacetime.diffusion.sample import load_given, sample_checkpoint
from spacetime.diffusion.train import train
from spacetime.io.video import write_gif

TINY = dict(model="tiny", frames=4, size=16, digit_size=6, batch_size=4, log_every=1, warmup_steps=2, steps=2,
            sample_steps=2, num_samples=2)


@pytest.fixture(scope="module")
def next_frame_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nf") / "run"
    train(TrainConfig(**TINY, context_frames=2, objects=2, max_speed=3), out, progress=False)
    return out


@pytest.fixture(scope="module")
def whole_video_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("wv") / "run"
    train(TrainConfig(**TINY), out, progress=False)
    return out


def test_rollout_past_the_trained_length_extends_the_same_videos(next_frame_run):
    short = sample_checkpoint(next_frame_run, seed=1, progress=False)["videos"]
    long = sample_checkpoint(next_frame_run, seed=1, frames=12, progress=False)["videos"]
    assert short.shape == (2, 1, 4, 16, 16) and long.shape == (2, 1, 12, 16, 16)
    # the noise stream is drawn frame by frame, so the first trained-length frames are the same videos
    assert torch.equal(long[:, :, :4], short)


def test_given_frames_lead_every_video(next_frame_run, tmp_path):
    clip = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)  # (k, H, W)
    np.save(tmp_path / "clip.npy", clip)
    out = tmp_path / "samples"
    assert main(["sample", "--checkpoint", str(next_frame_run), "--out", str(out), "--frames", "7", "--given",
                 str(tmp_path / "clip.npy"), "--num", "2", "--quiet"]) == 0
    videos = np.load(out / "samples.npy")
    assert videos.shape == (2, 1, 7, 16, 16)
    assert np.allclose(videos[:, 0, :3], clip[None], atol=1e-6)
    config = json.loads((out / "sample_config.json").read_text())
    assert config["given_frames"] == 3 and config["shape"][1] == 7
    assert config["data"] == {"data": "disks", "frames": 4, "size": 16, "digit_size": 6, "objects": 2,
                              "max_speed": 3}


def test_given_reads_a_gif_and_a_uint8_array(tmp_path):
    frames = (np.random.default_rng(1).random((2, 16, 16)) * 255).astype(np.uint8)
    write_gif(tmp_path / "clip.gif", frames)
    got = load_given(tmp_path / "clip.gif", channels=1, size=16)
    assert got.shape == (1, 2, 16, 16) and torch.allclose(got, torch.from_numpy(frames / 255.0).float()[None])
    np.save(tmp_path / "clip.npy", frames)
    assert torch.equal(load_given(tmp_path / "clip.npy", 1, 16), got)


def test_rollout_and_given_errors_name_the_argument(next_frame_run, whole_video_run, tmp_path):
    with pytest.raises(ValueError, match="frames=8: this whole-video model makes clips of its trained 4 frames"):
        sample_checkpoint(whole_video_run, frames=8, progress=False)
    with pytest.raises(ValueError, match=r"frames must be an int >= 3 \(context_frames=2 \+ 1\); got 2"):
        sample_checkpoint(next_frame_run, frames=2, progress=False)
    with pytest.raises(FileNotFoundError, match="given .*missing.npy: not found"):
        sample_checkpoint(next_frame_run, given=tmp_path / "missing.npy", progress=False)
    np.save(tmp_path / "wide.npy", np.zeros((2, 16, 20), dtype=np.float32))
    with pytest.raises(ValueError, match=r"given must hold N=2 clips of C=1 channels, 1 to 3 frames of 16x16"):
        sample_checkpoint(next_frame_run, given=tmp_path / "wide.npy", progress=False)
    np.save(tmp_path / "bright.npy", np.full((2, 16, 16), 3.0, dtype=np.float32))
    with pytest.raises(ValueError, match=r"given must hold finite values in \[0, 1\]"):
        sample_checkpoint(next_frame_run, given=tmp_path / "bright.npy", progress=False)
    assert main(["sample", "--checkpoint", str(whole_video_run), "--frames", "8", "--out", str(tmp_path / "x")]) == 2


def test_eval_scores_against_the_data_of_the_samples(next_frame_run, tmp_path, capsys):
    out = tmp_path / "samples"
    sample_checkpoint(next_frame_run, out, seed=0, progress=False)
    assert main(["eval", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert (report["digit_size"], report["objects"], report["max_speed"]) == (6, 2, 3)  # from sample_config.json
    assert set(report["diversity"]["statistics"]) == {"first_move", "start", "count"}
    assert report["diversity"]["statistics"]["first_move"]["num_cells"] == 36
    # 2 frames of context leave clamped bounces open: the bound a perfect model reaches is reported beside the score
    share = context_ceiling(16, 6, 3, 4, 2, objects=2)
    assert report["context_ceiling"] == {"context_frames": 2, "share": share} and share < 0.9
    assert f"keeps the data's law in only {share:.1%}" in capsys.readouterr().out
    assert main(["eval", str(out), "--objects", "1"]) == 0  # a flag overrides the record
    assert json.loads((out / "eval.json").read_text())["objects"] == 1
    assert "first_move" in capsys.readouterr().out


@pytest.mark.parametrize("digit_size, objects, max_speed", [(6, 1, 2), (8, 2, 3), (12, 3, 4)])
def test_eval_of_training_data_generates_the_data_it_scores(tmp_path, digit_size, objects, max_speed):
    # --digit-size once generated 12-px disks and scored them as 6-px ones (0% plausible)
    args = ["eval", "--training-data", "24", "--digit-size", str(digit_size), "--objects", str(objects),
            "--max-speed", str(max_speed), "--out", str(tmp_path / "data")]
    assert main(args) == 0
    report = json.loads((tmp_path / "data" / "eval.json").read_text())
    assert report["plausible_fraction"] == 1.0 and report["digit_size"] == digit_size
    videos = np.load(tmp_path / "data" / "samples.npy")
    from spacetime.data.bouncing import disk_stamp
    assert np.all(videos.sum(axis=(-1, -2)) >= disk_stamp(digit_size).sum())  # disks of the size asked for


@pytest.mark.slow
def test_eval_of_moving_digits_reports_identity_frechet_and_diversity(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPACETIME_CACHE", str(tmp_path / "cache"))  # the judge trains once, here
    args = ["eval", "--data", "digits", "--training-data", "32", "--objects", "2", "--max-speed", "3", "--out",
            str(tmp_path / "digits")]
    assert main(args) == 0
    report = json.loads((tmp_path / "digits" / "eval.json").read_text())
    assert report["data"] == "digits" and (report["objects"], report["max_speed"]) == (2, 3)
    assert report["plausible_fraction"] >= 0.9 and report["identity_fraction"] >= 0.9
    assert report["classifier_accuracy"]["heldout_images"] >= 0.95
    assert report["frechet"] >= 0 and report["frechet_data"] >= 0
    assert report["diversity"]["statistics"]["first_move"]["num_cells"] == 36
    assert "context_ceiling" not in report  # training data: no model, no bound
    assert set(report["diversity"]["statistics"]) == {"first_move", "start", "class"} and report["diversity"]["ok"]
    out = capsys.readouterr().out
    assert "Frechet distance to the training data" in out and "first_move" in out
    assert list((tmp_path / "cache" / "digit_judge").glob("*.safetensors"))  # cached for the next eval
    from spacetime.diffusion.evaluate import evaluate_digits
    with pytest.raises(ValueError, match="tol applies to disks"):
        evaluate_digits(tmp_path / "digits", tol=0.1)
    videos = np.load(tmp_path / "digits" / "samples.npy")
    np.save(tmp_path / "collapsed.npy", np.repeat(videos[:1], 32, axis=0))  # one video, 32 times
    collapsed = evaluate_digits(tmp_path / "collapsed.npy", objects=2, max_speed=3)["diversity"]
    assert not collapsed["ok"] and not collapsed["statistics"]["class"]["ok"]
    assert not collapsed["statistics"]["first_move"]["ok"]
