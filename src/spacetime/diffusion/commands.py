"""``spacetime train | sample | eval | demo``: the video diffusion pipeline on the command line.

Argparse glue over :mod:`~spacetime.diffusion.train`, :mod:`~spacetime.diffusion.sample` and
:mod:`~spacetime.diffusion.evaluate`. Every ``train`` option is a
:class:`~spacetime.diffusion.config.TrainConfig` field; ``--config`` reads them from a JSON or YAML
file and flags override the file. The resolved configuration is saved beside every output
(``config.json``, ``sample_config.json``, ``eval.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import typing
from pathlib import Path

import numpy as np
import torch

from ..config import read_config_file
from ..data.bouncing import create_dataset
from ..data.digits import create_digit_dataset
from ..data.statistics import MotionStats
from ..io.files import atomic_write_npy, atomic_write_text
from ..measure import matmul_rate
from ..models.video_unet import PRESETS
from .config import DEMO_CONFIG, DEMO_PRESETS, FIELD_CHOICES, MEASURED, OBJECT_SIZES, TrainConfig
from .evaluate import data_settings, evaluate_camera, evaluate_samples, format_camera_report, format_report
from .sample import sample_checkpoint, sample_processes
from .schedules import PREDICTIONS, SAMPLERS, SCHEDULES
from .train import resolve_measured, train_processes

__all__ = ["register", "resolve_config"]

_HELP = {
    "model": "VideoUNet preset ('camera' for --data camera)",
    "data": "training videos: bouncing disks, moving handwritten digits (scikit-learn's, held-out digits kept apart), "
            "a Moving MNIST .npy, a folder of videos, synthetic camera pans",
    "max_speed": "top speed per axis in pixels per frame (disks, digits: a whole number 1-4; camera: any > 0)",
    "objects": "disks: 1-3 disks per video; digits: 1-2 digits",
    "num_videos": "disks/camera: distinct training videos, reused every epoch (default: a fresh video every draw; "
                  "text 004 uses 512)",
    "data_path": "the .npy file or video folder for --data mnist|folder", "frames": "frames per video",
    "size": "frame height and width", "digit_size": "disks: the disk's size (None: text 004's 12; digits are 16 px)",
    "channels": "1 (grayscale) or 3 (RGB)", "timesteps": "diffusion training timesteps",
    "schedule": "beta schedule ('cosine' is text 004's)", "prediction": "what the network predicts",
    "noise_shift": "divide the schedule's signal-to-noise ratio by this squared (more steps at high noise)",
    "context_frames": "0: denoise whole videos; K >= 1: a next-frame model that makes each frame from the K "
                      "before it, and samples videos one frame at a time; 'data' (disks, digits): the fewest frames "
                      "that determine the next under the data's law",
    "clip_ends": "next-frame models: where training clips end ('uniform': any frame evenly; 'first': frame 1, "
                 "where motion is chosen, 3/8 of the time)",
    "lead_in": "next-frame models: the value of the context frames from before a video's start (-1: black; "
               "another value marks them apart from the data's frames)",
    "copy_blend": "next-frame models with --prediction sample: the fraction of training clips whose noisy frame is "
                  "made from a blend of the frame and a copy of the one before (the target stays the frame)",
    "copy_blend_span": "the frame's share in a copy blend: 'whole' (uniform in [0, 1]), 'near' (at most "
                       "1/(2 x the motion head's reach): no blend passes for a move the data makes), or 'near-first' "
                       "(near in the clips that end at frame 1, where the move is chosen; whole in the rest)",
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


def _int_or_measured(text: str) -> int | str:
    """A flag that takes a whole number or ``data`` (measured from the training data)."""
    if text == MEASURED:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or {MEASURED!r}; got {text!r}") from None


def _add_config_flags(p: argparse.ArgumentParser, defaults: dict | None = None) -> None:
    """One flag per :class:`TrainConfig` field; its help shows the default from ``defaults`` (the demo's recipe)
    where that sets the field."""
    p.add_argument("--config", help="JSON or YAML file of config fields (flags override it)%(default).0s")
    hints = typing.get_type_hints(TrainConfig)
    choices = {"model": sorted(PRESETS), "schedule": SCHEDULES, "prediction": PREDICTIONS, "sampler": SAMPLERS,
               **FIELD_CHOICES}
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        default = (defaults or {}).get(f.name, default)
        if f.name == "model_overrides":
            shown = f" (default: {json.dumps(default)})" if default else ""
            p.add_argument(_flag(f.name), type=json.loads, default=None, metavar="JSON",
                           help='model preset fields to change, as JSON: \'{"channels": [32, 64]}\'' + shown
                           + "%(default).0s")
            continue
        kind = hints[f.name]
        base = next((t for t in (int, float, str) if kind is t or t in typing.get_args(kind)), str)
        if {int, str} <= set(typing.get_args(kind)):
            base = _int_or_measured
        # "%(default).0s" prints nothing: it stops argparse from appending the flag's own default (None)
        p.add_argument(_flag(f.name), type=base, default=None, choices=choices.get(f.name),
                       metavar=None if f.name in choices else f.name.upper(),
                       help=f"{_HELP.get(f.name, '')} (default: {default})%(default).0s")


def resolve_config(args, base: dict | None = None) -> TrainConfig:
    """Defaults, then ``base``, then the ``--config`` file, then flags given on the command line."""
    values = dict(base or {})
    if getattr(args, "config", None):
        values.update(read_config_file(args.config))
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return TrainConfig.from_dict(values)


def _progress(args) -> bool | None:
    return False if getattr(args, "quiet", False) else None


def _default_procs() -> int:
    """The demo's data-parallel processes: one per CPU core, at most 2, and 1 on a GPU."""
    if torch.cuda.is_available():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(2, cores))


def _run_train(args) -> int:
    cfg = resolve_config(args)
    summary = train_processes(cfg, args.out, procs=args.procs, resume=args.resume, progress=_progress(args),
                              sp=args.sp)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {summary['step']} steps in {summary['seconds']:.0f} s (final loss {summary['loss']:.4f}"
              + (", stopped by the time limit" if summary.get("stopped_by_time_limit") else "") + ")")
        if "ranks_agree" in summary:
            split = f" (dp={summary['world_size'] // summary['sp']} x sp={summary['sp']})" if summary["sp"] > 1 else ""
            print(f"parameters identical on all {summary['world_size']} ranks{split}: {summary['ranks_agree']}")
        print(f"checkpoint: {summary.get('checkpoint')}\nlog: {Path(args.out) / 'log.csv'}, "
              f"loss curve: {Path(args.out) / 'loss.png'}")
    return 0


def _run_sample(args) -> int:
    result = sample_processes(args.checkpoint, args.out, args.sp, num=args.num, sampler=args.sampler,
                              steps=args.steps, seed=args.seed, weights=args.weights, batch_size=args.batch_size,
                              progress=_progress(args), camera_path=args.camera_path, camera_speed=args.camera_speed,
                              reverse_camera=args.reverse_camera, guidance=args.guidance, guide=args.guide,
                              motion_temperature=args.motion_temperature, frames=args.frames,
                              given=args.given)
    r, paths = result["config"], result["paths"]
    guided = f", guided by {r['guide']} at {r['guidance']:g}" if r["guidance"] else ""
    if r["motion_temperature"] != 1:
        guided += f", motion temperature {r['motion_temperature']:g}"
    print(f"{r['num']} videos ({r['sampler']}, {r['steps']} steps{guided}) in {r['seconds']:.1f} s from "
          f"{r['checkpoint']}")
    print(f"grid: {paths['grid']}\narray: {paths['npy']}\nGIF/MP4: {Path(args.out)}/video_*.gif|mp4")
    return 0


#: what ``spacetime eval`` assumes of the data when neither a flag nor the samples' ``sample_config.json`` says
EVAL_DATA = {"data": "disks", "digit_size": None, "objects": 1, "max_speed": 2}


def _eval_data(args) -> dict:
    """The data the videos are scored against: the defaults, then ``sample_config.json`` beside them, then flags."""
    settings = dict(EVAL_DATA)
    if args.videos and not args.training_data:
        settings.update({k: v for k, v in data_settings(args.videos).items() if k in EVAL_DATA})
    settings.update({k: getattr(args, k) for k in EVAL_DATA if getattr(args, k) is not None})
    if settings["data"] not in OBJECT_SIZES:
        raise ValueError(f"data must be one of {tuple(OBJECT_SIZES)} to score bouncing objects; got "
                         f"{settings['data']!r}")
    if settings["digit_size"] is None:
        settings["digit_size"] = OBJECT_SIZES[settings["data"]]
    settings["max_speed"] = int(settings["max_speed"])
    return settings


def _training_videos(args, data: dict) -> str:
    """``--training-data N``: N fresh videos of the data, written where ``--out`` says; their path."""
    rng = np.random.default_rng(args.seed)
    if data["data"] == "digits":
        videos, _ = create_digit_dataset(args.training_data, args.frames, args.size, objects=data["objects"],
                                         max_speed=data["max_speed"], seed=args.seed, split="heldout")
    else:
        videos = create_dataset(args.training_data, args.frames, args.size, rng=rng, digit_size=data["digit_size"],
                                objects=data["objects"], max_speed=data["max_speed"])
    return str(atomic_write_npy(Path(args.out or "runs/eval-training") / "samples.npy", videos.numpy()))


def _run_eval(args) -> int:
    if not args.videos and not args.training_data:
        raise ValueError("give VIDEOS (a .npy or a sample folder) or --training-data N")
    folder = args.videos and (Path(args.videos) if Path(args.videos).is_dir() else Path(args.videos).parent)
    if args.cameras or (folder and (folder / "cameras.npy").is_file()):
        print(format_camera_report(evaluate_camera(args.videos, args.cameras, args.report)))
        return 0
    data = _eval_data(args)
    if args.training_data:
        args.videos = _training_videos(args, data)
    print(format_report(evaluate_samples(args.videos, args.report, tol=args.tol, **data)))
    return 0


def _machine() -> dict:
    """What a timing depends on: cores, threads, torch, and the fp32 matmul rate measured now."""
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "matmul_gflops": round(matmul_rate(), 1)}


def _data_words(cfg) -> str:
    """The training data in a few words: ``"2 disks at up to 3 px/frame"``."""
    if cfg.data not in OBJECT_SIZES:
        return {"mnist": "Moving MNIST", "folder": "a folder of videos", "camera": "camera pans"}[cfg.data]
    what = {"disks": "disk", "digits": "handwritten digit"}[cfg.data]
    return f"{cfg.objects} {what}{'s' * (cfg.objects > 1)} at up to {cfg.max_speed:g} px/frame"


def _run_demo(args) -> int:
    out = Path(args.out)
    start = time.perf_counter()
    cfg, measured = resolve_measured(resolve_config(args, base={**DEMO_CONFIG, **DEMO_PRESETS[args.preset]}))
    kind = f"next-frame, {cfg.context_frames} frames of context" if cfg.context_frames else "whole videos"
    unet = cfg.unet_config()
    if unet.motion_head:
        kind += f", motion head of {unet.motion_head} px"
    width = "/".join(map(str, unet.channels))
    machine = _machine()
    print(f"spacetime demo: a video diffusion model ({cfg.model} VideoUNet, {width} channels, {kind}) trained from "
          f"scratch on {_data_words(cfg)} ({cfg.frames}x{cfg.size}x{cfg.size}), {cfg.steps} steps or {cfg.time_limit} "
          f"minutes, then {cfg.num_samples} samples scored for physical plausibility. This machine: "
          f"{machine['cpu_count']} cores, fp32 matmul {machine['matmul_gflops']:.0f} GFLOP/s.", flush=True)
    for note in (MotionStats(measured).describe() if measured else None, cfg.context_note()):
        if note:
            print(note, flush=True)
    procs = args.procs or _default_procs()
    summary = train_processes(cfg, out / "train", procs=procs, resume=args.resume, progress=_progress(args))
    t_train = time.perf_counter() - start
    print(f"[1/3] trained {summary['step']} steps in {t_train:.0f} s ({procs} process{'es' * (procs > 1)}), "
          f"final loss {summary['loss']:.4f}", flush=True)
    result = sample_checkpoint(out / "train", out / "samples", seed=cfg.seed, progress=_progress(args))
    print(f"[2/3] sampled {result['config']['num']} videos in {result['config']['seconds']:.0f} s", flush=True)
    report = evaluate_samples(out / "samples" / "samples.npy", data=cfg.data, digit_size=cfg.object_size,
                              objects=cfg.objects, max_speed=int(cfg.max_speed))
    print("[3/3] plausibility of the samples:\n" + format_report(report))
    total = time.perf_counter() - start
    record = {"command": "spacetime " + " ".join(sys.argv[1:]), "machine": machine, "procs": procs,
              "measured": measured,
              "steps": summary["step"], "train_seconds": round(t_train, 1),
              "sample_seconds": result["config"]["seconds"], "wall_seconds": round(total, 1),
              "plausible_fraction": report["plausible_fraction"], "num_videos": report["num_videos"],
              "diversity": {name: {k: stat[k] for k in ("distance", "data_median", "data_p99", "cells", "ok")}
                            for name, stat in report["diversity"]["statistics"].items()}}
    atomic_write_text(out / "demo.json", json.dumps(record, indent=2) + "\n")
    print(f"\ndone in {total / 60:.1f} min. Outputs:\n  loss curve   {out / 'train' / 'loss.png'}\n"
          f"  training log {out / 'train' / 'log.csv'}\n  checkpoint   {summary.get('checkpoint')}\n"
          f"  sample grid  {result['paths']['grid']}\n  videos       {out / 'samples'}/video_*.gif|mp4\n"
          f"  array        {result['paths']['npy']}\n  eval report  {report['report_path']}\n"
          f"  run record   {out / 'demo.json'}")
    return 0


def _command(subparsers, name: str, text: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(name, help=text, description=text)


def _register_train(subparsers) -> None:
    p = _command(subparsers, "train", "train a video diffusion model (VideoUNet) with diffusers schedules; works "
                                      "under torchrun for multi-process DDP")
    _add_config_flags(p)
    p.add_argument("--out", default="runs/train", help="output folder (config, log, loss curve, checkpoints)")
    p.add_argument("--procs", type=int, default=1,
                   help="training processes on this machine, one thread each: dp x sp of them (on a few CPU cores 2 "
                        "processes beat 2 threads for small models)")
    p.add_argument("--sp", type=int, default=1,
                   help="sequence parallelism: split each clip's frames across this many of the processes (--procs or "
                        "torchrun's, = dp x sp); the run matches one process on the same batches, whatever the split")
    p.add_argument("--resume", action="store_true", help="continue bit-exactly from OUT/checkpoints/latest.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train)


def _register_sample(subparsers) -> None:
    p = _command(subparsers, "sample", "generate videos from a checkpoint: GIF and MP4 per video, a PNG grid, .npy")
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
    p.add_argument("--sp", type=int, default=1,
                   help="split every clip's frames across this many processes on this machine (sequence "
                        "parallelism); the same videos as one process")
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
    p.add_argument("--frames", type=int, default=None,
                   help="next-frame models: frames per video, rolled out past the trained length (default: the "
                        "run's frames)%(default).0s")
    p.add_argument("--given", default=None, metavar="FILE",
                   help="next-frame models: continue these leading frames (a .npy of (k, H, W), (C, k, H, W) or "
                        "(N, C, k, H, W) in [0, 1], or a video/GIF file, resized to the run's size)%(default).0s")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_sample)


def _register_eval(subparsers) -> None:
    p = _command(subparsers, "eval", "score videos of bouncing objects against their data's law: plausibility (each "
                                     "frame holds the data's objects, each on a bouncing path at the data's speeds) "
                                     "and diversity (first moves, start positions, object count against the data's "
                                     "own values); for samples of a camera model (a cameras.npy beside them), the "
                                     "camera-following error")
    p.add_argument("videos", nargs="?", help="a .npy of (N, 1, T, H, W) videos in [0, 1], or a sample folder")
    p.add_argument("--report", default=None, help="where to write the JSON report (default: beside the videos)")
    p.add_argument("--data", choices=list(OBJECT_SIZES), default=None,
                   help="the training data (default: from sample_config.json beside the videos, else disks)"
                        "%(default).0s")
    p.add_argument("--digit-size", type=int, default=None,
                   help="disks: the training disk's size (default: from sample_config.json, else 12)%(default).0s")
    p.add_argument("--objects", type=int, default=None,
                   help="objects in every training video (default: from sample_config.json, else 1)%(default).0s")
    p.add_argument("--max-speed", type=int, default=None,
                   help="the data's top speed per axis in px/frame (default: from sample_config.json, else 2)"
                        "%(default).0s")
    p.add_argument("--tol", type=float, default=None,
                   help="disks: pixels per frame that may differ from the fitted disks, as a fraction of one disk's "
                        "area (default: 0.15)%(default).0s")
    p.add_argument("--training-data", type=int, default=0, metavar="N",
                   help="instead, score N freshly generated videos of the data (a check of the scorer; digits: the "
                        "held-out digits)")
    p.add_argument("--frames", type=int, default=8, help="frames of --training-data videos")
    p.add_argument("--size", type=int, default=32, help="size of --training-data videos")
    p.add_argument("--seed", type=int, default=0, help="seed of --training-data videos")
    p.add_argument("--out", default=None, help="folder for --training-data videos")
    p.add_argument("--cameras", default=None,
                   help="a (N, T, 6) .npy of requested cameras: report the camera-following error (default: "
                        "cameras.npy beside the videos, when there is one)%(default).0s")
    p.set_defaults(func=_run_eval)


def _register_demo(subparsers) -> None:
    p = _command(subparsers, "demo", "the main job: train a video diffusion model on bouncing disks from scratch, "
                                     "sample 32 videos, score their plausibility and diversity, print where "
                                     "everything is (~15 min on 2 cores; --preset for harder data)")
    _add_config_flags(p, defaults=DEMO_CONFIG)
    p.add_argument("--preset", choices=list(DEMO_PRESETS), default="disks",
                   help="the data: text 004's disks (15 minutes), two disks at up to 3 px/frame or moving handwritten "
                        "digits (30 minutes each); the same recipe, its motion head measured from the data")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--procs", type=int, default=None,
                   help="data-parallel training processes (default: one per CPU core, at most 2; 1 on a GPU)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo's training")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_demo)


def register(subparsers) -> None:
    """Add ``train``, ``sample``, ``eval`` and ``demo``."""
    for add in (_register_train, _register_sample, _register_eval, _register_demo):
        add(subparsers)
