"""Training a video diffusion model: one process, :func:`train_processes` on this machine, or a ``torchrun``
job (DDP, gloo on CPU, nccl on GPU), on the shared loop of :mod:`spacetime.training`.

:func:`train` writes into ``out_dir``: ``config.json``, ``log.csv``, ``loss.png`` and
``checkpoints/`` (``step-NNNNNN.safetensors`` with ``model.*`` and ``ema.*`` weights and the
configs in the metadata, ``step-NNNNNN.state.pt`` with the optimizer, step, data position and
every RNG, and ``latest.json`` naming the newest pair, written last). Only rank 0 writes.
``resume=True`` continues from ``latest.json`` bit-exactly (same process count).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset, DistributedSampler

from ..checks import one_of, positive_int
from ..data.bouncing import BouncingDisks
from ..data.camera_pan import CameraPans
from ..data.moving_mnist import MovingMNIST
from ..data.video_folder import VideoFolder
from ..io.checkpoint import save_step_checkpoint
from ..models.video_unet import VideoUNet
from ..training import (
    Clock,
    Meter,
    TrainLog,
    cosine_lr,
    load_trained,
    local_device,
    optimizer_step,
    plot_curve,
    process_group,
    progress_bar,
    ranks_agree,
    resume_checkpoint,
    run_processes,
    set_lr,
    update_ema,
)
from .config import TrainConfig
from .objective import diffusion_loss
from .schedules import make_scheduler

__all__ = ["train", "train_processes", "make_dataset", "load_model", "learning_rate", "WEIGHTS_KIND", "STATE_KIND"]

WEIGHTS_KIND = "video_diffusion"
STATE_KIND = "video_diffusion_train_state"
LOG_FIELDS = ["step", "loss", "lr", "seconds", "videos_per_s"]


def make_dataset(cfg: TrainConfig) -> Dataset:
    """The training videos the config names, items ``(C, T, H, W)`` in [0, 1] (camera data: ``(video, cameras)``)."""
    length = {} if cfg.num_videos is None else {"length": cfg.num_videos}
    if cfg.data == "disks":
        return BouncingDisks(num_frames=cfg.frames, size=cfg.size, digit_size=cfg.digit_size, seed=cfg.seed, **length)
    if cfg.data == "camera":
        return CameraPans(num_frames=cfg.frames, size=cfg.size, channels=cfg.channels, max_speed=cfg.max_speed,
                          seed=cfg.seed, **length)
    if cfg.data == "mnist":
        return MovingMNIST(cfg.data_path, num_frames=cfg.frames, size=cfg.size)
    return VideoFolder(cfg.data_path, num_frames=cfg.frames, size=cfg.size, grayscale=cfg.channels == 1)


def load_model(path, which: str = "ema") -> tuple[VideoUNet, dict]:
    """A :class:`VideoUNet` with the ``"ema"`` (default) or ``"model"`` weights of a checkpoint, and its metadata."""
    one_of("which", which, ("ema", "model"))
    return load_trained(path, WEIGHTS_KIND, VideoUNet, prefix=which + ".")


def learning_rate(cfg: TrainConfig, step: int, seconds: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10% at the last step; with ``lr_decay="time"``, at the last
    step or at the time limit (``seconds`` of training so far), whichever comes first."""
    progress = seconds / (60 * cfg.time_limit) if cfg.lr_decay == "time" else 0.0
    return cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps, floor=0.1, progress=progress)


@dataclass
class _Run:
    """What one rank's training holds: the networks, the optimizer, the data and where it stands."""

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    model: VideoUNet
    ema: VideoUNet
    optimizer: torch.optim.Optimizer
    noise_sched: object
    dataset: Dataset
    sampler: DistributedSampler
    gen: torch.Generator
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    trained_before: float = 0.0  # training seconds of the parts before this call


def _setup(cfg: TrainConfig, rank: int, world: int) -> _Run:
    if cfg.batch_size % world:
        raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by the number of processes ({world})")
    dataset = make_dataset(cfg)
    if len(dataset) < cfg.batch_size:
        raise ValueError(f"the dataset holds {len(dataset)} videos, fewer than batch_size={cfg.batch_size}")
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    device = local_device()
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = VideoUNet(cfg.unet_config()).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    noise_sched = make_scheduler("ddpm", num_train_timesteps=cfg.timesteps, schedule=cfg.schedule,
                                 prediction_type=cfg.prediction, shift=cfg.noise_shift)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rank)
    return _Run(cfg, rank, world, device, model, ema, optimizer, noise_sched, dataset, sampler, gen)


def _restore(run: _Run, out_dir: Path) -> None:
    """Continue from the run folder's latest checkpoint: weights, optimizer, data position and every RNG."""
    tensors, _, state = resume_checkpoint(out_dir, WEIGHTS_KIND, STATE_KIND, run.model.config)
    run.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    run.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, strict=True)
    if state["world_size"] != run.world:
        raise ValueError(f"checkpoint was written by {state['world_size']} processes; resuming with {run.world}")
    run.optimizer.load_state_dict(state["optimizer"])
    run.step, run.epoch, run.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
    run.trained_before = state.get("train_seconds", 0.0)  # absent in checkpoints of older versions
    torch.set_rng_state(state["torch_rng"])
    run.gen.set_state(state["noise_rng"][run.rank])


def _batches(run: _Run) -> Iterator[tuple[Tensor, Tensor | None]]:
    """This rank's batches ``(videos in [-1, 1], cameras or None)``, epoch after epoch, from where the run stands.

    ``run.epoch`` and ``run.batch_in_epoch`` say where the next batch comes from (a checkpoint's data position).
    """
    per_rank = run.cfg.batch_size // run.world
    while True:
        run.sampler.set_epoch(run.epoch)
        order = list(run.sampler)
        batches = [order[i:i + per_rank] for i in range(0, len(order) - per_rank + 1, per_rank)]
        for bi in range(run.batch_in_epoch, len(batches)):
            items = [run.dataset[i] for i in batches[bi]]
            cams = None
            if isinstance(items[0], tuple):  # (video, cameras)
                items, cams = zip(*items)
                cams = torch.stack(cams).to(run.device)
            run.batch_in_epoch = bi + 1
            yield torch.stack(items) * 2 - 1, cams  # (b, c, t, h, w) in [-1, 1]
        run.epoch, run.batch_in_epoch = run.epoch + 1, 0


def _save(run: _Run, out_dir: Path, log: TrainLog, clock: Clock) -> Path | None:
    """Rank 0 writes a checkpoint of the run (every rank's noise RNG included) and redraws ``loss.png``."""
    rng_states = [run.gen.get_state()]
    if run.world > 1:
        rng_states = [None] * run.world
        dist.all_gather_object(rng_states, run.gen.get_state())
    if run.rank != 0:
        return None
    cfg, model = run.cfg, run.model
    state = {"kind": STATE_KIND, "step": run.step, "epoch": run.epoch, "batch_in_epoch": run.batch_in_epoch,
             "world_size": run.world, "optimizer": run.optimizer.state_dict(), "train_seconds": clock.seen,
             "torch_rng": torch.get_rng_state(), "noise_rng": rng_states, "config": cfg.to_dict()}
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in run.ema.state_dict().items()})
    meta = {"kind": WEIGHTS_KIND, "step": run.step, "model_config": model.config.to_dict(),
            "train_config": cfg.to_dict()}
    path = save_step_checkpoint(out_dir / "checkpoints", run.step, tensors, meta, state)
    plot_curve(log.rows, out_dir / "loss.png")
    return path


def _mean_over_ranks(loss: Tensor, world: int) -> float:
    value = loss.detach().float()
    if world > 1:
        dist.all_reduce(value)
        value /= world
    return value.item()


def train(cfg: TrainConfig, out_dir, resume: bool = False, progress: bool | None = None,
          stop_after: float | None = None) -> dict:
    """Train ``cfg`` into ``out_dir``; return a summary (final step, loss, seconds, checkpoint path).

    ``cfg.time_limit`` bounds the run's training time, resumed parts included; ``stop_after`` (minutes)
    ends this call earlier, with a checkpoint to resume from (a run trained in parts). Under ``torchrun``
    (``WORLD_SIZE > 1``) it joins the process group, wraps the model in DistributedDataParallel, shards
    the data with a DistributedSampler and lets rank 0 write.
    """
    out_dir = Path(out_dir)
    with process_group() as (rank, world):
        run = _setup(cfg, rank, world)
        if resume:
            _restore(run, out_dir)
        if rank == 0:
            cfg.save(out_dir / "config.json")
        log_path, writes = out_dir / "log.csv", rank == 0
        log = TrainLog.resume(log_path, LOG_FIELDS, run.step, writes) if resume and writes else \
            TrainLog(log_path, LOG_FIELDS, write=writes)
        summary = {"start_step": run.step, **_loop(run, out_dir, log, progress, stop_after)}
        if world > 1:
            summary["ranks_agree"] = ranks_agree(run.model)
            dist.barrier()  # leave together: no rank tears the group down while another still talks to it
        return {**summary, "world_size": world, "out_dir": str(out_dir)}


def _loop(run: _Run, out_dir: Path, log: TrainLog, progress: bool | None, stop_after: float | None) -> dict:
    """Train from ``run.step`` to ``cfg.steps`` or the time limit, logging and checkpointing on the way."""
    cfg, world = run.cfg, run.world
    net = nn.parallel.DistributedDataParallel(run.model, device_ids=[run.device] if run.device.type == "cuda"
                                              else None) if world > 1 else run.model
    clock, meter, result = Clock(run.trained_before, world, run.device), Meter(), {}
    run.model.train()
    with progress_bar(cfg.steps, run.step, "train", progress, run.rank) as bar:
        for x0, cams in (_batches(run) if run.step < cfg.steps else ()):
            lr = learning_rate(cfg, run.step, clock.seen)  # the clock as the last step ended
            set_lr(run.optimizer, lr)
            loss = diffusion_loss(net, run.noise_sched, cfg, run.model.config, x0, cams, run.gen, run.device)
            optimizer_step(run.optimizer, loss, grad_clip=cfg.grad_clip, parameters=run.model.parameters())
            update_ema(run.ema, run.model, run.step, cfg.ema_decay)
            run.step += 1
            clock.trained()
            out_of_time = clock.past(cfg.time_limit, stop_after)
            meter.add("loss", _mean_over_ranks(loss, world))
            bar.update(1)
            last = run.step >= cfg.steps or out_of_time
            if run.step % cfg.log_every == 0 or last:
                log.append({"step": run.step, "loss": meter.mean("loss"), "lr": lr, "seconds": round(clock.seen, 3),
                            "videos_per_s": round(meter.counts["loss"] * cfg.batch_size / meter.seconds(), 3)})
                bar.set_postfix(loss=f"{log.last['loss']:.4f}", vid_s=f"{log.last['videos_per_s']:.1f}")
                meter.reset()
            if run.step % cfg.checkpoint_every == 0 or last:
                path = _save(run, out_dir, log, clock)
                if path is not None:
                    result["checkpoint"] = str(path)
            if last:
                break
    return {**result, "stopped_by_time_limit": run.step < cfg.steps, "step": run.step, "train_seconds": clock.seen,
            "loss": log.last["loss"] if log.last else float("nan"), "seconds": clock.seen - run.trained_before}


def train_processes(cfg: TrainConfig, out_dir, procs: int = 1, resume: bool = False,
                    progress: bool | None = None) -> dict:
    """:func:`train` in ``procs`` data-parallel processes on this machine, one thread each (gloo, or
    NCCL on GPUs); returns rank 0's summary. ``procs=1`` is a plain call in this process.

    Small models do not speed up with threads on a few CPU cores (the operations are too small), but
    do with processes: two single-thread processes train about 1.5x faster than one two-thread process
    on the 2-core machines here. ``cfg.batch_size`` stays the global batch.
    """
    positive_int("procs", procs)
    if cfg.batch_size % procs:
        raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by procs ({procs})")
    return run_processes(train, cfg, out_dir, procs, resume=resume, progress=progress)
