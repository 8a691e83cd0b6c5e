"""``spacetime classify train|eval``, the motion task and the folder-per-class dataset."""

import csv
import json

import pytest
import torch

from spacetime.classify import ClassFolders, ClassifyConfig, load_classifier, train
from spacetime.cli import main
from spacetime.data.motion_task import MotionTask

TINY = ["--preset", "micro", "--size", "32", "--patch", "16", "--batch-size", "4", "--test-size", "16"]


def _centroid_x(video):
    """Brightness-weighted column of each frame, ``(n, t)``, from ``(n, 1, t, h, w)`` clips."""
    v = (video[:, 0] - video[:, 0].amin(dim=(-1, -2), keepdim=True)).clamp(min=0) ** 4
    cols = torch.arange(v.shape[-1]).float()
    return (v.sum(-2) * cols).sum(-1) / v.sum(dim=(-1, -2))


def test_motion_task_labels_are_the_direction_and_frames_alone_do_not_tell():
    task = MotionTask(frames=8, size=32, noise=0.0)
    x, y = task.fixed_set(2000, seed=0)
    assert x.shape == (2000, 1, 8, 32, 32) and x.min() >= 0 and x.max() <= 1
    cx = _centroid_x(x)
    moves_right = cx[:, -1] > cx[:, 0]
    assert torch.equal(moves_right, y == 1)
    # one frame: the disk's position has the same distribution in both classes
    for c in (0, 1):
        assert (cx[y == c].mean() - 15.5).abs() < 0.5
    assert (cx[y == 0].std() - cx[y == 1].std()).abs() < 0.5
    # the same seed gives the same clips; another length gives the same motion for longer
    assert torch.equal(task.fixed_set(4, seed=3)[0], task.fixed_set(4, seed=3)[0])
    long, labels = task.fixed_set(4, seed=3, frames=16)
    assert long.shape[2] == 16 and torch.equal(labels, task.fixed_set(4, seed=3)[1])


def test_motion_task_errors():
    with pytest.raises(ValueError, match="needs size >= "):
        MotionTask(frames=16, size=32)
    with pytest.raises(ValueError, match="max_angle"):
        MotionTask(max_angle=90)


def test_train_then_eval_at_another_length(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["classify", "train", *TINY, "--steps", "4", "--eval-every", "2", "--variant", "joint",
                 "--out", str(out)]) == 0
    assert "joint: test accuracy" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4] and all(0 <= float(r["test_acc"]) <= 1 for r in rows)
    assert (out / "confusion.png").stat().st_size > 1000
    summary = json.loads((out / "eval.json").read_text())
    assert sum(map(sum, summary["confusion"])) == 16
    assert main(["classify", "eval", str(out), "--frames", "16"]) == 0
    assert "at T=16 (trained at T=8)" in capsys.readouterr().out
    result = json.loads((out / "eval_T16.json").read_text())
    assert result["frames"] == 16 and (out / "eval_T16.png").exists()
    model, meta = load_classifier(out)
    assert meta["classes"] == ["left", "right"] and model.config.variant == "joint"


def test_resume_continues_exactly(tmp_path):
    cfg = ClassifyConfig(preset="micro", size=32, patch=16, batch_size=4, test_size=8, steps=4, eval_every=2)
    train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "resumed", progress=False)
    ckpt = tmp_path / "resumed" / "checkpoints"
    (ckpt / "latest.json").write_text(json.dumps({"step": 2, "weights": "step-000002.safetensors",
                                                  "state": "step-000002.state.pt"}))
    (ckpt / "step-000004.safetensors").unlink()
    train(cfg, tmp_path / "resumed", resume=True, progress=False)
    a, _ = load_classifier(tmp_path / "straight")
    b, _ = load_classifier(tmp_path / "resumed")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_space_only_takes_no_time_encoding():
    assert ClassifyConfig(variant="space_only").time_encoding == "none"
    assert ClassifyConfig(variant="divided").time_encoding == "rope"
    with pytest.raises(ValueError, match="no time encoding"):
        ClassifyConfig(variant="space_only", time_encoding="learned").model_config(2, 1)


def _write_class(folder, n_videos, direction):
    from spacetime.io.video import write_gif

    folder.mkdir(parents=True)
    for i in range(n_videos):
        frames = torch.zeros(8, 16, 16)
        for t in range(8):
            col = 2 + t if direction > 0 else 13 - t
            frames[t, 6:10, col] = 1.0
        write_gif(folder / f"clip{i}.gif", frames.numpy())


def test_folder_per_class_dataset(tmp_path):
    _write_class(tmp_path / "data" / "left", 3, -1)
    _write_class(tmp_path / "data" / "right", 3, +1)
    ds = ClassFolders(tmp_path / "data", num_frames=4, size=16)
    assert ds.classes == ["left", "right"] and len(ds) == 12  # two 4-frame clips per 8-frame video
    clip, label = ds[0]
    assert clip.shape == (1, 4, 16, 16) and label.item() == 0
    train_idx, test_idx = ds.split(0.25, seed=0)
    assert sorted(torch.cat([train_idx, test_idx]).tolist()) == list(range(12))
    assert set(ds.labels[test_idx].tolist()) == {0, 1}
    out = tmp_path / "run"
    assert main(["classify", "train", "--data", str(tmp_path / "data"), "--frames", "4", "--size", "16", "--patch", "8",
                 "--batch-size", "4", "--steps", "2", "--out", str(out)]) == 0
    assert json.loads((out / "eval.json").read_text())["classes"] == ["left", "right"]


def test_folder_dataset_errors(tmp_path):
    _write_class(tmp_path / "data" / "left", 1, -1)
    (tmp_path / "data" / "right").mkdir()
    with pytest.raises(ValueError, match="class 'right' has no usable clip"):
        ClassFolders(tmp_path / "data", num_frames=4, size=16)
    with pytest.raises(ValueError, match="one sub-folder per class"):
        ClassFolders(tmp_path / "data" / "left", num_frames=4, size=16)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        ClassFolders(tmp_path / "missing")


def test_bad_arguments():
    with pytest.raises(ValueError, match="variant must be one of"):
        ClassifyConfig(variant="full")
    with pytest.raises(ValueError, match="frames must be a positive int; got 0"):
        ClassifyConfig(frames=0)
    with pytest.raises(SystemExit):
        main(["classify", "train", "--variant", "full"])
    with pytest.raises(ValueError, match="shorter than the tubelet"):
        ClassifyConfig(frames=1, tubelet_frames=2, steps=1, size=16, patch=8).model_config(2, 1)
