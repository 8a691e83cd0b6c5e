"""``spacetime train | sample | eval | demo``: the video diffusion pipeline on the command line.

Every ``train`` option is a :class:`~spacetime.diffusion.config.TrainConfig` field; ``--config``
reads them from a JSON or YAML file and flags override the file. The resolved configuration is
saved beside every output (``config.json``, ``sample_config.json``, ``eval.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import typing
from pathlib import Path

from ..models.video_unet import PRESETS
from .config import CLIP_ENDS, DATA_KINDS, LR_DECAYS, TrainConfig, load_config_file
from .schedules import PREDICTIONS, SAMPLERS, SCHEDULES

__all__ = ["register", "resolve_config", "sample_checkpoint", "DEMO_CONFIG"]

#: the demo's recipe: sized to train, sample 32 videos and score them within 15 minutes on 2 CPU cores. A
#: next-frame model (each frame made from the two before it) on 4x4 patches, 32 channels wide (twice the steps
#: per minute of 64 on a slow machine), with a motion head (each pixel of the new frame a learned mix of the
#: frame before it moved by up to 2 px, or drawn afresh) that predicts the clean frame; a moved copy shows black
#: where it comes from outside the frame (motion_fill -1), so a disk leaving a wall leaves no smear. 3/8 of its
#: training clips end at frame 1, where the motion is chosen, and half of them noise a blend of the frame and a
#: copy of the one before (copy_blend), a quarter blend it (the larger part) with the one before moved by a random
#: shift of the head's (move_blend); its learning rate decays over the 13 minutes (or 20000 steps on a fast
#: machine); DDPM, not DDIM, samples it, with the head's choice sharpened (motion_temperature 0.7; docs/motion.md).
DEMO_CONFIG = {"model": "patch4", "model_overrides": {"channels": [32, 32], "motion_head": 2, "motion_fill": -1.0},
               "prediction": "sample",
               "context_frames": 2, "clip_ends": "first", "copy_blend": 0.5, "move_blend": 0.25, "steps": 20000,
               "batch_size": 16, "lr": 2e-3, "lr_decay": "time", "checkpoint_every": 500, "time_limit": 13.0,
               "sampler": "ddpm", "sample_steps": 50, "motion_temperature": 0.7, "num_samples": 32}


_HELP = {
    "model": "VideoUNet preset ('camera' for --data camera)",
    "data": "training videos: bouncing disks, a Moving MNIST .npy, a folder of videos, synthetic camera pans",
    "max_speed": "--data camera: top camera speed per axis (pixels per frame)",
    "num_videos": "disks/camera: distinct training videos, reused every epoch (default: a fresh video every draw; "
                  "text 004 uses 512)",
    "data_path": "the .npy file or video folder for --data mnist|folder", "frames": "frames per video",
    "size": "frame height and width", "digit_size": "disk stamp size (bouncing disks)",
    "channels": "1 (grayscale) or 3 (RGB)", "timesteps": "diffusion training timesteps",
    "schedule": "beta schedule ('cosine' is text 004's)", "prediction": "what the network predicts",
    "noise_shift": "divide the schedule's signal-to-noise ratio by this squared (more steps at high noise)",
    "context_frames": "0: denoise whole videos; K >= 1: a next-frame model that makes each frame from the K "
                      "before it, and samples videos one frame at a time",
    "clip_ends": "next-frame models: where training clips end ('uniform': any frame evenly; 'first': frame 1, "
                 "where motion is chosen, 3/8 of the time)",
    "copy_blend": "next-frame models with --prediction sample: the fraction of training clips whose noisy frame is "
                  "made from a blend of the frame and a copy of the one before (the target stays the frame)",
    "move_blend": "motion-head next-frame models: a further fraction of training clips whose noisy frame blends the "
                  "frame (the larger part) with the one before moved by a random shift of the head's",
    "steps": "optimizer steps", "batch_size": "global batch (split over torchrun processes)",
    "lr": "peak AdamW learning rate (linear warm-up, cosine decay to 10%%)", "weight_decay": "AdamW weight decay",
    "warmup_steps": "learning-rate warm-up steps",
    "lr_decay": "when the cosine decay ends: at --steps, or ('time') at --steps or --time-limit, whichever comes "
                "first (a schedule that fits the machine's speed; not bit-reproducible)",
    "grad_clip": "gradient norm clip (0: off)",
    "ema_decay": "EMA decay of the sampling weights", "seed": "seed of weights, data and noise",
    "log_every": "steps per CSV log row", "checkpoint_every": "steps between checkpoints (and one at the end)",
    "time_limit": "minutes of training, resumed parts included; stop with a checkpoint at the first step past it",
    "sampler": "sampler for samples",
    "sample_steps": "sampling steps", "num_samples": "videos to sample",
    "guidance": "autoguidance weight for samples: steer each step away from an earlier checkpoint of the run "
                "(0: none)",
    "motion_temperature": "motion-head models: divide the head's logits by this when sampling (below 1: each pixel "
                          "leans on its likeliest move)",
    "guide_at": "the guide checkpoint's step, as a fraction of the sampled one's (the nearest saved checkpoint)",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(p: argparse.ArgumentParser, defaults: dict | None = None) -> None:
    """One flag per :class:`TrainConfig` field; its help shows the default from ``defaults`` (the demo's recipe)
    where that sets the field."""
    p.add_argument("--config", help="JSON or YAML file of config fields (flags override it)%(default).0s")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        default = (defaults or {}).get(f.name, default)
        kind = hints[f.name]
        if f.name == "model_overrides":
            shown = f" (default: {json.dumps(default)})" if default else ""
            p.add_argument(_flag(f.name), type=json.loads, default=None, metavar="JSON",
                           help='model preset fields to change, as JSON: \'{"channels": [32, 64]}\'' + shown
                           + "%(default).0s")
            continue
        base = next((t for t in (int, float, str) if kind is t or t in typing.get_args(kind)), str)
        choices = {"model": sorted(PRESETS), "data": DATA_KINDS, "schedule": SCHEDULES, "prediction": PREDICTIONS,
                   "sampler": SAMPLERS, "clip_ends": CLIP_ENDS, "lr_decay": LR_DECAYS}.get(f.name)
        # "%(default).0s" prints nothing: it stops argparse from appending the flag's own default (None)
        p.add_argument(_flag(f.name), type=base, default=None, choices=choices,
                       metavar=None if choices else f.name.upper(),
                       help=f"{_HELP.get(f.name, '')} (default: {default})%(default).0s")


def resolve_config(args, base: dict | None = None) -> TrainConfig:
    """Defaults, then ``base``, then the ``--config`` file, then flags given on the command line."""
    values = dict(base or {})
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return TrainConfig.from_dict(values)


def _progress(args) -> bool | None:
    return False if getattr(args, "quiet", False) else None


def _rank0() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _default_procs() -> int:
    """The demo's data-parallel processes: one per CPU core, at most 2, and 1 on a GPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(2, cores))


def _run_train(args) -> int:
    from .train import train_processes

    cfg = resolve_config(args)
    summary = train_processes(cfg, args.out, procs=args.procs, resume=args.resume, progress=_progress(args))
    if _rank0():
        print(f"trained {summary['step']} steps in {summary['seconds']:.0f} s (final loss {summary['loss']:.4f}"
              + (", stopped by the time limit" if summary.get("stopped_by_time_limit") else "") + ")")
        if "ranks_agree" in summary:
            print(f"parameters identical on all {summary['world_size']} ranks: {summary['ranks_agree']}")
        print(f"checkpoint: {summary.get('checkpoint')}\nlog: {Path(args.out) / 'log.csv'}, "
              f"loss curve: {Path(args.out) / 'loss.png'}")
    return 0


def _camera_request(spec, frames: int, num: int, speed: float, reverse: bool):
    """``(num, T, 6)`` cameras from a preset name or a JSON path, optionally reversed."""
    from ..data.camera_pan import camera_path, cameras_from_positions, positions_from_cameras, reverse_positions

    cams = camera_path(spec, frames, speed=speed)
    if reverse:
        cams = cameras_from_positions(reverse_positions(positions_from_cameras(cams)))
    return cams.expand(num, *cams.shape).contiguous()


def _guide_checkpoint(path: Path, step: int, fraction: float) -> Path:
    """The run's saved checkpoint nearest ``fraction`` of ``step`` (and before it), for autoguidance."""
    from ..io.checkpoint import CheckpointError, step_checkpoints

    earlier = {s: p for s, p in step_checkpoints(path.parent).items() if s < step}
    if not earlier:
        raise CheckpointError(f"guidance: checkpoint {path} (step {step}) has no earlier checkpoint beside it to "
                              f"guide with; give --guide CHECKPOINT or --guidance 0")
    best = min(earlier, key=lambda s: abs(s - fraction * step))
    return earlier[best]


def sample_checkpoint(checkpoint, out=None, *, num=None, sampler=None, steps=None, seed=0, weights="ema",
                      batch_size=32, progress=None, camera_path=None, camera_speed=1.0, reverse_camera=False,
                      guidance=None, guide=None, motion_temperature=None) -> dict:
    """Sample a checkpoint the way its run's config says (what ``spacetime sample`` does); arguments left
    ``None`` take the run's values. Returns ``{"videos": (N, C, T, H, W) in [0, 1], "paths", "config"}``: with
    ``out``, the videos, grid, array and ``sample_config.json`` are written there (``paths``); without, nothing
    is written and ``paths`` is empty."""
    from ..io.files import atomic_write_bytes, atomic_write_text
    from .sample import sample_videos, save_samples
    from ..io.checkpoint import latest_checkpoint
    from .train import load_model

    path, _ = latest_checkpoint(checkpoint)
    model, meta = load_model(path, which=weights)
    tc = TrainConfig.from_dict(meta["train_config"])
    resolved = {"checkpoint": str(path), "weights": weights, "num": num or tc.num_samples,
                "sampler": sampler or tc.sampler, "steps": steps or tc.sample_steps, "seed": seed,
                "shape": [tc.channels, tc.frames, tc.size, tc.size], "timesteps": tc.timesteps,
                "schedule": tc.schedule, "prediction": tc.prediction, "noise_shift": tc.noise_shift,
                "context_frames": tc.context_frames,
                "guidance": tc.guidance if guidance is None else guidance,
                "motion_temperature": tc.motion_temperature if motion_temperature is None else motion_temperature}
    guide_model = None
    if resolved["guidance"]:
        guide_path = Path(guide) if guide is not None else _guide_checkpoint(path, meta["step"], tc.guide_at)
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
                           progress=progress)
    resolved["seconds"] = round(time.perf_counter() - start, 2)
    if out is None:
        return {"videos": videos, "paths": {}, "config": resolved}
    out = Path(out)
    sharpened = f", motion temperature {resolved['motion_temperature']:g}" if resolved["motion_temperature"] != 1 else ""
    paths = save_samples(videos.numpy(), out, title=f"{resolved['sampler']}, {resolved['steps']} steps{sharpened}, "
                                                     f"step {meta.get('step')} {weights} weights")
    if cameras is not None:
        import io

        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, cameras.numpy())
        paths["cameras"] = atomic_write_bytes(out / "cameras.npy", buffer.getvalue())
    atomic_write_text(out / "sample_config.json", json.dumps(resolved, indent=2) + "\n")
    return {"videos": videos, "paths": paths, "config": resolved}


def _run_sample(args) -> int:
    result = sample_checkpoint(args.checkpoint, args.out, num=args.num, sampler=args.sampler, steps=args.steps,
                     seed=args.seed, weights=args.weights, batch_size=args.batch_size, progress=_progress(args),
                     camera_path=args.camera_path, camera_speed=args.camera_speed, reverse_camera=args.reverse_camera,
                     guidance=args.guidance, guide=args.guide, motion_temperature=args.motion_temperature)
    r, paths = result["config"], result["paths"]
    guided = f", guided by {r['guide']} at {r['guidance']:g}" if r["guidance"] else ""
    if r["motion_temperature"] != 1:
        guided += f", motion temperature {r['motion_temperature']:g}"
    print(f"{r['num']} videos ({r['sampler']}, {r['steps']} steps{guided}) in {r['seconds']:.1f} s from "
          f"{r['checkpoint']}")
    print(f"grid: {paths['grid']}\narray: {paths['npy']}\nGIF/MP4: {Path(args.out)}/video_*.gif|mp4")
    return 0


def _evaluate(videos_path, out_json=None, digit_size=12, tol=0.5) -> dict:
    import numpy as np

    from ..data.plausibility import DiskDetector, score_videos
    from ..io.files import atomic_write_text

    path = Path(videos_path)
    if path.is_dir():
        path = path / "samples.npy"
    if not path.is_file():
        raise FileNotFoundError(f"videos {path}: not found (give a .npy of (N, 1, T, H, W) videos or a sample folder)")
    try:
        videos = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"videos {path}: not a readable .npy array: {exc}") from None
    if videos.ndim not in (4, 5):
        raise ValueError(f"videos {path}: expected (N, T, H, W) or (N, 1, T, H, W); got shape {videos.shape}")
    report = score_videos(videos, DiskDetector(size=videos.shape[-1], digit_size=digit_size, tol=tol))
    report.update({"videos": str(path), "digit_size": digit_size, "tol": tol})
    target = Path(out_json) if out_json else path.parent / "eval.json"
    atomic_write_text(target, json.dumps(report, indent=2) + "\n")
    report["report_path"] = str(target)
    return report


def _evaluate_camera(videos_path, cameras_path=None, out_json=None) -> dict:
    """Camera-following error of camera-conditioned samples: requested vs phase-correlation translation."""
    import numpy as np
    import torch

    from ..data.camera_pan import positions_from_cameras
    from ..io.files import atomic_write_text
    from ..ops.motion import camera_translation

    path = Path(videos_path)
    folder = path if path.is_dir() else path.parent
    path = path / "samples.npy" if path.is_dir() else path
    cameras_path = Path(cameras_path) if cameras_path else folder / "cameras.npy"
    for name, p in (("videos", path), ("cameras", cameras_path)):
        if not p.is_file():
            raise FileNotFoundError(f"{name} {p}: not found")
    videos = torch.from_numpy(np.load(path, allow_pickle=False)).float()
    cams = torch.from_numpy(np.load(cameras_path, allow_pickle=False)).float()
    if videos.ndim != 5 or cams.shape != (videos.shape[0], videos.shape[2], 6):
        raise ValueError(f"cameras {cameras_path}: expected (N, T, 6) = {(videos.shape[0], videos.shape[2], 6)} for "
                         f"videos of shape {tuple(videos.shape)}; got {tuple(cams.shape)}")
    requested = positions_from_cameras(cams).diff(dim=1)  # (n, t-1, 2) camera translation per frame
    estimated = camera_translation(videos)
    error = (estimated - requested).norm(dim=-1)  # (n, t-1)
    report = {"kind": "camera", "videos": str(path), "cameras": str(cameras_path), "num_videos": len(videos),
              "mean_error_px_per_frame": error.mean().item(), "per_video_error": error.mean(1).tolist(),
              "requested_mean_translation": requested.mean(0).tolist(),
              "estimated_mean_translation": estimated.mean(0).tolist()}
    target = Path(out_json) if out_json else folder / "eval.json"
    atomic_write_text(target, json.dumps(report, indent=2) + "\n")
    report["report_path"] = str(target)
    return report


def _print_camera_eval(report: dict) -> None:
    print(f"camera following: mean error {report['mean_error_px_per_frame']:.3f} px/frame over "
          f"{report['num_videos']} videos (phase correlation vs requested translation)")
    print("  step  requested (dx, dy)   estimated mean (dx, dy)")
    for k, (r, e) in enumerate(zip(report["requested_mean_translation"], report["estimated_mean_translation"])):
        print(f"  {k:2d}->{k + 1:<2d} ({r[0]:+5.2f}, {r[1]:+5.2f})      ({e[0]:+5.2f}, {e[1]:+5.2f})")
    print(f"report: {report['report_path']}")


def _print_eval(report: dict) -> None:
    from collections import Counter

    n = report["num_videos"]
    k = round(report["plausible_fraction"] * n)
    print(f"plausible: {k}/{n} = {report['plausible_fraction']:.1%} "
          f"(frames with one training-size disk: {report['one_disk_frame_fraction']:.1%})")
    import re

    # group the reasons: "frame 3: no disk" -> "no disk", "x: jump of +5.0 px at frame 4" -> "x: jump of N px"
    reasons = Counter(re.sub(r"[-+]?\d+(\.\d+)?", "N", re.sub(r"^frame \d+: ", "", v["reason"]).split(" at frame")[0])
                      for v in report["verdicts"] if not v["plausible"])
    for reason, count in reasons.most_common(5):
        print(f"  {count:3d} x {reason}")
    print(f"report: {report['report_path']}")


def _run_eval(args) -> int:
    if args.training_data:
        import numpy as np

        from ..data.bouncing import create_dataset
        from ..io.files import atomic_write_bytes

        videos = create_dataset(args.training_data, args.frames, args.size, rng=np.random.default_rng(args.seed))
        import io

        buffer = io.BytesIO()
        np.save(buffer, videos.numpy())
        args.videos = str(atomic_write_bytes(Path(args.out or "runs/eval-training") / "samples.npy", buffer.getvalue()))
    if not args.videos:
        raise ValueError("give VIDEOS (a .npy or a sample folder) or --training-data N")
    folder = Path(args.videos) if Path(args.videos).is_dir() else Path(args.videos).parent
    if args.cameras or (folder / "cameras.npy").is_file():
        _print_camera_eval(_evaluate_camera(args.videos, args.cameras, args.report))
        return 0
    _print_eval(_evaluate(args.videos, args.report, args.digit_size, args.tol))
    return 0


def _run_demo(args) -> int:
    from .train import train_processes

    out = Path(args.out)
    start = time.perf_counter()
    cfg = resolve_config(args, base=DEMO_CONFIG)
    kind = f"next-frame, {cfg.context_frames} frames of context" if cfg.context_frames else "whole videos"
    unet = cfg.unet_config()
    if unet.motion_head:
        kind += f", motion head of {unet.motion_head} px"
    width = "/".join(map(str, unet.channels))
    print(f"spacetime demo: a video diffusion model ({cfg.model} VideoUNet, {width} channels, {kind}) trained from "
          f"scratch on bouncing disks "
          f"({cfg.frames}x{cfg.size}x{cfg.size}), {cfg.steps} steps or {cfg.time_limit} minutes, then "
          f"{cfg.num_samples} samples scored for physical plausibility.", flush=True)
    procs = args.procs or _default_procs()
    summary = train_processes(cfg, out / "train", procs=procs, resume=args.resume, progress=_progress(args))
    t_train = time.perf_counter() - start
    print(f"[1/3] trained {summary['step']} steps in {t_train:.0f} s ({procs} process{'es' * (procs > 1)}), "
          f"final loss {summary['loss']:.4f}", flush=True)
    result = sample_checkpoint(out / "train", out / "samples", seed=cfg.seed, progress=_progress(args))
    print(f"[2/3] sampled {result['config']['num']} videos in {result['config']['seconds']:.0f} s", flush=True)
    report = _evaluate(out / "samples" / "samples.npy", digit_size=cfg.digit_size)
    print("[3/3] plausibility of the samples:")
    _print_eval(report)
    total = time.perf_counter() - start
    print(f"\ndone in {total / 60:.1f} min. Outputs:\n  loss curve   {out / 'train' / 'loss.png'}\n"
          f"  training log {out / 'train' / 'log.csv'}\n  checkpoint   {summary.get('checkpoint')}\n"
          f"  sample grid  {result['paths']['grid']}\n  videos       {out / 'samples'}/video_*.gif|mp4\n"
          f"  array        {result['paths']['npy']}\n  eval report  {report['report_path']}")
    return 0


def register(subparsers) -> None:
    """Add ``train``, ``sample``, ``eval`` and ``demo``."""
    from ..cli import add_command

    p = add_command(subparsers, "train", "train a video diffusion model (VideoUNet) with diffusers schedules; "
                                         "works under torchrun for multi-process DDP")
    _add_config_flags(p)
    p.add_argument("--out", default="runs/train", help="output folder (config, log, loss curve, checkpoints)")
    p.add_argument("--procs", type=int, default=1,
                   help="data-parallel training processes on this machine, one thread each (default 1; on a few CPU "
                        "cores 2 processes beat 2 threads for small models)")
    p.add_argument("--resume", action="store_true", help="continue bit-exactly from OUT/checkpoints/latest.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train)

    p = add_command(subparsers, "sample", "generate videos from a checkpoint: GIF and MP4 per video, a PNG grid, .npy")
    p.add_argument("--checkpoint", required=True,
                   help="a .safetensors checkpoint, or a run folder (its latest)%(default).0s")
    p.add_argument("--out", default="runs/samples", help="output folder")
    p.add_argument("--num", type=int, default=None,
                   help="videos to generate (default: the run's num_samples)%(default).0s")
    p.add_argument("--sampler", choices=list(SAMPLERS), default=None,
                   help="sampler (default: the run's sampler)%(default).0s")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps (default: the run's sample_steps)%(default).0s")
    p.add_argument("--seed", type=int, default=0, help="noise seed (same seed, same videos)")
    p.add_argument("--weights", choices=["ema", "model"], default="ema", help="which weights of the checkpoint")
    p.add_argument("--batch-size", type=int, default=32, help="videos denoised at once")
    p.add_argument("--camera-path", default=None,
                   help="camera models: a preset (pan_right, diagonal_up_left, pan_right_reverse, ...; see "
                        "spacetime.data.camera_pan.PRESETS) or a .json of per-frame poses%(default).0s")
    p.add_argument("--camera-speed", type=float, default=1.0, help="pixels per frame of a preset path")
    p.add_argument("--reverse-camera", action="store_true", help="run the camera path backwards (p_t -> -p_t)")
    p.add_argument("--guidance", type=float, default=None,
                   help="autoguidance weight: steer away from a weaker checkpoint of the same run (default: the "
                        "run's guidance; 0: none)%(default).0s")
    p.add_argument("--guide", default=None,
                   help="the weaker checkpoint (default: the run's checkpoint nearest guide_at of this one's "
                        "step)%(default).0s")
    p.add_argument("--motion-temperature", type=float, default=None,
                   help="motion-head models: divide the head's logits by this (default: the run's "
                        "motion_temperature; 1: as trained)%(default).0s")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_sample)

    p = add_command(subparsers, "eval", "score bouncing-disk videos for physical plausibility (one training-size disk "
                                        "per frame, constant velocity changing only at walls); for samples of a "
                                        "camera model (a cameras.npy beside them), the camera-following error")
    p.add_argument("videos", nargs="?", help="a .npy of (N, 1, T, H, W) videos in [0, 1], or a sample folder")
    p.add_argument("--report", default=None, help="where to write the JSON report (default: beside the videos)")
    p.add_argument("--digit-size", type=int, default=12, help="the training disk stamp's size")
    p.add_argument("--tol", type=float, default=0.5, help="tolerance in pixels on positions and displacements")
    p.add_argument("--training-data", type=int, default=0, metavar="N",
                   help="instead, score N freshly generated training videos (a check of the detector)")
    p.add_argument("--frames", type=int, default=8, help="frames of --training-data videos")
    p.add_argument("--size", type=int, default=32, help="size of --training-data videos")
    p.add_argument("--seed", type=int, default=0, help="seed of --training-data videos")
    p.add_argument("--out", default=None, help="folder for --training-data videos")
    p.add_argument("--cameras", default=None,
                   help="a (N, T, 6) .npy of requested cameras: report the camera-following error (default: "
                        "cameras.npy beside the videos, when there is one)%(default).0s")
    p.set_defaults(func=_run_eval)

    p = add_command(subparsers, "demo", "the main job: train a video diffusion model on bouncing disks from scratch, "
                                        "sample 32 videos, score them, print where everything is (~15 min on 2 cores)")
    _add_config_flags(p, defaults=DEMO_CONFIG)
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--procs", type=int, default=None,
                   help="data-parallel training processes (default: one per CPU core, at most 2; 1 on a GPU)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo's training")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_demo)
