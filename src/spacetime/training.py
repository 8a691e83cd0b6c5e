"""The pieces of a training run that every pipeline shares: processes, learning rate, optimizer and EMA
steps, the clock, the log and its plot, checkpoints and resuming.

A pipeline's ``train()`` composes them (``spacetime.diffusion.train``, ``spacetime.classify.train``)::

    with process_group() as (rank, world):
        ... build the model, optimizer and data; ``resume_checkpoint`` to continue ...
        clock, log, meter = Clock(seconds_before, world, device), TrainLog(path, FIELDS), Meter()
        for batch in batches:
            set_lr(optimizer, cosine_lr(step, peak, warmup, total))
            optimizer_step(optimizer, loss_of(batch), grad_clip=...)
            ... meter.add("loss", loss, 1); every few steps log.append({...}); save_step_checkpoint(...)

A run folder holds ``config.json``, ``log.csv`` (one row per log interval), a plot of it, and
``checkpoints/`` (:mod:`spacetime.io.checkpoint`: ``step-NNNNNN.safetensors`` weights with the configs
in their metadata, ``step-NNNNNN.state.pt`` with the optimizer, step and every RNG, ``latest.json``
written last). Only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .checks import positive_int
from .config import Config
from .io.checkpoint import CheckpointError, latest_checkpoint, load_state, load_weights
from .io.files import atomic_write_csv, atomic_write_text, save_figure

__all__ = ["process_group", "local_device", "run_processes", "cosine_lr", "set_lr", "optimizer_step", "adamw",
           "update_ema", "Clock", "Meter", "TrainLog", "plot_curve", "resume_checkpoint", "load_trained",
           "show_progress", "progress_bar", "ranks_agree"]


# --- processes ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def process_group() -> Iterator[tuple[int, int]]:
    """``(rank, world_size)`` of this process; under ``torchrun`` (``WORLD_SIZE > 1``) it joins the process
    group (nccl on GPUs, gloo on CPUs) and leaves it at the end. One process: ``(0, 1)``."""
    started = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        started = True
    try:
        if dist.is_available() and dist.is_initialized():
            yield dist.get_rank(), dist.get_world_size()
        else:
            yield 0, 1
    finally:
        if started:
            dist.destroy_process_group()


def local_device() -> torch.device:
    """This process's device: its ``LOCAL_RANK``'s GPU when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def run_processes(train: Callable[..., dict], config: Config, out_dir, procs: int, **kwargs) -> dict:
    """``train(config, out_dir, **kwargs)`` in ``procs`` processes on this machine, one thread each, joined in one
    process group (the ``torchrun`` environment); returns rank 0's summary. ``procs=1`` calls it here.

    ``train`` must be a module-level function (the processes are spawned, not forked).
    """
    positive_int("procs", procs)
    if procs == 1:
        return train(config, out_dir, **kwargs)
    import torch.multiprocessing as mp

    with socket.socket() as sock:  # a free port for the process group's rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_worker, args=(train, procs, port, config, str(out_dir), kwargs), nprocs=procs, join=True)
    return json.loads((Path(out_dir) / "summary.json").read_text())


def _worker(rank: int, train, procs: int, port: int, config, out_dir: str, kwargs: dict) -> None:
    tqdm.set_lock(threading.RLock())  # tqdm's default lock is a multiprocessing semaphore, leaked by the exit below
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(procs))
    torch.set_num_threads(1)
    summary = train(config, out_dir, **kwargs)
    if rank == 0:  # a file, not a queue: a queue's semaphores would be leaked by the exit below
        atomic_write_text(Path(out_dir) / "summary.json", json.dumps(summary, indent=2) + "\n")
    # Leave without the interpreter's teardown: gloo's threads have been seen to abort a worker
    # (SIGABRT, "terminate called without an active exception") in it after a finished run.
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)


def ranks_agree(model: nn.Module) -> bool:
    """Whether every rank holds exactly rank 0's parameters (DDP keeps them in step)."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    same = torch.tensor([int(torch.equal(flat, reference))], device=flat.device)
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    return bool(same.item())


# --- optimisation ------------------------------------------------------------------------------------


def cosine_lr(step: int, peak: float, warmup: int, total: int, *, floor: float = 0.0, progress: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine from ``peak`` down to ``floor * peak`` at ``total``.

    ``progress`` (a fraction of the run, e.g. of its time budget) moves the cosine further along when
    it is ahead of the steps: the decay ends at the last step or when ``progress`` reaches 1.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    done = max((step - warmup) / max(1, total - warmup), progress)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, done))))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, *, grad_clip: float = 0.0,
                   parameters=None, reduce: Callable[[], None] | None = None) -> None:
    """Backward, ``reduce()`` (the processes' gradients brought together, when the model does not do it
    itself), clip the gradient norm of ``parameters`` to ``grad_clip`` (0: no clip), step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if reduce is not None:
        reduce()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    optimizer.step()


def adamw(parameters, **options) -> torch.optim.AdamW:
    """``torch.optim.AdamW(parameters, **options)``, on PyTorch's fused kernel where every parameter is a floating
    tensor on the CPU or a CUDA device: one pass over each tensor instead of one per operation of the update (the
    demo U-Net has 160 tensors). The same update and state dict."""
    params = list(parameters)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, fused=fused or None, **options)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    """Move ``ema``'s parameters towards ``model``'s (decay ramped up over the first steps); copy the buffers."""
    decay = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


# --- the clock and the log ---------------------------------------------------------------------------


class Clock:
    """Training seconds of a run, resumed parts included, as rank 0 reads them: every rank gets the same
    value, so the learning rate and the stop at a time limit agree across a process group."""

    def __init__(self, before: float = 0.0, world: int = 1, device=None):
        self.t_start, self.before, self.world, self.device = time.perf_counter(), before, world, device
        self.seen = before  # the last reading

    def trained(self) -> float:
        value = torch.tensor([self.before + time.perf_counter() - self.t_start], dtype=torch.float64,
                             device=self.device)
        if self.world > 1:
            dist.broadcast(value, src=0)
        self.seen = float(value.item())
        return self.seen

    def past(self, limit: float | None, stop_after: float | None = None) -> bool:
        """Whether the run's ``limit`` or this call's ``stop_after`` (minutes) had passed at the last reading."""
        return (limit is not None and self.seen > 60 * limit) or \
            (stop_after is not None and self.seen - self.before > 60 * stop_after)


class Meter:
    """Sums over one log interval: ``add(name, total, count)``, ``mean(name)``, and the interval's seconds."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.started = time.perf_counter()

    def add(self, name: str, total: float, count: int = 1) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + total
        self.counts[name] = self.counts.get(name, 0) + count

    def mean(self, name: str) -> float:
        return self.sums[name] / self.counts[name]

    def seconds(self) -> float:
        return max(time.perf_counter() - self.started, 1e-9)


class TrainLog:
    """``log.csv``: one row (a dict with the ``fields``) per log interval, rewritten atomically on each append."""

    def __init__(self, path, fields: list[str], rows: list[dict] | None = None, write: bool = True):
        self.path, self.fields, self.rows, self.write = Path(path), list(fields), list(rows or []), write

    @classmethod
    def resume(cls, path, fields: list[str], upto: int, write: bool = True) -> TrainLog:
        """The log of a run resumed at step ``upto``: its rows up to that step (later ones were never saved)."""
        path, rows = Path(path), []
        if path.exists():
            with path.open() as f:
                rows = [{k: int(v) if k == "step" else float(v) for k, v in r.items() if v != ""}
                        for r in csv.DictReader(f)]
        return cls(path, fields, [r for r in rows if r["step"] <= upto], write)

    def append(self, row: dict) -> None:
        self.rows.append(row)
        if self.write:
            atomic_write_csv(self.path, self.rows, self.fields)

    @property
    def last(self) -> dict | None:
        return self.rows[-1] if self.rows else None


def plot_curve(rows: list[dict], path, key: str = "loss", ylabel: str = "MSE", title: str = "training loss",
               log_scale: bool = True) -> Path:
    """A PNG of ``key`` against ``step`` over the log's rows, with a running mean once there are 10 rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    values = [r[key] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps, values, lw=0.8, alpha=0.5, label=f"{key} (per log interval)")
    if len(values) >= 10:
        k = max(2, len(values) // 20)
        smooth = [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1])
                  for i in range(len(values))]
        ax.plot(steps, smooth, lw=1.6, label=f"running mean of {k}")
    ax.set_xlabel("step"), ax.set_ylabel(ylabel), ax.grid(alpha=0.3), ax.legend()
    if log_scale:
        ax.set_yscale("log")
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def show_progress(progress: bool | None, rank: int = 0) -> bool:
    """Whether to draw progress bars: on rank 0 only, and for ``progress=None`` only when stderr is a terminal."""
    return rank == 0 and (sys.stderr.isatty() if progress is None else bool(progress))


def progress_bar(total: int, initial: int, desc: str, progress: bool | None, rank: int = 0):
    """A tqdm bar of ``total`` steps, drawn as :func:`show_progress` says."""
    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not show_progress(progress, rank),
                dynamic_ncols=True)


# --- checkpoints -------------------------------------------------------------------------------------


def resume_checkpoint(run_dir, weights_kind: str, state_kind: str, model_config: Config) -> tuple[dict, dict, dict]:
    """``(tensors, metadata, state)`` of a run folder's latest checkpoint, checked to be of these kinds and of a
    model with ``model_config``; a :class:`CheckpointError` naming the file when there is none or it differs."""
    pointer = Path(run_dir) / "checkpoints" / "latest.json"
    if not pointer.is_file():
        raise CheckpointError(f"cannot resume: {pointer} not found (no finished checkpoint in {run_dir})")
    weights, state_path = latest_checkpoint(pointer.parent)
    tensors, meta = load_weights(weights, kind=weights_kind)
    if type(model_config).from_dict(meta["model_config"]) != model_config:
        raise CheckpointError(f"checkpoint {weights}: model config differs from this run's")
    return tensors, meta, load_state(state_path, kind=state_kind)


def load_trained(path, kind: str, model_class, prefix: str = "") -> tuple[nn.Module, dict]:
    """A trained model (eval mode) and its checkpoint's metadata, from a weights file or a run folder.

    The network is rebuilt from the config in the metadata (``model_class.config_class``); ``model_class``
    may be a dict of the classes a kind of checkpoint holds, by name, the metadata's ``"model"`` choosing
    (the first when it names none). ``prefix`` picks one set of weights where a checkpoint holds several
    (``"ema."``).
    """
    weights, _ = latest_checkpoint(path)
    tensors, meta = load_weights(weights, kind=kind)
    if isinstance(model_class, dict):
        name = meta.get("model", next(iter(model_class)))
        if name not in model_class:
            raise CheckpointError(f"checkpoint {weights}: its model {name!r} is not one of {sorted(model_class)}")
        model_class = model_class[name]
    model = model_class(model_class.config_class.from_dict(meta["model_config"]))
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {weights}: weights do not fit its model config: {exc}") from None
    return model.eval(), meta
