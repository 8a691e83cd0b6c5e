"""Training a video classifier (:class:`~spacetime.models.VideoTransformer`) on the shared loop of
:mod:`spacetime.training`.

:func:`train` writes into ``out_dir``: ``config.json``, ``log.csv`` (step, seconds, lr, loss, train
and test accuracy) and ``loss.png``, ``confusion.png`` and ``eval.json`` on the test set, and
``checkpoints/`` (safetensors weights with the model config, the classes and the input
normalisation in their metadata, resumable state, ``latest.json``); every write is atomic.
``resume=True`` continues from ``latest.json`` bit-exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ..io.checkpoint import latest_checkpoint, save_step_checkpoint
from ..io.files import atomic_write_text
from ..models.classifier import VideoTransformer
from ..training import (
    Clock,
    Meter,
    TrainLog,
    adamw,
    cosine_lr,
    optimizer_step,
    plot_curve,
    progress_bar,
    resume_checkpoint,
    set_lr,
)
from .config import ClassifyConfig
from .data import MEAN, STD, ClassifyData, normalize
from .evaluate import WEIGHTS_KIND, evaluate, plot_confusion

__all__ = ["train", "learning_rate", "STATE_KIND"]

STATE_KIND = "video_classifier_state"
LOG_FIELDS = ["step", "seconds", "lr", "loss", "train_acc", "test_acc"]


def learning_rate(cfg: ClassifyConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to zero at ``cfg.steps``."""
    return cosine_lr(step, cfg.lr, cfg.warmup, cfg.steps)


def _save(out_dir: Path, cfg: ClassifyConfig, model: VideoTransformer, optimizer, gen: torch.Generator,
          classes: list[str], step: int, clock: Clock) -> Path:
    state = {"kind": STATE_KIND, "step": step, "optimizer": optimizer.state_dict(), "train_seconds": clock.seen,
             "torch_rng": torch.get_rng_state(), "data_rng": gen.get_state()}
    meta = {"kind": WEIGHTS_KIND, "step": step, "model_config": model.config.to_dict(),
            "train_config": cfg.to_dict(), "classes": list(classes), "normalize": [MEAN, STD]}
    return save_step_checkpoint(out_dir / "checkpoints", step, dict(model.state_dict()), meta, state)


def train(cfg: ClassifyConfig, out_dir, resume: bool = False, progress: bool | None = None) -> dict:
    """Train ``cfg`` into ``out_dir``; return a summary (steps, seconds, test accuracy, paths)."""
    out_dir = Path(out_dir)
    data = ClassifyData(cfg)
    torch.manual_seed(cfg.seed)
    model = VideoTransformer(cfg.model_config(len(data.classes), data.channels))
    optimizer = adamw(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(cfg.seed)
    step, before, log = 0, 0.0, TrainLog(out_dir / "log.csv", LOG_FIELDS)
    if resume:
        tensors, _, state = resume_checkpoint(out_dir, WEIGHTS_KIND, STATE_KIND, model.config)
        model.load_state_dict(tensors, strict=True)
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        log = TrainLog.resume(out_dir / "log.csv", LOG_FIELDS, step)
        before = state.get("train_seconds", log.last["seconds"] if log.last else 0.0)  # older checkpoints: the log's
        torch.set_rng_state(state["torch_rng"])
        gen.set_state(state["data_rng"])
    cfg.save(out_dir / "config.json")
    clock, meter = Clock(before), Meter()
    model.train()
    with progress_bar(cfg.steps, step, f"train {cfg.variant}", progress) as bar:
        while step < cfg.steps:
            x, y = data.batch(cfg.batch_size, gen)
            set_lr(optimizer, learning_rate(cfg, step))
            logits = model(normalize(x))
            loss = F.cross_entropy(logits, y)
            optimizer_step(optimizer, loss)
            step += 1
            meter.add("loss", loss.item() * len(y), len(y))
            meter.add("train_acc", (logits.argmax(1) == y).sum().item(), len(y))
            bar.update(1)
            clock.trained()
            out_of_time = clock.past(cfg.time_limit)
            if step % cfg.eval_every == 0 or step == cfg.steps or out_of_time:
                test_acc, _ = evaluate(model, *data.test, len(data.classes))
                log.append({"step": step, "seconds": round(clock.seen, 2), "lr": learning_rate(cfg, step - 1),
                            "loss": round(meter.mean("loss"), 5), "train_acc": round(meter.mean("train_acc"), 4),
                            "test_acc": round(test_acc, 4)})
                bar.set_postfix(loss=f"{meter.mean('loss'):.3f}", test_acc=f"{test_acc:.3f}")
                meter.reset()
                _save(out_dir, cfg, model, optimizer, gen, data.classes, step, clock)
                plot_curve(log.rows, out_dir / "loss.png", ylabel="cross-entropy")
            if out_of_time:
                break
    return _finish(cfg, model, data, out_dir, step, log)


def _finish(cfg: ClassifyConfig, model: VideoTransformer, data: ClassifyData, out_dir: Path, step: int,
            log: TrainLog) -> dict:
    """Score the trained model on the test set: ``confusion.png`` and ``eval.json`` (the returned summary)."""
    accuracy, confusion = evaluate(model, *data.test, len(data.classes))
    plot_confusion(confusion, data.classes, out_dir / "confusion.png",
                   f"{cfg.variant}, T={cfg.frames}: test accuracy {accuracy:.1%} ({int(confusion.sum())} clips)")
    checkpoint, _ = latest_checkpoint(out_dir)
    summary = {"variant": cfg.variant, "time_encoding": model.config.time_kind, "step": step,
               "stopped_by_time_limit": step < cfg.steps, "train_seconds": log.last["seconds"] if log.last else 0.0,
               "test_accuracy": accuracy, "confusion": confusion.tolist(), "classes": data.classes,
               "parameters": sum(p.numel() for p in model.parameters()),
               "checkpoint": str(checkpoint), "out_dir": str(out_dir)}
    atomic_write_text(out_dir / "eval.json", json.dumps(summary, indent=2) + "\n")
    return summary
