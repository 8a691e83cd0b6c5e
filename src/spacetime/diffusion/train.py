"""Training a video diffusion model: one process, :func:`train_processes` on this machine, or a ``torchrun``
job (DDP, gloo on CPU, nccl on GPU), on the shared loop of :mod:`spacetime.training`.

:func:`train` writes into ``out_dir``: ``config.json``, ``log.csv``, ``loss.png`` and
``checkpoints/`` (``step-NNNNNN.safetensors`` with ``model.*`` and ``ema.*`` weights and the
configs in the metadata, ``step-NNNNNN.state.pt`` with the optimizer, step, data position and
every RNG, and ``latest.json`` naming the newest pair, written last). Only rank 0 writes.
``resume=True`` continues from ``latest.json`` bit-exactly (same process count).

Sequence parallelism (``sp > 1``, :mod:`spacetime.parallel`): the processes form ``dp x sp``; each clip's frames
are split across ``sp`` of them (the model :func:`~spacetime.parallel.parallelize` d), and every process draws
the whole batch's data, noise and timesteps alike and keeps its part (:class:`~spacetime.parallel.batch.BatchSplit`),
so that a run is one process's, whatever the split: it resumes with any other split of that kind, or in one
process. Plain data parallelism (``sp = 1``, more than one process) keeps each process's own data and noise
(DDP, a DistributedSampler): it resumes with the same number of processes only.
"""

from __future__ import annotations

import copy
import os
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
from ..data.digits import MovingDigits
from ..data.moving_mnist import MovingMNIST
from ..data.statistics import measure_motion
from ..data.video_folder import VideoFolder
from ..io.checkpoint import save_step_checkpoint
from ..models.video_unet import VideoUNet
from ..parallel.batch import BatchSplit, sum_gradients
from ..parallel.modules import parallelize
from ..training import (
    Clock,
    Meter,
    TrainLog,
    adamw,
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

__all__ = ["train", "train_processes", "make_dataset", "resolve_measured", "load_model", "learning_rate",
           "WEIGHTS_KIND", "STATE_KIND"]

WEIGHTS_KIND = "video_diffusion"
STATE_KIND = "video_diffusion_train_state"
LOG_FIELDS = ["step", "loss", "lr", "seconds", "videos_per_s"]


def make_dataset(cfg: TrainConfig) -> Dataset:
    """The training videos the config names, items ``(C, T, H, W)`` in [0, 1] (camera data: ``(video, cameras)``)."""
    length = {} if cfg.num_videos is None else {"length": cfg.num_videos}
    if cfg.data == "disks":
        return BouncingDisks(num_frames=cfg.frames, size=cfg.size, digit_size=cfg.object_size, seed=cfg.seed,
                             objects=cfg.objects, max_speed=int(cfg.max_speed), **length)
    if cfg.data == "digits":
        return MovingDigits(num_frames=cfg.frames, size=cfg.size, objects=cfg.objects, max_speed=int(cfg.max_speed),
                            seed=cfg.seed, split="train", **length)
    if cfg.data == "camera":
        return CameraPans(num_frames=cfg.frames, size=cfg.size, channels=cfg.channels, max_speed=cfg.max_speed,
                          seed=cfg.seed, **length)
    if cfg.data == "mnist":
        return MovingMNIST(cfg.data_path, num_frames=cfg.frames, size=cfg.size)
    return VideoFolder(cfg.data_path, num_frames=cfg.frames, size=cfg.size, grayscale=cfg.channels == 1)


def resolve_measured(cfg: TrainConfig, *, verbose: bool = False) -> tuple[TrainConfig, dict | None]:
    """``cfg`` with its ``model_overrides`` of ``"data"`` (a motion head's reach and fill) measured from its
    training data (:func:`~spacetime.data.statistics.measure_motion`), and the measurement (``None`` when nothing
    is measured). The same data gives the same numbers, so a resumed run resolves as it started."""
    fields = cfg.measured_fields()
    if not fields:
        return cfg, None
    stats = measure_motion(make_dataset(cfg), seed=cfg.seed)
    if verbose:
        print(stats.describe(), flush=True)
    values = {"motion_head": stats["reach"], "motion_fill": stats["fill"]}
    return cfg.replace(model_overrides={**cfg.model_overrides, **{k: values[k] for k in fields}}), dict(stats)


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
    split: BatchSplit | None = None  # sequence-parallel runs: this process's part of every batch
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    trained_before: float = 0.0  # training seconds of the parts before this call


def _setup(cfg: TrainConfig, rank: int, world: int, split: BatchSplit | None) -> _Run:
    """This process's run; ``split`` (sequence parallelism) makes every process read and draw the whole batch."""
    if split is not None:
        split.check_batch(cfg.batch_size)
    elif cfg.batch_size % world:
        raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by the number of processes ({world})")
    dataset = make_dataset(cfg)
    if len(dataset) < cfg.batch_size:
        raise ValueError(f"the dataset holds {len(dataset)} videos, fewer than batch_size={cfg.batch_size}")
    readers, reader = (1, 0) if split is not None else (world, rank)  # split runs: one order, the same everywhere
    sampler = DistributedSampler(dataset, num_replicas=readers, rank=reader, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    device = local_device()
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = VideoUNet(cfg.unet_config()).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    if split is not None and split.sp > 1:
        parallelize(model, split.sp_group)
    optimizer = adamw(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    noise_sched = make_scheduler("ddpm", num_train_timesteps=cfg.timesteps, schedule=cfg.schedule,
                                 prediction_type=cfg.prediction, shift=cfg.noise_shift)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + reader)
    return _Run(cfg, rank, world, device, model, ema, optimizer, noise_sched, dataset, sampler, gen, split)


def _split_of(state: dict) -> tuple[int, int]:
    """``(processes, sp)`` of the run that wrote a checkpoint's state (older ones: no sequence parallelism)."""
    return state["world_size"], state.get("sp", 1)


def _restore(run: _Run, out_dir: Path) -> None:
    """Continue from the run folder's latest checkpoint: weights, optimizer, data position and every RNG.

    A run whose every process draws the whole batch (sequence-parallel, or one process) continues with any
    split of that kind; a plain data-parallel run only with its own number of processes.
    """
    tensors, _, state = resume_checkpoint(out_dir, WEIGHTS_KIND, STATE_KIND, run.model.config)
    run.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    run.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, strict=True)
    (procs, sp), now = _split_of(state), (run.world, run.split.sp if run.split else 1)
    shared = procs == 1 or sp > 1  # one stream of data and noise for the whole run
    if (procs, sp) != now and not (shared and (run.split is not None or run.world == 1)):
        raise ValueError(f"resume: the checkpoint was written by {procs} processes with sp={sp}; this run has "
                         f"{now[0]} with sp={now[1]}. A plain data-parallel run (sp=1) keeps each process's own data "
                         f"and noise, so it continues only as it was: --procs {procs} --sp {sp}")
    run.optimizer.load_state_dict(state["optimizer"])
    run.step, run.epoch, run.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
    run.trained_before = state.get("train_seconds", 0.0)  # absent in checkpoints of older versions
    torch.set_rng_state(state["torch_rng"])
    run.gen.set_state(state["noise_rng"][0 if shared else run.rank])


def _batches(run: _Run) -> Iterator[tuple[Tensor, Tensor | None]]:
    """This rank's batches ``(videos in [-1, 1], cameras or None)``, epoch after epoch, from where the run stands.

    ``run.epoch`` and ``run.batch_in_epoch`` say where the next batch comes from (a checkpoint's data position).
    """
    per_rank = run.cfg.batch_size if run.split is not None else run.cfg.batch_size // run.world
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
    if run.world > 1 and run.split is None:  # sequence-parallel runs: one stream, the same everywhere
        rng_states = [None] * run.world
        dist.all_gather_object(rng_states, run.gen.get_state())
    if run.rank != 0:
        return None
    cfg, model = run.cfg, run.model
    state = {"kind": STATE_KIND, "step": run.step, "epoch": run.epoch, "batch_in_epoch": run.batch_in_epoch,
             "world_size": run.world, "sp": run.split.sp if run.split else 1,
             "optimizer": run.optimizer.state_dict(), "train_seconds": clock.seen,
             "torch_rng": torch.get_rng_state(), "noise_rng": rng_states, "config": cfg.to_dict()}
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in run.ema.state_dict().items()})
    meta = {"kind": WEIGHTS_KIND, "step": run.step, "model_config": model.config.to_dict(),
            "train_config": cfg.to_dict()}
    path = save_step_checkpoint(out_dir / "checkpoints", run.step, tensors, meta, state)
    plot_curve(log.rows, out_dir / "loss.png")
    return path


def _batch_loss(loss: Tensor, world: int, dp: int) -> float:
    """The batch's loss from every process's: their sum over the world divided by the data-parallel degree."""
    value = loss.detach().float()
    if world > 1:
        dist.all_reduce(value)
        value /= dp
    return value.item()


def train(cfg: TrainConfig, out_dir, resume: bool = False, progress: bool | None = None,
          stop_after: float | None = None, sp: int = 1) -> dict:
    """Train ``cfg`` into ``out_dir``; return a summary (final step, loss, seconds, checkpoint path).

    ``cfg.time_limit`` bounds the run's training time, resumed parts included; ``stop_after`` (minutes)
    ends this call earlier, with a checkpoint to resume from (a run trained in parts). Under ``torchrun``
    (``WORLD_SIZE > 1``) it joins the process group, wraps the model in DistributedDataParallel, shards
    the data with a DistributedSampler and lets rank 0 write. ``sp > 1`` splits every clip's frames across
    ``sp`` processes (the module docstring).
    """
    out_dir = Path(out_dir)
    positive_int("sp", sp)
    with process_group() as (rank, world):
        cfg, _ = resolve_measured(cfg, verbose=rank == 0 and progress is not False)
        split = BatchSplit.create(sp) if sp > 1 else None
        run = _setup(cfg, rank, world, split)
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
        return {**summary, "world_size": world, "sp": sp, "out_dir": str(out_dir)}


def _loop(run: _Run, out_dir: Path, log: TrainLog, progress: bool | None, stop_after: float | None) -> dict:
    """Train from ``run.step`` to ``cfg.steps`` or the time limit, logging and checkpointing on the way."""
    cfg, world = run.cfg, run.world
    split = run.split
    net = nn.parallel.DistributedDataParallel(run.model, device_ids=[run.device] if run.device.type == "cuda"
                                              else None) if world > 1 and split is None else run.model
    dp = split.dp if split is not None else world
    reduce = None if split is None else (lambda: sum_gradients(run.model.parameters(), dp))
    clock, meter, result = Clock(run.trained_before, world, run.device), Meter(), {}
    run.model.train()
    with progress_bar(cfg.steps, run.step, "train", progress, run.rank) as bar:
        for x0, cams in (_batches(run) if run.step < cfg.steps else ()):
            lr = learning_rate(cfg, run.step, clock.seen)  # the clock as the last step ended
            set_lr(run.optimizer, lr)
            loss = diffusion_loss(net, run.noise_sched, cfg, run.model.config, x0, cams, run.gen, run.device, split)
            optimizer_step(run.optimizer, loss, grad_clip=cfg.grad_clip, parameters=run.model.parameters(),
                           reduce=reduce)
            update_ema(run.ema, run.model, run.step, cfg.ema_decay)
            run.step += 1
            clock.trained()
            out_of_time = clock.past(cfg.time_limit, stop_after)
            meter.add("loss", _batch_loss(loss, world, dp))
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
                    progress: bool | None = None, sp: int = 1) -> dict:
    """:func:`train` in ``procs`` processes on this machine, one thread each (gloo, or NCCL on GPUs); returns
    rank 0's summary. ``procs=1`` is a plain call in this process. ``sp`` of them split each clip
    (sequence parallelism, ``procs = dp x sp``); the others share the batch (data parallelism).

    Small models do not speed up with threads on a few CPU cores (the operations are too small), but
    do with processes: two single-thread processes train about 1.5x faster than one two-thread process
    on the 2-core machines here. ``cfg.batch_size`` stays the global batch.
    """
    positive_int("procs", procs)
    positive_int("sp", sp)
    launched = int(os.environ.get("WORLD_SIZE", "1"))  # under torchrun: its processes, this one among them
    world, what = (launched, "WORLD_SIZE") if launched > 1 else (procs, "procs")
    if world % sp:
        raise ValueError(f"sp={sp} must divide {what}={world} (processes = dp x sp)")
    if cfg.batch_size % (world // sp):
        if sp == 1:
            raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by {what} ({world})")
        raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by the data-parallel degree "
                         f"dp = {what} / sp = {world // sp}")
    return run_processes(train, cfg, out_dir, procs if launched == 1 else 1, resume=resume, progress=progress, sp=sp)
