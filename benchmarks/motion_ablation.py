"""Plausibility of sampled videos against training minutes, for variants of the demo's recipe.

Each variant is the ``spacetime demo`` configuration (``DEMO_CONFIG``) with a few fields changed
(see ``VARIANTS`` or ``--list``). The run trains with :func:`spacetime.diffusion.train.train` in
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

and redraws ``benchmarks/motion/curves.png`` from every CSV in that folder.

Two variants side by side, one core each (as in ``docs/drafts/motion.md``)::

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE taskset -c 0 python benchmarks/motion_ablation.py demo --minutes 10
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE taskset -c 1 python benchmarks/motion_ablation.py rope-thw --minutes 10
    python benchmarks/motion_ablation.py --plot-only
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "motion"
FIELDS = ["variant", "seed", "minutes", "step", "loss", "plausible", "frame_score", "motion_score", "prefix_score",
          "sample_seconds"]

#: name -> (what it tests, changes to the demo's config; ``model_overrides`` changes the VideoUNet preset)
VARIANTS: dict[str, tuple[str, dict]] = {
    "demo": ("the demo's recipe as it is", {}),
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


def _write_csv(rows: list[dict], path: Path) -> None:
    from spacetime.io.files import atomic_write_csv

    atomic_write_csv(path, rows, FIELDS)


def run_variant(name: str, minutes: float, every: float, samples: int, sample_steps: int, seed: int,
                runs_dir: Path, out_dir: Path) -> list[dict]:
    """Train variant ``name`` for ``minutes`` of training time, scoring samples every ``every`` minutes."""
    from spacetime.data.plausibility import DiskDetector
    from spacetime.diffusion.commands import DEMO_CONFIG
    from spacetime.diffusion.config import TrainConfig
    from spacetime.diffusion.sample import sample_videos
    from spacetime.diffusion.train import load_model, train

    values = {**DEMO_CONFIG, **VARIANTS[name][1], "seed": seed, "time_limit": every}
    cfg = TrainConfig.from_dict(values)
    run_dir = runs_dir / f"{name}-s{seed}"
    if run_dir.exists():
        print(f"{name}: removing the previous run in {run_dir}", flush=True)
        shutil.rmtree(run_dir)
    detector = DiskDetector(size=cfg.size, digit_size=cfg.digit_size)
    csv_path = out_dir / f"{name}-s{seed}.csv"
    rows, trained = [], 0.0
    while trained < 60 * minutes - 1e-6:
        cfg.time_limit = min(every, minutes - trained / 60)
        summary = train(cfg, run_dir / "train", resume=trained > 0, progress=False)
        trained += summary["seconds"]
        model, _ = load_model(run_dir / "train" / "checkpoints")
        start = time.perf_counter()
        videos = sample_videos(model, (cfg.channels, cfg.frames, cfg.size, cfg.size), samples, sampler=cfg.sampler,
                               steps=sample_steps, timesteps=cfg.timesteps, schedule=cfg.schedule,
                               prediction=cfg.prediction, seed=1234, progress=False)
        sample_seconds = time.perf_counter() - start
        row = {"variant": name, "seed": seed, "minutes": round(trained / 60, 3), "step": summary["step"],
               "loss": round(summary["loss"], 5), **{k: round(v, 4) for k, v in scores(videos[:, 0].numpy(),
                                                                                        detector).items()},
               "sample_seconds": round(sample_seconds, 1)}
        rows.append(row)
        _write_csv(rows, csv_path)
        plot(out_dir)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        if not summary["stopped_by_time_limit"]:
            break  # the config's steps are done
    return rows


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
        if rows and set(FIELDS) <= set(rows[0]):
            runs[path.stem] = rows
    if not runs:
        return None
    keys = [("plausible", "plausible videos (spacetime eval)"), ("frame_score", "frames with one training disk"),
            ("motion_score", "motion passes (videos with a disk in every frame)"),
            ("prefix_score", "plausible leading frames / T")]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, (key, title) in zip(axes.flat, keys):
        for name, rows in runs.items():
            ax.plot([float(r["minutes"]) for r in rows], [float(r[key]) for r in rows], marker="o", ms=3, label=name)
        ax.set_title(title, fontsize=10), ax.set_ylim(-0.03, 1.03), ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("training minutes (one core)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("bouncing disks 8x32x32: sample plausibility vs training time")
    fig.tight_layout()
    return save_figure(fig, out_dir / "curves.png")


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
    for name in args.variants:
        run_variant(name, args.minutes, args.every, args.samples, args.sample_steps, args.seed, Path(args.runs),
                    out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
