"""Plausibility of sampled videos against training minutes, for variants of the demo's recipe.

Each variant is a base recipe with a few fields changed (see ``VARIANTS`` or ``--list``): ``demo``
and ``demo-*`` change ``spacetime demo``'s present recipe (``DEMO_CONFIG``), the others the demo of
rounds 1 and 2 (``BASE``, a small whole-video VideoUNet). The run trains with :func:`spacetime.diffusion.train.train` in
chunks of ``--every`` minutes (resuming bit-exactly from the chunk's checkpoint), and after each
chunk samples ``--samples`` videos from the EMA weights with a fixed sampler and seed and scores
them with the ``spacetime eval`` detector. The clock counts training time only.

Per evaluation it appends a row to ``benchmarks/motion/<variant>-s<seed>.csv``:

    minutes, step, loss   training minutes so far, optimizer step, mean loss of the last log interval
    plausible             fraction of videos that pass ``spacetime eval``
    frame_score           fraction of frames that hold one training-size disk
    motion_score          among videos whose every frame holds one disk, the fraction whose motion passes
    prefix_score          mean over videos of (longest plausible leading clip, in frames) / T: a graded
                          motion signal while ``plausible`` is still 0
    continued             next-frame models: 32 held-out training videos' first two frames given, the
                          fraction whose remaining frames come back on their own trajectory (every
                          position within 1 px); the extrapolation skill without the choice of a velocity
    kept_15, kept_25      trajectory recovery: 32 held-out training videos noised to log-SNR -1.5 (-2.5)
                          and denoised by the same sampler; the fraction that come back plausible on
                          their own trajectory (every position within 1 px). Where this falls from ~1
                          to 0 is the noise range in which the model loses the motion.
    copies                with a fixed training set (``num_videos``): the fraction of sampled videos whose
                          disk positions all lie within 1 px of one training video's (memorisation)
    sample_seconds        seconds to sample the videos scored
    matmul_gflops         the fp32 matmul rate of this process (its threads) when the run started: the
                          machine the minutes, steps and seconds were measured on (empty in older CSVs)

and redraws ``benchmarks/motion/curves.png`` (scores vs minutes) and ``steps.png`` (trajectory
recovery vs optimizer steps) from every CSV in that folder, and ``demo.png`` from the ``demo*`` CSVs.

Two variants side by side, one core each (the commands of every run are in ``benchmarks/motion/README.md``)::

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE taskset -c 0 python benchmarks/motion_ablation.py demo --minutes 10
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE taskset -c 1 python benchmarks/motion_ablation.py rope-thw --minutes 10
    python benchmarks/motion_ablation.py --plot-only
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the spacetime CLI does (docs/architecture.md)

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from spacetime.diffusion.config import DEMO_CONFIG

HERE = Path(__file__).resolve().parent
OUT = HERE / "motion"
FIELDS = ["variant", "seed", "minutes", "step", "loss", "plausible", "frame_score", "motion_score", "prefix_score",
          "sample_seconds", "kept_15", "kept_25", "copies", "continued", "matmul_gflops"]
REQUIRED = FIELDS[:10]  # CSVs written before the trajectory-recovery columns lack the last two

#: the demo's recipe when the ablations began (rounds 1 and 2): the base every variant below changes
BASE = {"model": "small", "steps": 2400, "batch_size": 16, "lr": 2e-3, "checkpoint_every": 400, "time_limit": 11.0,
        "sampler": "ddim", "sample_steps": 100, "num_samples": 32}

#: round 4's demo (32 channels, v-prediction, clip ends uniform): the base of the round-3 and round-4 variants,
#: written out so they measure what they measured whatever DEMO_CONFIG is now
R4 = {"model_overrides": {"channels": [32, 32]}, "prediction": "v_prediction", "clip_ends": "uniform", "copy_blend": 0.0,
      "move_blend": 0.0, "motion_temperature": 1.0}
#: round 5's motion head, clip ends uniform: the base of the demo-motion variants
MOTION = {"model_overrides": {"channels": [32, 32], "motion_head": 2}, "prediction": "sample", "clip_ends": "uniform",
          "copy_blend": 0.0, "move_blend": 0.0, "motion_temperature": 1.0}

#: round 6's demo as `spacetime demo` samples it: the base of the round-7 variants
R6 = {**MOTION, "clip_ends": "first", "copy_blend": 0.5, "move_blend": 0.0, "motion_temperature": 0.7}

#: name -> (what it tests, changes to BASE; ``model_overrides`` changes the VideoUNet preset). "demo" is
#: ``spacetime demo``'s recipe as it is now (``DEMO_CONFIG``), whatever BASE says; the other "demo-" variants
#: change DEMO_CONFIG.
VARIANTS: dict[str, tuple[str, dict]] = {
    "demo": ("the demo's recipe as it is now (DEMO_CONFIG)", {}),
    "demo-2x": ("the demo's recipe given twice the time (run it with --minutes twice the other's): does it keep "
                "improving or collapse?", {}),
    "demo-r3": ("round 3's demo recipe: 64 channels, the learning rate decaying over 7000 steps whatever the time",
                {**R4, "model_overrides": {}, "steps": 7000, "lr_decay": "steps"}),
    "demo-r3-2x": ("round 3's demo recipe with twice its steps (and time)",
                   {**R4, "model_overrides": {}, "steps": 14000, "lr_decay": "steps"}),
    "demo-64": ("round 4's demo recipe 64 channels wide (the patch4 preset as it is)", {**R4, "model_overrides": {}}),
    "demo-shift2": ("round 4's demo recipe with the schedule's SNR divided by 4: more training at high noise, where "
                    "a next frame must be read from its context alone", {**R4, "noise_shift": 2.0}),
    "demo-shift4": ("round 4's demo recipe with the schedule's SNR divided by 16", {**R4, "noise_shift": 4.0}),
    "demo-narrow32": ("round 4's demo recipe (32 channels, 2 heads of 16), the run that made 32 the demo's width: "
                      "about twice the steps per minute of 64 on a slow machine", R4),
    "demo-narrow48": ("round 4's demo recipe at 48 channels (3 heads of 16)",
                      {**R4, "model_overrides": {"channels": [48, 48]}}),
    "demo-motion": ("round 4's demo with a motion head: the network draws each frame as a per-pixel mix of the "
                    "frame before it moved by up to 2 px (and one image of its own), predicting the clean frame",
                    MOTION),
    "demo-motion-first": ("demo-motion with clips ending at frame 1 (where the move is chosen) 3/8 of the time: "
                          "round 5's demo recipe", {**MOTION, "clip_ends": "first"}),
    "demo-motion-selfcond": ("demo-motion with self-conditioning: the model also sees its previous estimate of the "
                             "clean frame",
                             {**MOTION, "model_overrides": {"channels": [32, 32], "motion_head": 2,
                                                            "self_condition": True}}),
    "demo-motion-64": ("demo-motion 64 channels wide",
                       {**MOTION, "model_overrides": {"channels": [64, 64], "motion_head": 2}}),
    "demo-blend": ("demo-motion-first with half its clips noising a blend of the frame and a copy of the one before "
                   "(the target stays the frame): the demo's training since round 6 (the demo samples it with "
                   "motion temperature 0.7, this variant at 1)", {**MOTION, "clip_ends": "first", "copy_blend": 0.5}),
    "demo-fill": ("round 6's demo (demo-blend sampled at motion temperature 0.7) with the head's moved copies "
                  "black where they come from outside the frame (motion_fill -1)",
                  {**R6, "model_overrides": {"channels": [32, 32], "motion_head": 2, "motion_fill": -1.0}}),
    "demo-move": ("demo-fill with a quarter of its clips blending the frame (the larger part) with the one before "
                  "moved by a random shift of the head's (move_blend 0.25): round 7's demo recipe",
                  {**R6, "model_overrides": {"channels": [32, 32], "motion_head": 2, "motion_fill": -1.0},
                   "move_blend": 0.25}),
    "small": ("BASE as it is: the demo of rounds 1 and 2 (small VideoUNet, joint attention at 8x8 and 4x4)", {}),
    "rope-thw": ("rotary (frame, row, column) positions in every attention stage",
                 {"model_overrides": {"rope": "thw"}}),
    "rope-t": ("rotary frame positions in every attention stage", {"model_overrides": {"rope": "t"}}),
    "p4-joint8": ("4x4 patches: joint attention on the 8x8 grid from the first level, fewer, wider levels",
                  {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"]}}),
    "p4-joint8-rope": ("p4-joint8 with rotary (frame, row, column) positions",
                       {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"],
                                            "rope": "thw"}}),
    "tk5": ("temporal convolution over 5 frames instead of 3", {"model_overrides": {"temporal_kernel": 5}}),
    "eps": ("epsilon prediction instead of v", {"prediction": "epsilon"}),
    "bs8": ("batch 8: twice the optimizer steps per minute", {"batch_size": 8}),
    "linear": ("DDPM's linear betas: more of training at high noise, where the trajectory is decided",
               {"schedule": "linear"}),
    "lr-fit": ("learning rate decays within 10 one-core minutes (900 steps) instead of 2400 steps",
               {"steps": 900}),
    "rope-lr-fit": ("rope-thw with lr-fit", {"model_overrides": {"rope": "thw"}, "steps": 900}),
    "p4-joint8-shift4": ("p4-joint8 with the schedule's SNR divided by 16: trajectories are decided at high noise",
                         {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"]},
                          "noise_shift": 4.0}),
    "p4-joint8-conv3d": ("p4-joint8 with full 3x3x3 convolutions (space-time oriented filters) instead of (2+1)-D",
                         {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"],
                                              "conv": "3d"}}),
    "p4-joint8-pixstem": ("p4-joint8 with a 3x5x5 space-time conv (16 channels) on the pixels before the 4x4 fold: "
                          "motion of 1-2 px/frame is visible to the first layer",
                          {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"],
                                               "pixel_stem": 16}}),
    "p4-joint8-selfcond": ("p4-joint8 with self-conditioning: the model also sees its previous estimate of the "
                           "clean video, so a trajectory it has begun to draw is kept rather than redrawn",
                           {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"],
                                                "self_condition": True}}),
    "p4-joint8-fixed512": ("p4-joint8 trained on text 004's fixed set of 512 videos instead of fresh ones",
                           {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"]},
                            "num_videos": 512}),
    "p4-joint8-wide": ("p4-joint8 twice as wide (128 channels, 4 heads of 32): fewer, stronger steps",
                       {"model_overrides": {"patch": 4, "channels": [128, 128], "attention": ["joint", "joint"],
                                            "head_dim": 32}}),
    "p4-joint8-bs8": ("p4-joint8 with batch 8: twice the optimizer steps per minute",
                      {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"]},
                       "batch_size": 8}),
    "p4-joint8-nf2": ("p4-joint8 as a next-frame model: clips of 2 clean frames and the noisy next one; sampling "
                      "makes one frame at a time from the two before it",
                      {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"]},
                       "context_frames": 2, "clip_ends": "uniform"}),
    "p4-joint8-nf3": ("p4-joint8-nf2 with 3 frames of context",
                      {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"]},
                       "context_frames": 3, "clip_ends": "uniform"}),
    "nf2-long": ("p4-joint8-nf2 sampled with DDPM, its learning rate decaying over 8000 steps",
                 {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"]},
                  "context_frames": 2, "clip_ends": "uniform", "sampler": "ddpm", "steps": 8000}),
    "nf2-long-bs32": ("nf2-long with batch 32 (4000 steps)",
                      {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"]},
                       "context_frames": 2, "clip_ends": "uniform", "sampler": "ddpm", "steps": 4000,
                       "batch_size": 32}),
    "nf2-first": ("nf2-long with next-frame clips ending at frame 1 (where the velocity is chosen) 3/8 of the "
                  "time instead of 1/8",
                  {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"]},
                   "context_frames": 2, "clip_ends": "first", "sampler": "ddpm", "steps": 8000}),
    "nf2-first-pixstem": ("nf2-first with a 3x5x5 space-time conv (16 channels) on the pixels before the 4x4 fold",
                          {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"],
                                               "pixel_stem": 16},
                           "context_frames": 2, "clip_ends": "first", "sampler": "ddpm", "steps": 8000}),
    "nf2-first-shift05": ("nf2-first with the schedule's SNR multiplied by 4: more training at low noise, where "
                          "a next frame's exact position is set",
                          {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"]},
                           "context_frames": 2, "clip_ends": "first", "sampler": "ddpm", "steps": 8000,
                           "noise_shift": 0.5}),
    "nf2-ema999": ("nf2-long with EMA decay 0.999 instead of 0.995",
                   {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"]},
                    "context_frames": 2, "clip_ends": "uniform", "sampler": "ddpm", "steps": 8000,
                    "ema_decay": 0.999}),
    "p4-joint8-shift8": ("p4-joint8 with the schedule's SNR divided by 64",
                         {"model_overrides": {"patch": 4, "channels": [64, 64], "attention": ["joint", "joint"]},
                          "noise_shift": 8.0}),
}


def scores(videos: np.ndarray, detector) -> dict:
    """The four scores of the module docstring for ``(N, T, H, W)`` videos in [0, 1]."""
    verdicts = [detector.judge(v) for v in videos]
    t = videos.shape[1]
    all_frames = [v for v in verdicts if v.frames_with_disk == t]
    prefix = []
    for video, verdict in zip(videos, verdicts):
        if verdict.plausible:
            prefix.append(t)
            continue
        k = 1
        while k < t and detector.judge(video[:k + 1]).plausible:
            k += 1
        prefix.append(k if detector.judge(video[:1]).plausible else 0)
    return {
        "plausible": float(np.mean([v.plausible for v in verdicts])),
        "frame_score": sum(v.frames_with_disk for v in verdicts) / (len(videos) * t),
        "motion_score": float(np.mean([v.plausible for v in all_frames])) if all_frames else float("nan"),
        "prefix_score": float(np.mean(prefix)) / t,
    }


def held_out(cfg):
    """Bouncing-disk videos the run never trains on (another seed), for the trajectory scores."""
    from spacetime.data.bouncing import BouncingDisks

    return BouncingDisks(num_frames=cfg.frames, size=cfg.size, digit_size=cfg.digit_size, seed=cfg.seed + 10_007)


def kept_fraction(videos: np.ndarray, data, detector) -> float:
    """Fraction of ``(N, T, H, W)`` videos that are plausible with every disk position within 1 px of
    held-out video ``i``'s."""
    kept = []
    for i, video in enumerate(videos):
        verdict = detector.judge(video)
        kept.append(verdict.plausible and np.abs(verdict.positions - data.positions(i)).max() <= 1.0)
    return float(np.mean(kept))


def trajectory_recovery(model, cfg, log_snr: float, detector, num: int = 32, steps: int = 50) -> float:
    """Fraction of ``num`` held-out videos that, noised to ``log_snr`` and denoised (DDIM, the run's
    schedule), come back plausible with every disk position within 1 px of the original."""
    import torch

    from spacetime.diffusion.schedules import make_scheduler

    data = held_out(cfg)
    x0 = torch.stack([data[i] for i in range(num)]) * 2 - 1
    sched = make_scheduler("ddim", num_train_timesteps=cfg.timesteps, schedule=cfg.schedule,
                           prediction_type=cfg.prediction, shift=cfg.noise_shift)
    snr = torch.log(sched.alphas_cumprod / (1 - sched.alphas_cumprod))
    start = int((snr >= log_snr).nonzero().max())
    sched.set_timesteps(steps)
    timesteps = [t for t in sched.timesteps if t <= start]
    gen = torch.Generator().manual_seed(4321)
    x = sched.add_noise(x0, torch.randn(x0.shape, generator=gen), torch.full((num,), int(timesteps[0])))
    from spacetime.diffusion.schedules import predicted_x0

    model.eval()
    x_self = torch.zeros_like(x) if model.config.self_condition else None
    with torch.no_grad():
        for t in timesteps:
            out = model(x, t.expand(num)) if x_self is None else model(x, t.expand(num), x_self=x_self)
            if x_self is not None:
                x_self = predicted_x0(sched, x, t, out, cfg.prediction).clamp(-1, 1)
            x = sched.step(out, t, x).prev_sample
    videos = ((x + 1) / 2).clamp(0, 1)[:, 0].numpy()
    return kept_fraction(videos, data, detector)


def continuation(model, cfg, detector, num: int = 32, steps: int = 50, given: int = 2) -> float | str:
    """Next-frame models: the fraction of ``num`` held-out videos that, given their first ``given``
    frames, are continued plausibly on their own trajectory (every position within 1 px); "" otherwise."""
    if not cfg.context_frames:
        return ""
    import torch

    from spacetime.diffusion.sample import sample_videos

    data = held_out(cfg)
    truth = torch.stack([data[i] for i in range(num)])
    videos = sample_videos(model, tuple(truth.shape[1:]), num, sampler=cfg.sampler, steps=steps,
                           timesteps=cfg.timesteps, schedule=cfg.schedule, prediction=cfg.prediction,
                           shift=cfg.noise_shift, context=cfg.context_frames, given=truth[:, :, :given], seed=4321,
                           motion_temperature=cfg.motion_temperature, progress=False)[:, 0].numpy()
    return kept_fraction(videos, data, detector)


def copies(videos: np.ndarray, cfg, detector) -> float | str:
    """Fraction of ``videos`` that retrace a training video (every position within 1 px); "" for fresh data."""
    if cfg.num_videos is None:
        return ""
    from spacetime.diffusion.train import make_dataset

    data = make_dataset(cfg)
    train = np.stack([data.positions(i) for i in range(len(data))]).astype(np.float64)  # (n, t, 2)
    hits = []
    for video in videos:
        pos = detector.judge(video).positions
        hits.append(bool(np.isfinite(pos).all() and (np.abs(train - pos).max(axis=(1, 2)) <= 1.0).any()))
    return float(np.mean(hits))


def _write_csv(rows: list[dict], path: Path) -> None:
    from spacetime.io.files import atomic_write_csv

    atomic_write_csv(path, rows, FIELDS)


def run_variant(name: str, minutes: float, every: float, samples: int, sample_steps: int, seed: int,
                runs_dir: Path, out_dir: Path) -> list[dict]:
    """Train variant ``name`` for ``minutes`` of training time, scoring samples every ``every`` minutes."""
    from spacetime.data.plausibility import DiskDetector
    from spacetime.diffusion.config import TrainConfig
    from spacetime.diffusion.sample import sample_videos
    from spacetime.diffusion.train import load_model, train
    from spacetime.measure import matmul_rate

    rate = round(matmul_rate(), 1)
    base = DEMO_CONFIG if name.startswith("demo") else BASE
    values = {**base, **VARIANTS[name][1], "seed": seed, "time_limit": minutes}
    cfg = TrainConfig.from_dict(values)
    run_dir = runs_dir / f"{name}-s{seed}"
    if run_dir.exists():
        print(f"{name}: removing the previous run in {run_dir}", flush=True)
        shutil.rmtree(run_dir)
    detector = DiskDetector(size=cfg.size, digit_size=cfg.digit_size)
    csv_path = out_dir / f"{name}-s{seed}.csv"
    rows, trained = [], 0.0
    while trained < 60 * minutes - 1e-6:
        summary = train(cfg, run_dir / "train", resume=trained > 0, progress=False, stop_after=every)
        trained = summary["train_seconds"]
        model, _ = load_model(run_dir / "train" / "checkpoints")
        start = time.perf_counter()
        videos = sample_videos(model, (cfg.channels, cfg.frames, cfg.size, cfg.size), samples, sampler=cfg.sampler,
                               steps=sample_steps, timesteps=cfg.timesteps, schedule=cfg.schedule,
                               prediction=cfg.prediction, shift=cfg.noise_shift, context=cfg.context_frames,
                               motion_temperature=cfg.motion_temperature, seed=1234, progress=False)
        sample_seconds = time.perf_counter() - start
        row = {"variant": name, "seed": seed, "minutes": round(trained / 60, 3), "step": summary["step"],
               "loss": round(summary["loss"], 5), **{k: round(v, 4) for k, v in scores(videos[:, 0].numpy(),
                                                                                        detector).items()},
               "sample_seconds": round(sample_seconds, 1),
               "kept_15": "" if cfg.context_frames else trajectory_recovery(model, cfg, -1.5, detector),
               "kept_25": "" if cfg.context_frames else trajectory_recovery(model, cfg, -2.5, detector),
               "copies": copies(videos[:, 0].numpy(), cfg, detector),
               "continued": continuation(model, cfg, detector, steps=sample_steps), "matmul_gflops": rate}
        rows.append(row)
        _write_csv(rows, csv_path)
        plot(out_dir)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        if not summary["stopped_by_time_limit"]:
            break  # the config's steps are done
    return rows


def rescore(name: str, seed: int, runs_dir: Path, out_dir: Path) -> dict:
    """Fill the trajectory-recovery columns of the last row of a variant's CSV from its final checkpoint
    (for runs made before those columns existed)."""
    from spacetime.data.plausibility import DiskDetector
    from spacetime.diffusion.config import TrainConfig
    from spacetime.diffusion.train import load_model

    csv_path, run_dir = out_dir / f"{name}-s{seed}.csv", runs_dir / f"{name}-s{seed}" / "train"
    if not csv_path.is_file() or not (run_dir / "checkpoints").is_dir():
        raise SystemExit(f"{name}: needs {csv_path} and the run's checkpoints in {run_dir}")
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    model, meta = load_model(run_dir / "checkpoints")
    if str(meta["step"]) != rows[-1]["step"]:
        raise SystemExit(f"{name}: the final checkpoint is step {meta['step']}, the CSV's last row step {rows[-1]['step']}")
    cfg = TrainConfig.from_dict(meta["train_config"])
    detector = DiskDetector(size=cfg.size, digit_size=cfg.digit_size)
    rows[-1].update(kept_15=trajectory_recovery(model, cfg, -1.5, detector),
                    kept_25=trajectory_recovery(model, cfg, -2.5, detector))
    _write_csv(rows, csv_path)
    print(f"{name}: step {meta['step']} kept_15={rows[-1]['kept_15']} kept_25={rows[-1]['kept_25']}", flush=True)
    return rows[-1]


def resample(name: str, seed: int, runs_dir: Path, specs: list[str], samples: int) -> None:
    """Print the scores of a variant's final checkpoint under other samplers (``"ddpm:50"``...)."""
    from spacetime.data.plausibility import DiskDetector
    from spacetime.diffusion.config import TrainConfig
    from spacetime.diffusion.sample import sample_videos
    from spacetime.diffusion.train import load_model

    model, meta = load_model(runs_dir / f"{name}-s{seed}" / "train" / "checkpoints")
    cfg = TrainConfig.from_dict(meta["train_config"])
    detector = DiskDetector(size=cfg.size, digit_size=cfg.digit_size)
    for spec in specs:
        sampler, _, steps = spec.partition(":")
        cfg.sampler, steps = sampler, int(steps)
        videos = sample_videos(model, (cfg.channels, cfg.frames, cfg.size, cfg.size), samples, sampler=sampler,
                               steps=steps, timesteps=cfg.timesteps, schedule=cfg.schedule,
                               prediction=cfg.prediction, shift=cfg.noise_shift, context=cfg.context_frames,
                               motion_temperature=cfg.motion_temperature, seed=1234, progress=False)
        found = scores(videos[:, 0].numpy(), detector)
        found["continued"] = continuation(model, cfg, detector, steps=steps)
        print(f"{name} (step {meta['step']}) {spec}: " + ", ".join(f"{k}={v if v == '' else round(v, 3)}"
                                                                    for k, v in found.items()), flush=True)


def plot(out_dir: Path) -> Path | None:
    """``curves.png``: the four scores against training minutes, one line per CSV in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spacetime.io.files import save_figure

    runs = {}
    for path in sorted(out_dir.glob("*.csv")):
        with path.open() as f:
            rows = list(csv.DictReader(f))
        if rows and set(REQUIRED) <= set(rows[0]):
            runs[path.stem] = rows
    if not runs:
        return None
    colours = {name: plt.cm.tab20(i % 20) for i, name in enumerate(runs)}  # one colour per run in both figures
    keys = [("plausible", "plausible videos (spacetime eval)"), ("frame_score", "frames with one training disk"),
            ("motion_score", "motion passes (videos with a disk in every frame)"),
            ("prefix_score", "plausible leading frames / T"),
            ("kept_15", "trajectory kept from log-SNR -1.5"), ("kept_25", "trajectory kept from log-SNR -2.5"),
            ("continued", "next-frame models: trajectory continued from 2 true frames")]
    fig, axes = plt.subplots(4, 2, figsize=(10, 13), sharex=True)
    axes[-1, -1].axis("off")
    for ax, (key, title) in zip(axes.flat, keys):
        for name, rows in runs.items():
            points = [(float(r["minutes"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, label=name, color=colours[name])
        ax.set_title(title, fontsize=10), ax.set_ylim(-0.03, 1.03), ax.grid(alpha=0.3)
    for ax in (axes[-1, 0], axes[-2, 1]):
        ax.set_xlabel("training minutes (one core)")
        ax.xaxis.set_tick_params(labelbottom=True)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("bouncing disks 8x32x32: sample plausibility vs training time")
    fig.tight_layout()
    path = save_figure(fig, out_dir / "curves.png")
    # the same trajectory-recovery scores against optimizer steps: does a variant learn more per step?
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (key, title) in zip(axes, keys[4:6]):
        for name, rows in runs.items():
            points = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, label=name, color=colours[name])
        ax.set_title(title, fontsize=10), ax.set_xlabel("optimizer step"), ax.grid(alpha=0.3), ax.set_ylim(-0.03, 1.03)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_dir / "steps.png")
    demo = {name: rows for name, rows in runs.items() if name.startswith("demo")}
    if demo:  # the demo's recipe alone: the README's figure
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for i, (name, rows) in enumerate(demo.items()):
            points = [(float(r["minutes"]), float(r["plausible"])) for r in rows]
            style = "-o" if name.startswith(("demo-motion", "demo-blend", "demo-fill", "demo-move")) else "--s"
            ax.plot(*zip(*points), style, ms=4, color=plt.cm.tab10(i % 10), label=name)
        ax.set_xlabel("training minutes (one core)"), ax.set_ylim(-0.03, 1.03), ax.grid(alpha=0.3)
        ax.set_ylabel("plausible fraction of 32 videos")
        ax.axhline(0.9, color="grey", lw=0.8, ls=":", label="the 90% target")
        ax.set_title("the demo's recipes: plausible samples vs training time\n(solid: with the motion head, "
                     "rounds 5-7; demo-r3*: round 3's machine, 2.5x faster)", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        save_figure(fig, out_dir / "demo.png")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", help=f"variants to run, of {sorted(VARIANTS)}")
    parser.add_argument("--minutes", type=float, default=10.0, help="training minutes per variant (default 10)")
    parser.add_argument("--every", type=float, default=2.0, help="training minutes between evaluations (default 2)")
    parser.add_argument("--samples", type=int, default=32, help="videos sampled per evaluation (default 32)")
    parser.add_argument("--sample-steps", type=int, default=50, help="sampler steps (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the sampling seed is fixed)")
    parser.add_argument("--runs", default="runs/motion", help="scratch folder for checkpoints (replaced per run)")
    parser.add_argument("--out", default=str(OUT), help="folder of the CSVs and curves.png")
    parser.add_argument("--plot-only", action="store_true", help="only redraw curves.png from the CSVs")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--sweep", type=float, nargs="+", metavar="LOGSNR",
                        help="do not train: print the trajectory recovery of each variant's final checkpoint from "
                             "these log-SNRs")
    parser.add_argument("--resample", nargs="+", metavar="SAMPLER:STEPS",
                        help="do not train: sample each variant's final checkpoint in --runs with these samplers "
                             "(e.g. ddpm:50 ddim:50) and print the scores (and, for next-frame models, continued)")
    parser.add_argument("--rescore", action="store_true",
                        help="do not train: fill the trajectory-recovery columns of each variant's last CSV row from "
                             "its final checkpoint in --runs")
    args = parser.parse_args(argv)
    if args.list:
        for name, (what, changes) in VARIANTS.items():
            print(f"{name:16s} {what}: {changes}")
        return 0
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.plot_only:
        print(plot(out_dir))
        return 0
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        parser.error(f"variants must be among {sorted(VARIANTS)}; got {args.variants}")
    if args.minutes <= 0 or args.every <= 0 or args.samples < 1 or args.sample_steps < 1:
        parser.error("--minutes and --every must be > 0, --samples and --sample-steps >= 1")
    if args.sweep:
        from spacetime.data.plausibility import DiskDetector
        from spacetime.diffusion.config import TrainConfig
        from spacetime.diffusion.train import load_model

        for name in args.variants:
            model, meta = load_model(Path(args.runs) / f"{name}-s{args.seed}" / "train" / "checkpoints")
            cfg = TrainConfig.from_dict(meta["train_config"])
            detector = DiskDetector(size=cfg.size, digit_size=cfg.digit_size)
            kept = [f"{s:+.1f}: {trajectory_recovery(model, cfg, s, detector):.2f}" for s in args.sweep]
            print(f"{name} (step {meta['step']}) trajectory kept from log-SNR " + ", ".join(kept), flush=True)
        return 0
    if args.resample:
        for name in args.variants:
            resample(name, args.seed, Path(args.runs), args.resample, args.samples)
        return 0
    if args.rescore:
        for name in args.variants:
            rescore(name, args.seed, Path(args.runs), out_dir)
        plot(out_dir)
        return 0
    for name in args.variants:
        run_variant(name, args.minutes, args.every, args.samples, args.sample_steps, args.seed, Path(args.runs),
                    out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
