"""Sampling with diffusers schedulers, and writing samples as GIF, MP4, a PNG grid and ``.npy``.

:func:`sample_videos` samples any model; :func:`sample_checkpoint` samples a trained checkpoint the
way its run's config says (what ``spacetime sample`` and ``spacetime demo`` do);
:func:`sample_processes` does it with every clip split across processes (sequence parallelism: each
process denoises its frames, the sampler runs on the whole clips alike everywhere, the same videos).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import int_at_least, int_in, number_in, positive_int
from ..data.camera_pan import camera_path, cameras_from_positions, positions_from_cameras, reverse_positions
from ..io.checkpoint import CheckpointError, latest_checkpoint, step_checkpoints
from ..io.files import atomic_write_npy, atomic_write_text
from ..io.video import read_frames, write_gif, write_grid_png, write_mp4
from ..parallel.modules import is_parallel, parallelize
from ..parallel.shard import Sharding, gather_video, shard_video
from ..training import process_group, progress_bar, run_processes
from .config import TrainConfig
from .schedules import make_scheduler, predicted_x0
from .train import load_model

__all__ = ["sample_videos", "save_samples", "sample_checkpoint", "sample_processes", "load_given"]


@torch.no_grad()
def sample_videos(model: nn.Module, shape: tuple[int, int, int, int], num_videos: int, *, sampler: str = "ddim",
                  steps: int = 50, timesteps: int = 1000, schedule: str = "cosine",
                  prediction: str = "v_prediction", shift: float = 1.0, seed: int = 0, batch_size: int = 32,
                  cameras: Tensor | None = None, context: int = 0, given: Tensor | None = None,
                  guide: nn.Module | None = None, guidance: float = 0.0, motion_temperature: float = 1.0,
                  lead_in: float = -1.0, progress: bool | None = None, group=None) -> Tensor:
    """Generate ``num_videos`` videos of ``shape = (C, T, H, W)``; returns ``(N, C, T, H, W)`` in [0, 1].

    The scheduler (``"ddpm"``, ``"ddim"``, ``"dpm"``) comes from diffusers and must match the
    training schedule (``timesteps``, ``schedule``, ``prediction``, ``shift``). The same ``seed`` gives the
    same videos. ``cameras`` (``(T, 6)`` for every video or ``(N, T, 6)``) conditions a camera model. ``context > 0``
    samples a next-frame model (``TrainConfig.context_frames``): one frame at a time, each from the ``context``
    frames before it (``lead_in`` before the first, as in training), ``steps`` sampler steps per frame; ``given``
    (``(k, ...)`` or ``(N, C, k, H, W)`` in [0, 1]) are then the first ``k`` frames of every video, which it
    continues. ``progress=None`` shows a bar only on a terminal.

    ``guide`` and ``guidance`` (autoguidance, Karras et al. 2024): a weaker version of the same model
    (an earlier checkpoint of its run) whose errors the sampler steers away from; every step uses
    ``out + guidance * (out - guide_out)``. Where the weak model still blurs the choices apart
    (two speeds, a move or a pause), the difference points to the sharper answer.

    ``motion_temperature`` (a model with a motion head, which checks it): its per-pixel choice of move
    is made with the logits divided by this; below 1 each step leans on the likeliest move, so a frame
    is drawn from the motion the model favours rather than from the average of the ones it still allows.

    ``group`` (every process of it calls this alike): the model and ``guide`` are parallelized in place
    (:func:`~spacetime.parallel.parallelize`), each process denoises its frames, all return one process's videos.
    """
    for name, value in (("num_videos", num_videos), ("steps", steps), ("batch_size", batch_size)):
        positive_int(name, value)
    if len(shape) != 4:
        raise ValueError(f"shape must be (C, T, H, W); got {shape!r}")
    cameras = _check_cameras(cameras, num_videos, shape[1])
    next_frame = _check_context(model, context, shape[1], cameras)
    first = _given_frames(given, shape, num_videos, context)
    model = _prepared(model, guide, guidance, group)
    scheduler = make_scheduler(sampler, num_train_timesteps=timesteps, schedule=schedule, prediction_type=prediction,
                               shift=shift)
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    rounds = shape[1] - first.shape[2] if next_frame else 1
    total = -(-num_videos // batch_size) * steps * rounds
    desc = f"sample ({sampler}, {steps} steps{' per frame' if next_frame else ''})"
    out = []
    rank = 0 if group is None else torch.distributed.get_rank(group)
    with progress_bar(total, 0, desc, progress, rank) as bar:
        for start in range(0, num_videos, batch_size):
            n = min(batch_size, num_videos - start)
            extra = {} if cameras is None else {"cameras": cameras[start:start + n]}
            if motion_temperature != 1:
                extra["motion_temperature"] = float(motion_temperature)
            if not next_frame:
                noise = torch.randn((n, *shape), generator=gen) * _init_sigma(scheduler, steps)
                out.append(_denoise(model, scheduler, steps, noise, None, None, extra, prediction, gen, bar))
            else:
                lead = torch.full((n, shape[0], context, *shape[2:]), float(lead_in))
                made = torch.cat([lead, first[start:start + n] * 2 - 1], dim=2)
                out.append(_frame_by_frame(model, scheduler, steps, made, rounds, context, extra, prediction, gen,
                                           bar))
    return ((torch.cat(out) + 1) / 2).clamp(0, 1)


def _frame_by_frame(model, scheduler, steps: int, made: Tensor, rounds: int, context: int, extra: dict,
                    prediction: str, gen: torch.Generator, bar) -> Tensor:
    """A next-frame model's videos: ``rounds`` more frames after ``made`` ``(n, c, k, h, w)``, each denoised from
    a clip of the ``context`` frames before it and a noisy one; returns the frames after the lead-in."""
    n, c = made.shape[:2]
    known = (torch.arange(context + 1) < context).expand(n, -1)
    for _ in range(rounds):  # a clip of the last `context` frames and the next one
        clip = torch.cat([made[:, :, -context:], made.new_zeros(n, c, 1, *made.shape[3:])], dim=2)
        noise = torch.randn(clip.shape, generator=gen) * _init_sigma(scheduler, steps)
        clip = _denoise(model, scheduler, steps, noise, clip, known, extra, prediction, gen, bar)
        made = torch.cat([made, clip[:, :, -1:]], dim=2)
    return made[:, :, context:]


def _check_cameras(cameras: Tensor | None, num_videos: int, frames: int) -> Tensor | None:
    """``cameras`` as ``(N, T, 6)`` (one ``(T, 6)`` path is shared by every video), checked."""
    if cameras is None:
        return None
    if not isinstance(cameras, Tensor) or cameras.ndim not in (2, 3):
        got = tuple(cameras.shape) if isinstance(cameras, Tensor) else type(cameras).__name__
        raise ValueError(f"cameras must have shape (T, 6) or (N, T, 6); got {got}")
    if cameras.ndim == 2:
        cameras = cameras.expand(num_videos, *cameras.shape)
    if cameras.shape[0] != num_videos or cameras.shape[1] != frames:
        raise ValueError(f"cameras must hold N={num_videos} paths of T={frames} frames; got shape "
                         f"{tuple(cameras.shape)}")
    return cameras


def _check_context(model: nn.Module, context: int, frames: int, cameras: Tensor | None) -> bool:
    """Whether ``model`` is a next-frame model, checked against the ``context`` it is sampled with."""
    next_frame = bool(getattr(model.config, "known_frames", False))
    int_in("context", context, 0, frames, high_label=f"T={frames}")
    if next_frame != (context > 0):
        raise ValueError(f"context={context}: a next-frame model (config.known_frames=True) is sampled with its "
                         f"training context_frames >= 1, any other model with context=0; this model has "
                         f"known_frames={next_frame}")
    if context and cameras is not None:
        raise ValueError("cameras: a next-frame model (context > 0) takes no cameras yet")
    return next_frame


def _prepared(model: nn.Module, guide: nn.Module | None, guidance: float, group) -> nn.Module:
    """The denoiser a sampler calls: ``model``, guided by ``guide`` (autoguidance), its clips split across ``group``."""
    if group is not None:
        for net in (model, guide):
            if net is not None and not is_parallel(net):
                parallelize(net, group)
    model = _guided(model, guide, guidance)
    return model if group is None else _FrameSharded(model, group)


class _FrameSharded(nn.Module):
    """A sequence-parallel denoiser called on whole clips: this process's frames go in, the whole output comes back."""

    def __init__(self, model: nn.Module, group):
        super().__init__()
        self.model, self.group, self.config = model, group, model.config

    def forward(self, x: Tensor, t: Tensor, **kwargs) -> Tensor:
        frames = x.shape[2]
        mine = Sharding.of(self.group, frames)
        local = {k: mine.slice(v, 1) if k in ("cameras", "known") else shard_video(v, self.group) if k == "x_self"
                 else v for k, v in kwargs.items()}
        return gather_video(self.model(shard_video(x, self.group), t, **local), self.group, frames=frames)


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
    number_in("guidance", guidance, 0, note=" (0: none)")
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
    paths = {"npy": atomic_write_npy(out_dir / "samples.npy", videos)}
    frames = np.moveaxis(videos, 1, -1)  # (N, T, H, W, C)
    if frames.shape[-1] == 1:
        frames = frames[..., 0]
    paths["grid"] = write_grid_png(out_dir / "grid.png", frames[:grid_rows], title=title)
    paths["gif"], paths["mp4"] = [], []
    for i, video in enumerate(frames):
        paths["gif"].append(write_gif(out_dir / f"video_{i:03d}.gif", video, fps=fps))
        paths["mp4"].append(write_mp4(out_dir / f"video_{i:03d}.mp4", video, fps=fps, scale=mp4_scale))
    return paths


def guide_checkpoint(path: Path, step: int, fraction: float) -> Path:
    """The run's saved checkpoint nearest ``fraction`` of ``step`` (and before it), for autoguidance."""
    earlier = {s: p for s, p in step_checkpoints(path.parent).items() if s < step}
    if not earlier:
        raise CheckpointError(f"guidance: checkpoint {path} (step {step}) has no earlier checkpoint beside it to "
                              f"guide with; give --guide CHECKPOINT or --guidance 0")
    best = min(earlier, key=lambda s: abs(s - fraction * step))
    return earlier[best]


def _camera_request(spec, frames: int, num: int, speed: float, reverse: bool) -> Tensor:
    """``(num, T, 6)`` cameras from a preset name or a JSON path, optionally reversed."""
    cams = camera_path(spec, frames, speed=speed)
    if reverse:
        cams = cameras_from_positions(reverse_positions(positions_from_cameras(cams)))
    return cams.expand(num, *cams.shape).contiguous()


def sample_checkpoint(checkpoint, out=None, *, num=None, sampler=None, steps=None, seed=0, weights="ema",
                      batch_size=32, progress=None, camera_path=None, camera_speed=1.0, reverse_camera=False,
                      guidance=None, guide=None, motion_temperature=None, frames=None, given=None,
                      group=None) -> dict:
    """Sample a checkpoint the way its run's config says (what ``spacetime sample`` does); arguments left
    ``None`` take the run's values. Returns ``{"videos": (N, C, T, H, W) in [0, 1], "paths", "config"}``: with
    ``out``, the videos, grid, array and ``sample_config.json`` are written there (``paths``); without, nothing
    is written and ``paths`` is empty. ``group``: sequence parallelism (:func:`sample_videos`); its first
    process writes.

    A next-frame model rolls out to any ``frames`` (its training length by default), and continues ``given``
    leading frames (``(C, k, H, W)`` for every video or ``(N, C, k, H, W)``, in [0, 1], or a file that
    :func:`load_given` reads); the videos returned start with them."""
    path, _ = latest_checkpoint(checkpoint)
    model, meta = load_model(path, which=weights)
    tc = TrainConfig.from_dict(meta["train_config"])
    frames = _rollout_frames(frames, tc)
    if given is not None and not isinstance(given, Tensor):
        given = load_given(given, tc.channels, tc.size)
    resolved = {"checkpoint": str(path), "weights": weights, "num": num or tc.num_samples,
                "sampler": sampler or tc.sampler, "steps": steps or tc.sample_steps, "seed": seed,
                "shape": [tc.channels, frames, tc.size, tc.size], "timesteps": tc.timesteps,
                "schedule": tc.schedule, "prediction": tc.prediction, "noise_shift": tc.noise_shift,
                "context_frames": tc.context_frames,
                "guidance": tc.guidance if guidance is None else guidance,
                "motion_temperature": tc.motion_temperature if motion_temperature is None else motion_temperature}
    guide_model = None
    if resolved["guidance"]:
        guide_path = Path(guide) if guide is not None else guide_checkpoint(path, meta["step"], tc.guide_at)
        guide_model, guide_meta = load_model(guide_path, which=weights)
        resolved.update(guide=str(guide_path), guide_step=guide_meta.get("step"))
    cameras = None
    if model.config.camera is not None:
        if camera_path is None:
            raise ValueError(f"checkpoint {path} is camera-conditioned: give --camera-path (a preset or a .json of "
                             f"per-frame poses)")
        cameras = _camera_request(camera_path, tc.frames, resolved["num"], camera_speed, reverse_camera)
        resolved.update(camera_path=str(camera_path), camera_speed=camera_speed, reverse_camera=reverse_camera)
    elif camera_path is not None:
        raise ValueError(f"camera_path: checkpoint {path} has no camera conditioning; got {camera_path!r}")
    start = time.perf_counter()
    videos = sample_videos(model, tuple(resolved["shape"]), resolved["num"], sampler=resolved["sampler"],
                           steps=resolved["steps"], timesteps=tc.timesteps, schedule=tc.schedule,
                           prediction=tc.prediction, shift=tc.noise_shift, seed=seed, batch_size=batch_size,
                           cameras=cameras, context=tc.context_frames, guide=guide_model,
                           guidance=resolved["guidance"], motion_temperature=resolved["motion_temperature"],
                           lead_in=tc.lead_in, given=given, progress=progress, group=group)
    resolved["seconds"] = round(time.perf_counter() - start, 2)
    resolved["given_frames"] = 0 if given is None else int(given.shape[-3])
    resolved["data"] = {"data": tc.data, "frames": tc.frames, "size": tc.size, "digit_size": tc.object_size,
                        "objects": tc.objects, "max_speed": tc.max_speed}
    if group is not None:
        resolved["sp"] = torch.distributed.get_world_size(group)
    if out is None or (group is not None and torch.distributed.get_rank(group) != 0):  # one process writes
        return {"videos": videos, "paths": {}, "config": resolved}
    return {"videos": videos, "paths": _write_samples(videos, cameras, Path(out), resolved, meta), "config": resolved}


def _rollout_frames(frames: int | None, tc: TrainConfig) -> int:
    """The frames to sample: the run's by default; another count only for a next-frame model (which makes each
    frame from the ``context_frames`` before it, so it rolls out to any length)."""
    if frames is None or frames == tc.frames:
        return tc.frames
    int_at_least("frames", frames, tc.context_frames + 1, note=f" (context_frames={tc.context_frames} + 1)")
    if not tc.context_frames:
        raise ValueError(f"frames={frames}: this whole-video model makes clips of its trained {tc.frames} frames; "
                         f"only a next-frame model (context_frames >= 1) rolls out to other lengths")
    return frames


def load_given(path, channels: int, size: int) -> Tensor:
    """Leading frames for :func:`sample_checkpoint`'s ``given`` from a file
    (:func:`~spacetime.io.video.read_frames`)."""
    return torch.from_numpy(read_frames(path, channels, size, name="given"))


def _write_samples(videos: Tensor, cameras: Tensor | None, out: Path, resolved: dict, meta: dict) -> dict:
    """Write a checkpoint's samples (and the cameras they followed) with their resolved settings."""
    sharpened = f", motion temperature {resolved['motion_temperature']:g}" if resolved["motion_temperature"] != 1 else ""
    paths = save_samples(videos.numpy(), out, title=f"{resolved['sampler']}, {resolved['steps']} steps{sharpened}, "
                                                     f"step {meta.get('step')} {resolved['weights']} weights")
    if cameras is not None:
        paths["cameras"] = atomic_write_npy(out / "cameras.npy", cameras.numpy())
    atomic_write_text(out / "sample_config.json", json.dumps(resolved, indent=2) + "\n")
    return paths


def _sample_in_group(checkpoint, out, **kwargs) -> dict:
    """:func:`sample_checkpoint` on every process of the default group, which splits each clip (a spawned worker)."""
    with process_group() as (rank, world):
        group = torch.distributed.group.WORLD
        result = sample_checkpoint(checkpoint, out, group=group, **kwargs)
        torch.distributed.barrier()  # leave together
    return {"config": result["config"], "paths": {k: [str(p) for p in v] if isinstance(v, list) else str(v)
                                                  for k, v in result["paths"].items()}}


def sample_processes(checkpoint, out, sp: int = 1, **kwargs) -> dict:
    """:func:`sample_checkpoint` (its keywords) with every clip split across ``sp`` processes on this machine; the
    same videos as one process. Returns ``{"config", "paths"}`` (``sp=1``: :func:`sample_checkpoint`'s result)."""
    positive_int("sp", sp)
    if sp == 1:
        return sample_checkpoint(checkpoint, out, **kwargs)
    if out is None:
        raise ValueError("out: sampling in several processes writes its videos to a folder; give one")
    return run_processes(_sample_in_group, checkpoint, out, sp, **kwargs)
