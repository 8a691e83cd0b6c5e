"""Camera-conditioned diffusion: the pan dataset, config checks, train -> sample --camera-path -> eval."""

import json

import numpy as np
import pytest
import torch

from spacetime.cli import main
from spacetime.data.camera_pan import CameraPans, camera_pan_batch, positions_from_cameras, preset_positions
from spacetime.diffusion.config import TrainConfig

SMALL = dict(data="camera", model="camera", frames=4, size=16, batch_size=2, log_every=1, warmup_steps=1,
             model_overrides={"channels": [16, 16, 16], "head_dim": 8})


def test_camera_pans_are_seeded_items_in_unit_range_with_their_cameras():
    data = CameraPans(num_frames=5, size=16, seed=3)
    video, cams = data[7]
    again, cams_again = CameraPans(num_frames=5, size=16, seed=3)[7]
    assert video.shape == (1, 5, 16, 16) and cams.shape == (5, 6)
    assert torch.equal(video, again) and torch.equal(cams, cams_again)
    assert video.min() >= 0 and video.max() <= 1
    assert not torch.equal(video, data[8][0])
    assert torch.equal(positions_from_cameras(cams)[0], torch.zeros(2))  # paths start at the origin
    with pytest.raises(IndexError):
        data[len(data)]
    with pytest.raises(ValueError, match=r"max_speed must be a number in \(0, inf\) \(pixels per frame\)"):
        CameraPans(max_speed=0)


def test_camera_data_and_camera_models_go_together():
    with pytest.raises(ValueError, match="data='camera' and a camera-conditioned model go together"):
        TrainConfig(data="camera", model="small")
    with pytest.raises(ValueError, match="data='camera' and a camera-conditioned model go together"):
        TrainConfig(data="disks", model="camera")
    with pytest.raises(ValueError, match="noise_shift must be a number > 0; got 0"):
        TrainConfig(noise_shift=0)
    assert TrainConfig(data="camera", model="camera").unet_config().camera == "world"


def test_train_sample_eval_with_a_camera_path(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**SMALL, "steps": 2}))
    run, samples = tmp_path / "run", tmp_path / "samples"
    assert main(["train", "--config", str(cfg), "--out", str(run), "--quiet"]) == 0
    assert main(["sample", "--checkpoint", str(run), "--num", "2", "--steps", "2", "--out", str(samples),
                 "--camera-path", "pan_right", "--reverse-camera", "--camera-speed", "1.5", "--quiet"]) == 0
    cams = np.load(samples / "cameras.npy")
    assert cams.shape == (2, 4, 6)
    assert np.allclose(cams[0, :, 3], [0, -1.5, -3, -4.5]) and np.allclose(cams[..., [0, 1, 2, 4, 5]], 0)
    capsys.readouterr()
    assert main(["eval", str(samples)]) == 0
    out = capsys.readouterr().out
    assert "camera following: mean error" in out
    report = json.loads((samples / "eval.json").read_text())
    assert report["kind"] == "camera" and len(report["per_video_error"]) == 2
    assert np.allclose(report["requested_mean_translation"], [[-1.5, 0]] * 3)
    # a camera model without a path, a path for a model without cameras: one clear line each
    assert main(["sample", "--checkpoint", str(run), "--out", str(tmp_path / "s2"), "--quiet"]) == 2
    assert "give --camera-path" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(run), "--camera-path", "spiral", "--out", str(tmp_path / "s3"),
                 "--quiet"]) == 2
    assert "camera path must be a preset" in capsys.readouterr().err


def test_camera_eval_scores_true_pans_near_zero_and_reversed_ones_far(tmp_path, capsys):
    positions = preset_positions("diagonal_down_right", 8, speed=1.5)
    batch = camera_pan_batch(4, 8, 32, positions=positions, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "samples.npy", ((batch.video + 1) / 2).numpy())
    np.save(tmp_path / "cameras.npy", batch.cameras.numpy())
    assert main(["eval", str(tmp_path)]) == 0
    good = json.loads((tmp_path / "eval.json").read_text())["mean_error_px_per_frame"]
    assert good < 0.25
    np.save(tmp_path / "reversed.npy", -batch.cameras.numpy())  # the path backwards: every step is wrong by 2v
    assert main(["eval", str(tmp_path / "samples.npy"), "--cameras", str(tmp_path / "reversed.npy"),
                 "--report", str(tmp_path / "r.json")]) == 0
    bad = json.loads((tmp_path / "r.json").read_text())["mean_error_px_per_frame"]
    assert bad > 2 * 1.5 * 2**0.5 - 0.5
    np.save(tmp_path / "short.npy", batch.cameras[:, :5].numpy())
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "samples.npy"), "--cameras", str(tmp_path / "short.npy")]) == 2
    assert "expected (N, T, 6) = (4, 8, 6)" in capsys.readouterr().err
