"""Training a video diffusion model: one process or a ``torchrun`` job (DDP, gloo on CPU, nccl on GPU).

:func:`train` writes into ``out_dir``: ``config.json``, ``log.csv``, ``loss.png`` and
``checkpoints/`` (``step-NNNNNN.safetensors`` with ``model.*`` and ``ema.*`` weights and the
configs in the metadata, ``step-NNNNNN.state.pt`` with the optimizer, step, data position and
every RNG, and ``latest.json`` naming the newest pair, written last). Only rank 0 writes.
``resume=True`` continues from ``latest.json`` bit-exactly (same process count).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler

from ..data.bouncing import BouncingDisks
from ..io.checkpoint import CheckpointError, latest_checkpoint, load_state, load_weights, save_step_checkpoint
from ..io.files import atomic_write_csv, save_figure
from ..models.video_unet import VideoUNet, VideoUNetConfig
from ..ops.motion import shift_offsets, shifted_copies
from .config import CLIP_ENDS, TrainConfig
from .schedules import make_scheduler, predicted_x0

__all__ = ["train", "train_processes", "make_dataset", "load_model", "given_prefix", "copy_blend", "next_frame_clips",
           "clip_end_weights", "WEIGHTS_KIND", "STATE_KIND"]

WEIGHTS_KIND = "video_diffusion"
STATE_KIND = "video_diffusion_train_state"


def make_dataset(cfg: TrainConfig) -> Dataset:
    """The training videos the config names, items ``(C, T, H, W)`` in [0, 1] (camera data: ``(video, cameras)``)."""
    length = {} if cfg.num_videos is None else {"length": cfg.num_videos}
    if cfg.data == "disks":
        return BouncingDisks(num_frames=cfg.frames, size=cfg.size, digit_size=cfg.digit_size, seed=cfg.seed, **length)
    if cfg.data == "camera":
        from ..data.camera_pan import CameraPans

        return CameraPans(num_frames=cfg.frames, size=cfg.size, channels=cfg.channels, max_speed=cfg.max_speed,
                          seed=cfg.seed, **length)
    if cfg.data == "mnist":
        from ..data.moving_mnist import MovingMNIST

        return MovingMNIST(cfg.data_path, num_frames=cfg.frames, size=cfg.size)
    from ..data.video_folder import VideoFolder

    return VideoFolder(cfg.data_path, num_frames=cfg.frames, size=cfg.size, grayscale=cfg.channels == 1)


def load_model(path, which: str = "ema") -> tuple[VideoUNet, dict]:
    """A :class:`VideoUNet` with the ``"ema"`` (default) or ``"model"`` weights of a checkpoint, and its metadata."""
    if which not in ("ema", "model"):
        raise ValueError(f"which must be 'ema' or 'model'; got {which!r}")
    path, _ = latest_checkpoint(path)
    tensors, meta = load_weights(path, kind=WEIGHTS_KIND)
    model = VideoUNet(VideoUNetConfig.from_dict(meta["model_config"]))
    prefix = which + "."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not fit its model config: {exc}") from None
    return model.eval(), meta


def clip_end_weights(frames: int, kind: str = "uniform") -> Tensor:
    """How often a next-frame training clip ends at each frame. ``"uniform"``: evenly. ``"first"``:
    frame 1, where the motion is chosen (the frames before it do not fix its content), 3/8 of the
    time, frame 0 1/8, and the later frames, which continue a motion under way, the other half evenly."""
    if kind not in CLIP_ENDS:
        raise ValueError(f"clip_ends must be one of {CLIP_ENDS}; got {kind!r}")
    if kind == "uniform" or frames < 3:
        return torch.full((frames,), 1.0 / frames)
    return torch.tensor([1 / 8, 3 / 8] + [1 / (2 * (frames - 2))] * (frames - 2))


def next_frame_clips(x0: Tensor, context: int, generator: torch.Generator | None = None,
                     ends: str = "uniform") -> Tensor:
    """``(B, C, T, H, W)`` videos -> ``(B, C, context + 1, H, W)`` clips: per video a frame ``j`` drawn
    with ``clip_end_weights(T, ends)`` and the ``context`` frames before it; frames before the first are
    black (-1)."""
    b, c, frames, h, w = x0.shape
    ends = torch.multinomial(clip_end_weights(frames, ends), b, replacement=True, generator=generator).tolist()
    padded = torch.cat([x0.new_full((b, c, context, h, w), -1.0), x0], dim=2)  # frame j sits at j + context
    return torch.stack([padded[i, :, j:j + context + 1] for i, j in enumerate(ends)])


def copy_blend(clips: Tensor, fraction: float, generator: torch.Generator | None = None, *, moved: float = 0.0,
               radius: int = 0, fill: float | None = None) -> Tensor:
    """What a next-frame model's noisy frame is made from: ``clips`` ``(B, C, K + 1, H, W)`` with, in a
    ``fraction`` of them, the last frame blended ``lam * frame + (1 - lam) * frame before`` (``lam``
    uniform in [0, 1]); the target stays the true frame.

    A sampler whose estimate of a frame is still the average of the ways it could move carries that
    average, centred on the frame before, into its noisy frame; a denoiser that never saw such a
    frame in training sharpens it into a copy of the frame before along an axis (a pause the data
    makes only at walls). Training on blends teaches it to leave the copy for a real frame.

    ``moved``: a further fraction of the clips blend the frame with the frame before moved by a random
    nonzero shift of up to ``radius`` pixels per axis (a motion head's candidates, ``fill`` as
    :func:`~spacetime.ops.motion.shifted_copies`), with ``lam`` uniform in [1/2, 1]: the frame stays
    the larger part. Half-way through choosing a move, a sampler holds such a mix of moves; these clips
    teach the denoiser to follow the stronger one rather than settle between them.
    """
    b = clips.shape[0]
    lam = torch.rand(b, generator=generator)
    pick = torch.rand(b, generator=generator)
    lam = torch.where(pick < fraction, lam, torch.ones(b))
    before = clips[:, :, -2]
    if moved:
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
            raise ValueError(f"radius must be an int >= 1 when moved > 0 (the shifts to blend with); got {radius!r}")
        shifts = [k for k, offset in enumerate(shift_offsets(radius)) if offset != (0, 0)]
        k = torch.tensor(shifts)[torch.randint(len(shifts), (b,), generator=generator)]
        half = 0.5 + 0.5 * torch.rand(b, generator=generator)
        use = (pick >= fraction) & (pick < fraction + moved)
        lam = torch.where(use, half, lam)
        copies = shifted_copies(before, radius, fill)  # (b, c, K, h, w)
        partner = copies[torch.arange(b, device=clips.device), :, k.to(clips.device)]
        before = torch.where(use.to(clips.device)[:, None, None, None], partner, before)
    lam = lam.to(clips).reshape(b, 1, 1, 1)
    last = lam * clips[:, :, -1] + (1 - lam) * before
    return torch.cat([clips[:, :, :-1], last[:, :, None]], dim=2)


def given_prefix(x0: Tensor, xt: Tensor, cut: int) -> tuple[Tensor, Tensor, Tensor]:
    """Give the first ``cut`` frames of every clip clean (a next-frame model's context).

    Returns ``xt`` with those frames of ``x0`` in place of the noisy ones, the bool ``known (B, T)``
    mask the model takes, and a loss ``weight`` shaped like ``x0``: 1 on the frames to generate, 0 on
    the given ones.
    """
    b, frames = x0.shape[0], x0.shape[2]
    known = (torch.arange(frames, device=x0.device) < cut).expand(b, -1)
    mask = known[:, None, :, None, None]
    return torch.where(mask, x0, xt), known, (~mask).to(x0.dtype).expand_as(x0)


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _lr(cfg: TrainConfig, step: int, seconds: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10% at the last step; with ``lr_decay="time"``, at the last
    step or at the time limit (``seconds`` of training so far), whichever comes first."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    if cfg.lr_decay == "time":
        progress = max(progress, seconds / (60 * cfg.time_limit))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _plot_loss(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    loss = [r["loss"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps, loss, lw=0.8, alpha=0.5, label="loss (per log interval)")
    if len(loss) >= 10:
        k = max(2, len(loss) // 20)
        smooth = [sum(loss[max(0, i - k + 1):i + 1]) / len(loss[max(0, i - k + 1):i + 1]) for i in range(len(loss))]
        ax.plot(steps, smooth, lw=1.6, label=f"running mean of {k}")
    ax.set_xlabel("step"), ax.set_ylabel("MSE"), ax.set_yscale("log"), ax.grid(alpha=0.3), ax.legend()
    ax.set_title("training loss")
    fig.tight_layout()
    save_figure(fig, path)


def _write_log(rows: list[dict], path: Path) -> None:
    atomic_write_csv(path, rows, ["step", "loss", "lr", "seconds", "videos_per_s"])


def _read_log(path: Path, upto: int) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return [{"step": int(r["step"]), "loss": float(r["loss"]), "lr": float(r["lr"]), "seconds": float(r["seconds"]),
                 "videos_per_s": float(r["videos_per_s"])} for r in csv.DictReader(f) if int(r["step"]) <= upto]


def _save_checkpoint(ckpt_dir: Path, cfg: TrainConfig, model, ema, state: dict) -> Path:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    meta = {"kind": WEIGHTS_KIND, "step": state["step"], "model_config": model.config.to_dict(),
            "train_config": cfg.to_dict()}
    return save_step_checkpoint(ckpt_dir, state["step"], tensors, meta, state)


def train(cfg: TrainConfig, out_dir, resume: bool = False, progress: bool | None = None,
          stop_after: float | None = None) -> dict:
    """Train ``cfg`` into ``out_dir``; return a summary (final step, loss, seconds, checkpoint path).

    ``cfg.time_limit`` bounds the run's training time, resumed parts included; ``stop_after`` (minutes)
    ends this call earlier, with a checkpoint to resume from (a run trained in parts).

    Under ``torchrun`` (``WORLD_SIZE > 1``) it joins the process group, wraps the model in
    DistributedDataParallel, shards the data with a DistributedSampler and lets rank 0 write.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    world_env = int(os.environ.get("WORLD_SIZE", "1"))
    started_group = False
    if world_env > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        started_group = True
    rank, world = _dist_info()
    try:
        if cfg.batch_size % world:
            raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by the number of processes ({world})")
        per_rank = cfg.batch_size // world
        dataset = make_dataset(cfg)
        if len(dataset) < cfg.batch_size:
            raise ValueError(f"the dataset holds {len(dataset)} videos, fewer than batch_size={cfg.batch_size}")
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed,
                                     drop_last=True)

        cuda = torch.cuda.is_available()
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = VideoUNet(cfg.unet_config()).to(device)
        ema = copy.deepcopy(model).requires_grad_(False)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        noise_sched = make_scheduler("ddpm", num_train_timesteps=cfg.timesteps, schedule=cfg.schedule,
                                     prediction_type=cfg.prediction, shift=cfg.noise_shift)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rank)
        step, epoch, batch_in_epoch, trained_before = 0, 0, 0, 0.0
        ckpt_dir = out_dir / "checkpoints"
        if resume:
            if not (ckpt_dir / "latest.json").is_file():
                raise CheckpointError(f"cannot resume: {ckpt_dir / 'latest.json'} not found "
                                      f"(no finished checkpoint in {out_dir})")
            weights_path, state_path = latest_checkpoint(ckpt_dir)
            tensors, meta = load_weights(weights_path, kind=WEIGHTS_KIND)
            if meta["model_config"] != model.config.to_dict():
                raise CheckpointError(f"checkpoint {weights_path}: model config differs from this run's")
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
            ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, strict=True)
            state = load_state(state_path, kind=STATE_KIND)
            if state["world_size"] != world:
                raise ValueError(f"checkpoint was written by {state['world_size']} processes; resuming with {world}")
            optimizer.load_state_dict(state["optimizer"])
            step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
            trained_before = state.get("train_seconds", 0.0)  # absent in checkpoints of older versions
            torch.set_rng_state(state["torch_rng"])
            gen.set_state(state["noise_rng"][rank])
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
            if world > 1 else model
        if rank == 0:
            cfg.save(out_dir / "config.json")
        rows = _read_log(out_dir / "log.csv", step) if (resume and rank == 0) else []
        summary = {"start_step": step}

        quiet = rank != 0 or (not sys.stderr.isatty() if progress is None else not progress)
        bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", disable=quiet, dynamic_ncols=True)
        t_start, t_log, loss_acc, n_acc = time.perf_counter(), time.perf_counter(), 0.0, 0
        clock = _Clock(t_start, trained_before, world, device)  # rank 0's, so every rank agrees on lr and stop
        model.train()
        while step < cfg.steps:
            sampler.set_epoch(epoch)
            order = list(sampler)
            batches = [order[i:i + per_rank] for i in range(0, len(order) - per_rank + 1, per_rank)]
            for bi in range(batch_in_epoch, len(batches)):
                items = [dataset[i] for i in batches[bi]]
                cams = None
                if isinstance(items[0], tuple):  # (video, cameras)
                    items, cams = zip(*items)
                    cams = torch.stack(cams).to(device)
                x0 = torch.stack(items) * 2 - 1  # (b, c, t, h, w) in [-1, 1]
                if cfg.context_frames:  # next-frame model: clips of context_frames frames and the one after
                    x0 = next_frame_clips(x0, cfg.context_frames, gen, cfg.clip_ends)
                noise = torch.randn(x0.shape, generator=gen)  # drawn on the CPU: the same on any device
                t = torch.randint(0, cfg.timesteps, (x0.shape[0],), generator=gen)
                x0, noise, t = x0.to(device), noise.to(device), t.to(device)
                extra = {} if cams is None else {"cameras": cams}
                blended = x0 if not (cfg.copy_blend or cfg.move_blend) else copy_blend(
                    x0, cfg.copy_blend, gen, moved=cfg.move_blend, radius=model.config.motion_head,
                    fill=model.config.motion_fill)
                xt = noise_sched.add_noise(blended, noise, t)
                if cfg.prediction == "v_prediction":
                    target = noise_sched.get_velocity(x0, noise, t)
                else:
                    target = noise if cfg.prediction == "epsilon" else x0
                weight = None
                if cfg.context_frames:
                    xt, extra["known"], weight = given_prefix(x0, xt, cfg.context_frames)
                lr = _lr(cfg, step, clock.seen)  # the clock as the last step ended
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if model.config.self_condition:  # half the time, condition on the model's own first estimate
                    x_self = torch.zeros_like(xt)
                    if torch.rand((), generator=gen) < 0.5:
                        with torch.no_grad():
                            x_self = predicted_x0(noise_sched, xt, t, net(xt, t, **extra), cfg.prediction)
                            x_self = x_self.clamp(-1, 1)
                    extra["x_self"] = x_self
                if weight is None:
                    loss = F.mse_loss(net(xt, t, **extra), target)
                else:  # only the frames to generate count
                    loss = ((net(xt, t, **extra) - target) ** 2 * weight).sum() / weight.sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                decay = min(cfg.ema_decay, (1 + step) / (10 + step))
                with torch.no_grad():
                    for pe, pm in zip(ema.parameters(), model.parameters()):
                        pe.lerp_(pm, 1 - decay)
                    for be, bm in zip(ema.buffers(), model.buffers()):
                        be.copy_(bm)
                step, batch_in_epoch = step + 1, bi + 1
                clock.trained()
                out_of_time = clock.past(cfg.time_limit, stop_after)
                loss_value = loss.detach().float()
                if world > 1:
                    dist.all_reduce(loss_value)
                    loss_value /= world
                loss_acc, n_acc = loss_acc + loss_value.item(), n_acc + 1
                bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.steps or out_of_time:
                    now = time.perf_counter()
                    rows.append({"step": step, "loss": loss_acc / n_acc, "lr": lr,
                                 "seconds": round(trained_before + now - t_start, 3),
                                 "videos_per_s": round(n_acc * cfg.batch_size / max(now - t_log, 1e-9), 3)})
                    bar.set_postfix(loss=f"{loss_acc / n_acc:.4f}", vid_s=f"{rows[-1]['videos_per_s']:.1f}")
                    t_log, loss_acc, n_acc = now, 0.0, 0
                    if rank == 0:
                        _write_log(rows, out_dir / "log.csv")
                if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
                    rng_states = [gen.get_state()]
                    if world > 1:
                        rng_states = [None] * world
                        dist.all_gather_object(rng_states, gen.get_state())
                    if rank == 0:
                        state = {"kind": STATE_KIND, "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                                 "world_size": world, "optimizer": optimizer.state_dict(),
                                 "train_seconds": clock.seen,
                                 "torch_rng": torch.get_rng_state(), "noise_rng": rng_states,
                                 "config": cfg.to_dict()}
                        summary["checkpoint"] = str(_save_checkpoint(ckpt_dir, cfg, model, ema, state))
                        _plot_loss(rows, out_dir / "loss.png")
                if step >= cfg.steps or out_of_time:
                    break
            else:
                epoch, batch_in_epoch = epoch + 1, 0
                continue
            break
        bar.close()
        if world > 1:
            summary["ranks_agree"] = _ranks_agree(model)
            dist.barrier()  # leave together: no rank tears the group down while another still talks to it
        summary.update({"stopped_by_time_limit": step < cfg.steps, "step": step, "train_seconds": clock.seen,
                        "loss": rows[-1]["loss"] if rows else float("nan"),
                        "seconds": time.perf_counter() - t_start, "world_size": world, "out_dir": str(out_dir)})
        return summary
    finally:
        if started_group:
            dist.destroy_process_group()


def train_processes(cfg: TrainConfig, out_dir, procs: int = 1, resume: bool = False,
                    progress: bool | None = None) -> dict:
    """:func:`train` in ``procs`` data-parallel processes on this machine, one thread each (gloo, or
    NCCL on GPUs); returns rank 0's summary. ``procs=1`` is a plain call in this process.

    Small models do not speed up with threads on a few CPU cores (the operations are too small), but
    do with processes: two single-thread processes train about 1.5x faster than one two-thread process
    on the 2-core machines here. ``cfg.batch_size`` stays the global batch.
    """
    if isinstance(procs, bool) or not isinstance(procs, int) or procs < 1:
        raise ValueError(f"procs must be a positive int; got {procs!r}")
    if procs == 1:
        return train(cfg, out_dir, resume=resume, progress=progress)
    if cfg.batch_size % procs:
        raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by procs ({procs})")
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:  # a free port for the process group's rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_worker, args=(procs, port, cfg.to_dict(), str(out_dir), resume, progress), nprocs=procs, join=True)
    return json.loads((Path(out_dir) / "summary.json").read_text())


def _worker(rank: int, procs: int, port: int, cfg: dict, out_dir: str, resume: bool, progress) -> None:
    import threading

    from tqdm import tqdm

    from ..io.files import atomic_write_text

    tqdm.set_lock(threading.RLock())  # tqdm's default lock is a multiprocessing semaphore, leaked by the exit below
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(procs))
    torch.set_num_threads(1)
    summary = train(TrainConfig.from_dict(cfg), out_dir, resume=resume, progress=progress)
    if rank == 0:  # a file, not a queue: a queue's semaphores would be leaked by the exit below
        atomic_write_text(Path(out_dir) / "summary.json", json.dumps(summary, indent=2) + "\n")
    # Leave without the interpreter's teardown: gloo's threads have been seen to abort a worker
    # (SIGABRT, "terminate called without an active exception") in it after a finished run.
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)


class _Clock:
    """Training seconds of a run (resumed parts included) as rank 0 reads them: every rank gets the same
    value, so the learning rate and the stop at a time limit agree across a process group."""

    def __init__(self, t_start: float, before: float, world: int, device):
        self.t_start, self.before, self.world, self.device = t_start, before, world, device
        self.seen = before  # the last reading

    def trained(self) -> float:
        value = torch.tensor([self.before + time.perf_counter() - self.t_start], dtype=torch.float64,
                             device=self.device)
        if self.world > 1:
            dist.broadcast(value, src=0)
        self.seen = float(value.item())
        return self.seen

    def past(self, limit: float | None, stop_after: float | None) -> bool:
        """Whether the run's ``limit`` or this call's ``stop_after`` (minutes) had passed at the last reading."""
        return (limit is not None and self.seen > 60 * limit) or \
            (stop_after is not None and self.seen - self.before > 60 * stop_after)


def _ranks_agree(model) -> bool:
    """Whether every rank holds exactly rank 0's parameters (DDP keeps them in step)."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    same = torch.tensor([int(torch.equal(flat, reference))], device=flat.device)
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    return bool(same.item())
