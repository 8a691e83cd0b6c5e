"""spacetime train --sp: ten steps with sp=2 and with dp=2 x sp=2 equal one process (losses within 1e-6, weights
within 1e-5), for a whole-clip model and for a next-frame model with a motion head; a sequence-parallel run
resumes in one process; sampling with sp=2 gives one process's videos; bad splits are refused by name."""

import csv

import pytest
import torch

from spacetime.cli import main
from spacetime.diffusion.config import TrainConfig
from spacetime.diffusion.sample import sample_checkpoint
from spacetime.diffusion.train import train_processes
from spacetime.io import load_weights

TINY = dict(model="tiny", frames=4, size=16, digit_size=6, batch_size=4, log_every=1, warmup_steps=2, lr=1e-3,
            checkpoint_every=5, steps=10)
#: the demo's kind of model: next-frame clips of 2 context frames and one to make, a motion head, blends
NEXT_FRAME = dict(TINY, model="patch4", model_overrides={"channels": [16, 16], "head_dim": 8, "motion_head": 1,
                                                    "motion_fill": -1.0},
                  prediction="sample", context_frames=2, clip_ends="first", copy_blend=0.5, move_blend=0.25)


def _losses(run):
    with open(run / "log.csv") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def _assert_same_run(a, b, step=10):
    la, lb = _losses(a), _losses(b)
    assert len(la) == len(lb) == step
    assert max(abs(x - y) for x, y in zip(la, lb)) <= 1e-6 * max(1.0, max(la)), (la, lb)
    wa, _ = load_weights(a / "checkpoints" / f"step-{step:06d}.safetensors")
    wb, _ = load_weights(b / "checkpoints" / f"step-{step:06d}.safetensors")
    assert wa.keys() == wb.keys()
    worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert worst <= 1e-5, f"weights differ by {worst:.3g}"


@pytest.mark.parametrize("options", [TINY, NEXT_FRAME], ids=["whole-clip", "next-frame"])
def test_sequence_parallel_training_equals_one_process(tmp_path, options):
    cfg = TrainConfig(**options)
    one = train_processes(cfg, tmp_path / "one", procs=1, progress=False)
    sp = train_processes(cfg, tmp_path / "sp2", procs=2, sp=2, progress=False)
    assert sp["ranks_agree"] and sp["sp"] == 2 and one["step"] == sp["step"] == 10
    _assert_same_run(tmp_path / "one", tmp_path / "sp2")
    if options is TINY:
        both = train_processes(cfg, tmp_path / "dp2sp2", procs=4, sp=2, progress=False)  # 4 processes on 2 cores
        assert both["ranks_agree"]
        _assert_same_run(tmp_path / "one", tmp_path / "dp2sp2")


def test_a_sequence_parallel_run_resumes_in_one_process_and_samples_alike(tmp_path):
    straight = TrainConfig(**dict(TINY, steps=6, checkpoint_every=3))
    train_processes(straight, tmp_path / "straight", progress=False)
    # 3 steps on dp=1 x sp=2, as if stopped after the checkpoint at step 3, then on to 6 in one process
    train_processes(TrainConfig(**dict(TINY, steps=3, checkpoint_every=3)), tmp_path / "split", procs=2, sp=2,
                    progress=False)
    resumed = train_processes(straight, tmp_path / "split", resume=True, progress=False)
    assert resumed["start_step"] == 3
    _assert_same_run(tmp_path / "straight", tmp_path / "split", step=6)
    one = sample_checkpoint(tmp_path / "straight", num=3, steps=4, seed=1, progress=False)["videos"]
    assert main(["sample", "--checkpoint", str(tmp_path / "straight"), "--num", "3", "--steps", "4", "--seed", "1",
                 "--sp", "2", "--out", str(tmp_path / "samples"), "--quiet"]) == 0
    import numpy as np

    split = torch.from_numpy(np.load(tmp_path / "samples" / "samples.npy"))
    assert (split - one).abs().max().item() <= 1e-5


def test_bad_splits_are_refused_by_name(tmp_path):
    cfg = TrainConfig(**dict(TINY, steps=2, checkpoint_every=2))
    with pytest.raises(ValueError, match=r"sp=2 must divide procs=3"):
        train_processes(cfg, tmp_path / "a", procs=3, sp=2)
    with pytest.raises(ValueError, match=r"batch_size \(4\) must be divisible by the data-parallel degree dp = "
                                         r"procs / sp = 3"):
        train_processes(cfg, tmp_path / "b", procs=6, sp=2)
    with pytest.raises(ValueError, match="sp must be a positive int"):
        train_processes(cfg, tmp_path / "c", procs=2, sp=0)
    train_processes(cfg, tmp_path / "dp", procs=2, progress=False)  # plain data parallelism: its own noise per process
    with pytest.raises(Exception, match=r"resume: the checkpoint was written by 2 processes with sp=1; this run has "
                                        r"2 with sp=2"):
        train_processes(TrainConfig(**dict(TINY, steps=4)), tmp_path / "dp", procs=2, sp=2, resume=True)
