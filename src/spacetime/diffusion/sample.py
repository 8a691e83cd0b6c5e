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
                  cameras: Tensor | None = None, context: int = 0, given: Tensor | None = None,
                  guide: nn.Module | None = None, guidance: float = 0.0, motion_temperature: float = 1.0,
                  progress: bool | None = None) -> Tensor:
    """Generate ``num_videos`` videos of ``shape = (C, T, H, W)``; returns ``(N, C, T, H, W)`` in [0, 1].

    The scheduler (``"ddpm"``, ``"ddim"``, ``"dpm"``) comes from diffusers and must match the
    training schedule (``timesteps``, ``schedule``, ``prediction``, ``shift``). The same ``seed`` gives the
    same videos. ``cameras`` (``(T, 6)`` for every video or ``(N, T, 6)``) conditions a camera
    model. ``context > 0`` samples a next-frame model (``TrainConfig.context_frames``): one frame at
    a time, each from the ``context`` frames before it (black before the first), ``steps`` sampler
    steps per frame; ``given`` (``(k, ...)`` or ``(N, C, k, H, W)`` in [0, 1]) are then the first ``k``
    frames of every video, which it continues. ``progress=None`` shows a bar only on a terminal.

    ``guide`` and ``guidance`` (autoguidance, Karras et al. 2024): a weaker version of the same model
    (an earlier checkpoint of its run) whose errors the sampler steers away from; every step uses
    ``out + guidance * (out - guide_out)``. Where the weak model still blurs the choices apart
    (two speeds, a move or a pause), the difference points to the sharper answer.

    ``motion_temperature`` (a model with a motion head): its per-pixel choice of move is made with the
    logits divided by this; below 1 each step leans on the likeliest move, so a frame is drawn from
    the motion the model favours rather than from the average of the ones it still allows.
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
    next_frame = bool(getattr(model.config, "known_frames", False))
    if isinstance(context, bool) or not isinstance(context, int) or not 0 <= context < shape[1]:
        raise ValueError(f"context must be an int in [0, T={shape[1]}); got {context!r}")
    if next_frame != (context > 0):
        raise ValueError(f"context={context}: a next-frame model (config.known_frames=True) is sampled with its "
                         f"training context_frames >= 1, any other model with context=0; this model has "
                         f"known_frames={next_frame}")
    if context and cameras is not None:
        raise ValueError("cameras: a next-frame model (context > 0) takes no cameras yet")
    if isinstance(motion_temperature, bool) or not isinstance(motion_temperature, (int, float)) \
            or not motion_temperature > 0:
        raise ValueError(f"motion_temperature must be a number > 0 (1: as trained); got {motion_temperature!r}")
    if motion_temperature != 1 and not getattr(model.config, "motion_head", 0):
        raise ValueError(f"motion_temperature={motion_temperature} needs a model with a motion head "
                         f"(config.motion_head > 0)")
    first = _given_frames(given, shape, num_videos, context)
    model = _guided(model, guide, guidance)
    scheduler = make_scheduler(sampler, num_train_timesteps=timesteps, schedule=schedule, prediction_type=prediction,
                               shift=shift)
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    rounds = shape[1] - first.shape[2] if next_frame else 1
    quiet = not sys.stderr.isatty() if progress is None else not progress
    total = -(-num_videos // batch_size) * steps * rounds
    desc = f"sample ({sampler}, {steps} steps{' per frame' if next_frame else ''})"
    out = []
    with tqdm(total=total, desc=desc, disable=quiet, unit="step") as bar:
        for start in range(0, num_videos, batch_size):
            n = min(batch_size, num_videos - start)
            extra = {} if cameras is None else {"cameras": cameras[start:start + n]}
            if motion_temperature != 1:
                extra["motion_temperature"] = float(motion_temperature)
            if not next_frame:
                noise = torch.randn((n, *shape), generator=gen) * _init_sigma(scheduler, steps)
                out.append(_denoise(model, scheduler, steps, noise, None, None, extra, prediction, gen, bar))
                continue
            black = torch.full((n, shape[0], context, *shape[2:]), -1.0)
            made = torch.cat([black, first[start:start + n] * 2 - 1], dim=2)
            known = (torch.arange(context + 1) < context).expand(n, -1)
            for _ in range(rounds):  # a clip of the last `context` frames and the next one
                clip = torch.cat([made[:, :, -context:], made.new_zeros(n, shape[0], 1, *shape[2:])], dim=2)
                noise = torch.randn(clip.shape, generator=gen) * _init_sigma(scheduler, steps)
                clip = _denoise(model, scheduler, steps, noise, clip, known, extra, prediction, gen, bar)
                made = torch.cat([made, clip[:, :, -1:]], dim=2)
            out.append(made[:, :, context:])
    return ((torch.cat(out) + 1) / 2).clamp(0, 1)


class _Guided(nn.Module):
    """``model`` steered away from a weaker ``guide``: ``out + w * (out - guide_out)`` (same inputs)."""

    def __init__(self, model: nn.Module, guide: nn.Module, weight: float):
        super().__init__()
        self.model, self.guide, self.weight, self.config = model, guide, weight, model.config

    def forward(self, x: Tensor, t: Tensor, **kwargs) -> Tensor:
        out = self.model(x, t, **kwargs)
        return out + self.weight * (out - self.guide(x, t, **kwargs))


def _guided(model: nn.Module, guide: nn.Module | None, guidance: float) -> nn.Module:
    """``model``, or it guided by ``guide`` with weight ``guidance`` (checked)."""
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not guidance >= 0:
        raise ValueError(f"guidance must be a number >= 0 (0: unguided); got {guidance!r}")
    if guidance == 0:
        return model
    if guide is None:
        raise ValueError(f"guidance={guidance} needs guide: a weaker model (an earlier checkpoint of the same run)")
    if getattr(guide, "config", None) != getattr(model, "config", None):
        raise ValueError("guide must be the same architecture as the model (its config differs): an earlier "
                         "checkpoint of the same run")
    guide.eval()
    return _Guided(model, guide, float(guidance))


def _init_sigma(scheduler, steps: int) -> float:
    scheduler.set_timesteps(steps)
    return scheduler.init_noise_sigma


def _given_frames(given: Tensor | None, shape: tuple, num_videos: int, context: int) -> Tensor:
    """``given`` leading frames as ``(N, C, k, H, W)`` (``k = 0`` for none), checked against ``shape``."""
    c, frames, h, w = shape
    if given is None:
        return torch.zeros(num_videos, c, 0, h, w)
    if not context:
        raise ValueError("given: only a next-frame model (context > 0) continues given frames")
    if not isinstance(given, Tensor) or given.ndim not in (4, 5):
        got = tuple(given.shape) if isinstance(given, Tensor) else type(given).__name__
        raise ValueError(f"given must be (C, k, H, W) or (N, C, k, H, W) leading frames in [0, 1]; got {got}")
    if given.ndim == 4:
        given = given.expand(num_videos, *given.shape)
    if given.shape[0] != num_videos or given.shape[1] != c or tuple(given.shape[3:]) != (h, w) \
            or not 1 <= given.shape[2] < frames:
        raise ValueError(f"given must hold N={num_videos} clips of C={c} channels, 1 to {frames - 1} frames of "
                         f"{h}x{w}; got shape {tuple(given.shape)}")
    if not torch.isfinite(given).all() or given.min() < 0 or given.max() > 1:
        raise ValueError("given must hold finite values in [0, 1]")
    return given.float()


def _denoise(model: nn.Module, scheduler, steps: int, x: Tensor, clean: Tensor | None, known: Tensor | None,
             extra: dict, prediction: str, gen: torch.Generator, bar) -> Tensor:
    """Run the sampler from noise ``x``; frames where ``known (n, T)`` is true are held at ``clean``."""
    device = next(model.parameters()).device
    scheduler.set_timesteps(steps)  # multistep solvers keep history: reset per call
    n = x.shape[0]
    extra = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in extra.items()}
    if known is not None:
        extra["known"], x = known.to(device), _keep(x, clean, known)
    x_self = torch.zeros_like(x) if getattr(model.config, "self_condition", False) else None
    for t in scheduler.timesteps:
        model_in = _keep(scheduler.scale_model_input(x, t), clean, known)
        if x_self is not None:
            extra["x_self"] = x_self.to(device)
        pred = model(model_in.to(device), t.expand(n).to(device), **extra).cpu()
        if x_self is not None:
            x_self = predicted_x0(scheduler, x, t, pred, prediction).clamp(-1, 1)
        x = _keep(scheduler.step(pred, t, x, generator=gen).prev_sample, clean, known)
        bar.update(1)
    return x


def _keep(x: Tensor, clean: Tensor | None, known: Tensor | None) -> Tensor:
    """``x`` with the ``known (n, T)`` frames replaced by those of ``clean``."""
    if known is None:
        return x
    return torch.where(known[:, None, :, None, None], clean, x)


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
