"""The shared training pieces: learning rate, EMA, the log, the clock, resuming and loading checkpoints."""

import math

import pytest
import torch
from torch import nn

from spacetime.io.checkpoint import CheckpointError, save_step_checkpoint
from spacetime.models.video_unet import PRESETS, VideoUNet
from spacetime.training import (
    Clock,
    Meter,
    TrainLog,
    adamw,
    cosine_lr,
    load_trained,
    optimizer_step,
    resume_checkpoint,
    run_processes,
    update_ema,
)


def test_cosine_lr_warms_up_then_decays_to_the_floor():
    for step in range(0, 130, 7):  # the two schedules the pipelines used before sharing this one, bit for bit
        progress = max(0, step - 10) / 90
        diffusion = 2e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
        classify = 2e-3 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if step < 10:
            diffusion = classify = 2e-3 * (step + 1) / 10
        assert cosine_lr(step, 2e-3, 10, 100, floor=0.1) == diffusion
        assert cosine_lr(step, 2e-3, 10, 100) == classify
    assert cosine_lr(20, 1.0, 10, 100, progress=1.0) == 0.0  # the budget ran out before the steps
    assert cosine_lr(20, 1.0, 10, 100, progress=0.5) == pytest.approx(0.5)
    assert cosine_lr(20, 1.0, 10, 100, progress=0.01) == cosine_lr(20, 1.0, 10, 100)  # steps ahead of time


def test_ema_ramps_up_and_copies_buffers():
    model, ema = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.fill_(2.0), model.running_mean.fill_(5.0)
    update_ema(ema, model, step=0, decay=0.999)  # first step: decay (1 + 0) / (10 + 0) = 0.1
    torch.testing.assert_close(ema.weight, torch.full((3,), 1.0 * 0.1 + 2.0 * 0.9))
    assert torch.equal(ema.running_mean, model.running_mean)


def test_adamw_runs_fused_and_updates_as_the_plain_loop():
    torch.manual_seed(0)
    weights = [torch.randn(5, 3, dtype=torch.float64), torch.randn(7, dtype=torch.float64)]
    ours, theirs = ([nn.Parameter(w.clone()) for w in weights] for _ in range(2))
    fused = adamw(ours, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99))
    plain = torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99), foreach=False)
    assert fused.param_groups[0]["fused"] is True
    for _ in range(5):
        grads = [torch.randn_like(w) for w in weights]
        for params, opt in ((ours, fused), (theirs, plain)):
            for w, g in zip(params, grads):
                w.grad = g.clone()
            opt.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    plain.load_state_dict(fused.state_dict())  # one state dict for both
    assert adamw([nn.Parameter(torch.zeros(2, device="meta"))], lr=1e-3).param_groups[0]["fused"] is None


def test_optimizer_step_clips_the_gradient_norm():
    w = nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([w], lr=1.0)
    optimizer_step(opt, (w * torch.tensor([30.0, 40.0, 0.0, 0.0])).sum(), grad_clip=1.0, parameters=[w])
    torch.testing.assert_close(w.detach(), torch.tensor([-0.6, -0.8, 0.0, 0.0]))


def test_log_resumes_the_rows_up_to_the_checkpoint(tmp_path):
    log = TrainLog(tmp_path / "log.csv", ["step", "loss", "lr"])
    for step in (10, 20, 30):
        log.append({"step": step, "loss": 1.0 / step, "lr": 1e-3})
    again = TrainLog.resume(tmp_path / "log.csv", ["step", "loss", "lr"], upto=20)
    assert again.rows == log.rows[:2] and again.last == {"step": 20, "loss": 0.05, "lr": 1e-3}
    assert TrainLog.resume(tmp_path / "none.csv", ["step"], upto=5).rows == []
    quiet = TrainLog(tmp_path / "other.csv", ["step"], write=False)
    quiet.append({"step": 1})
    assert not (tmp_path / "other.csv").exists()


def test_meter_means_and_clock_limits():
    meter = Meter()
    meter.add("loss", 3.0, 2), meter.add("loss", 1.0, 2), meter.add("acc", 1, 4)
    assert meter.mean("loss") == 1.0 and meter.mean("acc") == 0.25 and meter.seconds() > 0
    meter.reset()
    assert meter.sums == {}
    clock = Clock(before=120.0)
    assert clock.trained() >= 120.0
    assert clock.past(1.0) and not clock.past(3.0) and not clock.past(None)
    assert clock.past(None, stop_after=0.0) and not clock.past(None, stop_after=1.0)


def _checkpoint(folder, config, step=1):
    model = VideoUNet(config)
    save_step_checkpoint(folder / "checkpoints", step, {f"model.{k}": v for k, v in model.state_dict().items()},
                         {"kind": "k", "step": step, "model_config": config.to_dict()}, {"kind": "s", "step": step})
    return model


def test_resume_and_load_check_the_kind_and_the_model(tmp_path):
    tiny = PRESETS["tiny"]
    model = _checkpoint(tmp_path, tiny)
    tensors, meta, state = resume_checkpoint(tmp_path, "k", "s", tiny)
    assert meta["step"] == 1 and state["step"] == 1 and set(tensors) == {f"model.{k}" for k in model.state_dict()}
    with pytest.raises(CheckpointError, match="cannot resume: .*latest.json not found"):
        resume_checkpoint(tmp_path / "other", "k", "s", tiny)
    with pytest.raises(CheckpointError, match="model config differs from this run's"):
        resume_checkpoint(tmp_path, "k", "s", tiny.replace(channels=[16, 48]))
    with pytest.raises(CheckpointError, match="holds a 'k' checkpoint; expected 'other'"):
        resume_checkpoint(tmp_path, "other", "s", tiny)
    loaded, _ = load_trained(tmp_path, "k", VideoUNet, prefix="model.")
    assert not loaded.training and all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                                          model.state_dict().values()))
    with pytest.raises(CheckpointError, match="weights do not fit its model config"):
        load_trained(tmp_path, "k", VideoUNet, prefix="ema.")


def test_run_processes_checks_the_count():
    with pytest.raises(ValueError, match="procs must be a positive int; got 0"):
        run_processes(lambda config, out: {}, None, "out", procs=0)
    assert run_processes(lambda config, out, **kw: {"config": config, **kw}, 3, "out", procs=1, x=1) == \
        {"config": 3, "x": 1}
