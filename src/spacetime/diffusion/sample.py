"""Sampling with diffusers schedulers, and writing samples as GIF, MP4, a PNG grid and ``.npy``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..io.files import atomic_write_bytes
from ..io.video import write_gif, write_grid_png, write_mp4
from .schedules import make_scheduler, predicted_x0

__all__ = ["sample_videos", "save_samples"]


@torch.no_grad()
def sample_videos(model: nn.Module, shape: tuple[int, int, int, int], num_videos: int, *, sampler: str = "ddim",
                  steps: int = 50, timesteps: int = 1000, schedule: str = "cosine",
                  prediction: str = "v_prediction", shift: float = 1.0, seed: int = 0, batch_size: int = 32,
                  cameras: Tensor | None = None, progress: bool | None = None) -> Tensor:
    """Generate ``num_videos`` videos of ``shape = (C, T, H, W)``; returns ``(N, C, T, H, W)`` in [0, 1].

    The scheduler (``"ddpm"``, ``"ddim"``, ``"dpm"``) comes from diffusers and must match the
    training schedule (``timesteps``, ``schedule``, ``prediction``, ``shift``). The same ``seed`` gives the
    same videos. ``cameras`` (``(T, 6)`` for every video or ``(N, T, 6)``) conditions a camera
    model. ``progress=None`` shows a bar only on a terminal.
    """
    from tqdm import tqdm

    if num_videos < 1 or steps < 1 or batch_size < 1:
        raise ValueError(f"num_videos, steps and batch_size must be >= 1; got {num_videos}, {steps}, {batch_size}")
    if len(shape) != 4:
        raise ValueError(f"shape must be (C, T, H, W); got {shape!r}")
    if cameras is not None:
        if not isinstance(cameras, Tensor) or cameras.ndim not in (2, 3):
            got = tuple(cameras.shape) if isinstance(cameras, Tensor) else type(cameras).__name__
            raise ValueError(f"cameras must have shape (T, 6) or (N, T, 6); got {got}")
        if cameras.ndim == 2:
            cameras = cameras.expand(num_videos, *cameras.shape)
        if cameras.shape[0] != num_videos or cameras.shape[1] != shape[1]:
            raise ValueError(f"cameras must hold N={num_videos} paths of T={shape[1]} frames; got shape "
                             f"{tuple(cameras.shape)}")
    scheduler = make_scheduler(sampler, num_train_timesteps=timesteps, schedule=schedule, prediction_type=prediction,
                               shift=shift)
    scheduler.set_timesteps(steps)
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    device = next(model.parameters()).device
    out = []
    total = -(-num_videos // batch_size) * len(scheduler.timesteps)
    quiet = not sys.stderr.isatty() if progress is None else not progress
    with tqdm(total=total, desc=f"sample ({sampler}, {steps} steps)", disable=quiet, unit="step") as bar:
        for start in range(0, num_videos, batch_size):
            n = min(batch_size, num_videos - start)
            x = torch.randn((n, *shape), generator=gen) * scheduler.init_noise_sigma
            scheduler.set_timesteps(steps)  # multistep solvers keep history: reset per batch
            extra = {} if cameras is None else {"cameras": cameras[start:start + n].to(device)}
            x_self = torch.zeros_like(x) if getattr(model.config, "self_condition", False) else None
            for t in scheduler.timesteps:
                model_in = scheduler.scale_model_input(x, t)
                if x_self is not None:
                    extra["x_self"] = x_self.to(device)
                pred = model(model_in.to(device), t.expand(n).to(device), **extra).cpu()
                if x_self is not None:
                    x_self = predicted_x0(scheduler, x, t, pred, prediction).clamp(-1, 1)
                x = scheduler.step(pred, t, x, generator=gen).prev_sample
                bar.update(1)
            out.append(x)
    return ((torch.cat(out) + 1) / 2).clamp(0, 1)


def save_samples(videos: Tensor | np.ndarray, out_dir, fps: float = 6.0, mp4_scale: int = 4,
                 grid_rows: int = 8, title: str | None = None) -> dict:
    """Write ``(N, C, T, H, W)`` videos in [0, 1]: ``samples.npy``, ``grid.png`` (first ``grid_rows`` videos),
    and ``video_NNN.gif`` / ``video_NNN.mp4`` per video. Returns the paths."""
    videos = np.asarray(videos, dtype=np.float32)
    if videos.ndim != 5 or videos.shape[1] not in (1, 3):
        raise ValueError(f"videos must be (N, C, T, H, W) with C in (1, 3); got shape {videos.shape}")
    out_dir = Path(out_dir)
    import io

    buffer = io.BytesIO()
    np.save(buffer, videos)
    paths = {"npy": atomic_write_bytes(out_dir / "samples.npy", buffer.getvalue())}
    frames = np.moveaxis(videos, 1, -1)  # (N, T, H, W, C)
    if frames.shape[-1] == 1:
        frames = frames[..., 0]
    paths["grid"] = write_grid_png(out_dir / "grid.png", frames[:grid_rows], title=title)
    paths["gif"], paths["mp4"] = [], []
    for i, video in enumerate(frames):
        paths["gif"].append(write_gif(out_dir / f"video_{i:03d}.gif", video, fps=fps))
        paths["mp4"].append(write_mp4(out_dir / f"video_{i:03d}.mp4", video, fps=fps, scale=mp4_scale))
    return paths
