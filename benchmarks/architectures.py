"""Text 004's comparison: the factorized video U-Net against a 3D-convolution U-Net of similar size, and
whole-video models against next-frame ones; same data, same minutes, plausibility and diversity against minutes.

Every variant is the demo's recipe (``DEMO_CONFIG``: 1 disk at up to 2 px/frame, 8x32x32, batch 16, the
learning rate decaying over the run's minutes) with only the network, or the generative task, changed:

    factorized-nf   next-frame (the demo's task: each frame made from the two before it, a motion head), the
                    U-Net's attention factorized: spatial then temporal at both levels ((2+1)-D convs)
    conv3d-nf       next-frame, no attention: full 3x3x3 convolutions, channels 32/24 (about as many
                    parameters as factorized-nf)
    joint-nf        the demo's own network (joint space-time attention over the 8x8 grid), for reference
    factorized-vid  whole-video: all 8 frames denoised together (v-prediction, no motion head, no blends)
    conv3d-vid      whole-video with the 3D-conv network

Each variant trains for ``--minutes`` on 2 processes (one per core), keeping a checkpoint every 250 steps;
then the checkpoint nearest each ``--every`` minutes is sampled as the demo samples (DDPM 50 steps, its
motion temperature; 32 videos, sampling seed = the run's seed) and scored by ``spacetime eval``'s scorers:
plausibility, and the first moves' total variation to the data's law beside the data's own 99th percentile.
Writes ``<out>/architectures.csv`` and ``.png`` (one row per variant, seed and scored checkpoint; earlier rows of
other variants and seeds are kept), runs under ``--runs``.

    python benchmarks/architectures.py --minutes 8 --every 2 --seed 0
    python benchmarks/architectures.py --plot-only
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the spacetime CLI does (docs/architecture.md)

import argparse
import csv
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from demo_curve import checkpoint_minutes, score  # noqa: E402  (shared with the demo's curves)

FIELDS = ["variant", "seed", "params", "step", "minutes", "plausible", "first_move_tv", "first_move_data_p99",
          "steps_per_minute", "matmul_gflops"]

#: the whole-video task: all frames noised together, v-prediction, nothing next-frame specific
WHOLE_VIDEO = {"context_frames": 0, "prediction": "v_prediction", "clip_ends": "uniform", "copy_blend": 0.0,
               "move_blend": 0.0, "motion_temperature": 1.0}
FACTORIZED = {"channels": [32, 32], "attention": ["factorized", "factorized"]}
CONV3D = {"channels": [32, 24], "attention": [None, None], "conv": "3d"}
HEAD = {"motion_head": "data", "motion_fill": "data"}
#: the demo's next-frame training and sampling when this benchmark ran, written out so that it keeps measuring that
NEXT_FRAME = {"clip_ends": "first", "copy_blend": 0.5, "move_blend": 0.25, "motion_temperature": 0.7}

#: name -> (what it is, changes to DEMO_CONFIG)
VARIANTS = {
    "factorized-nf": ("next-frame, factorized space/time attention",
                      {**NEXT_FRAME, "model_overrides": {**FACTORIZED, **HEAD}}),
    "conv3d-nf": ("next-frame, 3x3x3 convolutions, no attention",
                  {**NEXT_FRAME, "model_overrides": {**CONV3D, **HEAD}}),
    "joint-nf": ("next-frame, joint space-time attention (the demo's network)", NEXT_FRAME),
    "factorized-vid": ("whole video, factorized space/time attention",
                       {**WHOLE_VIDEO, "model_overrides": FACTORIZED}),
    "conv3d-vid": ("whole video, 3x3x3 convolutions, no attention", {**WHOLE_VIDEO, "model_overrides": CONV3D}),
}


def config(name: str, minutes: float, seed: int):
    """The variant's TrainConfig: the demo's recipe with the variant's changes, ``minutes`` of training."""
    from spacetime.diffusion.config import DEMO_CONFIG, TrainConfig

    return TrainConfig.from_dict({**DEMO_CONFIG, **VARIANTS[name][1], "time_limit": minutes, "seed": seed,
                                  "checkpoint_every": 250})


def train_variant(name: str, minutes: float, seed: int, runs: Path) -> Path:
    """Train one variant from scratch on 2 processes; returns its run folder (``train/`` inside)."""
    from spacetime.diffusion.train import train_processes

    run = runs / f"{name}-s{seed}"
    if run.exists():
        print(f"{name}: removing the previous run in {run}", flush=True)
        shutil.rmtree(run)
    summary = train_processes(config(name, minutes, seed), run / "train", procs=2, progress=False)
    print(f"{name}: {summary['step']} steps in {summary['train_seconds'] / 60:.1f} training minutes", flush=True)
    return run


def chosen_checkpoints(train: Path, every: float) -> list[tuple[Path, float]]:
    """The checkpoint nearest each multiple of ``every`` training minutes (and the last), with its minutes."""
    kept = checkpoint_minutes(train)
    last = max(kept)
    picks, mark = [], every
    while mark < kept[last][1] - 0.25 * every:
        step = min(kept, key=lambda s: abs(kept[s][1] - mark))
        if step not in picks:
            picks.append(step)
        mark += every
    if last not in picks:
        picks.append(last)
    return [kept[s] for s in picks]


def score_variant(name: str, seed: int, run: Path, every: float, rate: float) -> list[dict]:
    """Sample and score the chosen checkpoints of one run, two at a time (one per core)."""
    from spacetime.diffusion.train import load_model

    picks = chosen_checkpoints(run / "train", every)
    with ProcessPoolExecutor(2) as pool:
        scored = list(pool.map(score, [str(p) for p, _ in picks], [seed] * len(picks)))
    model, _ = load_model(picks[-1][0])
    params = sum(p.numel() for p in model.parameters())
    rows = []
    for (_, minutes), found in zip(picks, scored):
        rows.append({"variant": name, "seed": seed, "params": params, "step": found["step"],
                     "minutes": round(minutes, 2),
                     "plausible": found["plausible"], "first_move_tv": found["first_move_tv"],
                     "first_move_data_p99": found["first_move_data_p99"],
                     "steps_per_minute": round(found["step"] / minutes, 1) if minutes else "", "matmul_gflops": rate})
        print(f"{name} s{seed}: step {found['step']:>6} {minutes:6.2f} min  plausible {found['plausible']:.3f}  "
              f"first moves TV {found['first_move_tv']:.3f} (data p99 {found['first_move_data_p99']:.3f})", flush=True)
    return rows


def merge(path: Path, rows: list[dict]) -> list[dict]:
    """The CSV's rows with those of ``rows``' variants and seeds replaced by ``rows``."""
    kept = []
    if path.is_file():
        with open(path) as f:
            new = {(r["variant"], str(r["seed"])) for r in rows}
            kept = [r for r in csv.DictReader(f) if (r["variant"], r["seed"]) not in new]
    return kept + rows


def plot(rows: list[dict], path: Path) -> Path:
    """Plausibility and first-move distance against training minutes, one line per variant and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spacetime.io.files import save_figure

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    runs = sorted({(r["variant"], str(r["seed"])) for r in rows}, key=lambda k: (list(VARIANTS).index(k[0]), k[1]))
    for i, (name, seed) in enumerate(runs):
        mine = sorted((r for r in rows if (r["variant"], str(r["seed"])) == (name, seed)),
                      key=lambda r: float(r["minutes"]))
        x = [float(r["minutes"]) for r in mine]
        style = dict(color=f"C{list(VARIANTS).index(name)}", marker="o", ms=3, ls="-" if name.endswith("nf") else "--")
        left.plot(x, [float(r["plausible"]) for r in mine], label=f"{name} s{seed}", **style)
        right.plot(x, [float(r["first_move_tv"]) for r in mine], label=f"{name} s{seed}", **style)
    p99 = [float(r["first_move_data_p99"]) for r in rows]
    if p99:
        right.axhline(max(p99), color="grey", ls=":", lw=1, label="the data's own, 99th pct (32 draws)")
    left.set_ylabel("plausible fraction of 32 videos"), right.set_ylabel("first moves: TV to the data's law")
    for ax in (left, right):
        ax.set_xlabel("training minutes (2 processes)"), ax.grid(alpha=0.3)
        ax.set_ylim(-0.03, 1.03)
    left.legend(fontsize=7)
    rate = {r["matmul_gflops"] for r in rows}
    fig.suptitle(f"factorized vs 3D-conv U-Net, next-frame (solid) vs whole video (dashed); demo recipe, "
                 f"fp32 matmul {', '.join(sorted(rate))} GFLOP/s", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=[n for n in VARIANTS if n != "joint-nf"], choices=list(VARIANTS),
                   help="which to train (default: all but joint-nf, the demo's own network)")
    p.add_argument("--minutes", type=float, default=8.0, help="training minutes per variant (default 8)")
    p.add_argument("--every", type=float, default=2.0, help="score a checkpoint every this many minutes (default 2)")
    p.add_argument("--seed", type=int, default=0, help="training and sampling seed (default 0)")
    p.add_argument("--runs", type=Path, default=Path("runs/architectures"), help="where the runs go")
    p.add_argument("--out", type=Path, default=HERE / "architectures", help="folder for the CSV and PNG")
    p.add_argument("--plot-only", action="store_true", help="redraw the figure from the CSV")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.every <= 0:
        p.error(f"--minutes and --every must be > 0; got {args.minutes} and {args.every}")
    table, figure = args.out / "architectures.csv", args.out / "architectures.png"
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        from spacetime.io.files import atomic_write_csv
        from spacetime.measure import matmul_rate

        rate = round(matmul_rate(), 1)
        print(f"this machine: fp32 matmul {rate} GFLOP/s", flush=True)
        for name in args.variants:
            run = train_variant(name, args.minutes, args.seed, args.runs)
            atomic_write_csv(table, merge(table, score_variant(name, args.seed, run, args.every, rate)), FIELDS)
    if not table.is_file():
        p.error(f"{table}: no results yet (run without --plot-only first)")
    with open(table) as f:
        print(f"wrote {plot(list(csv.DictReader(f)), figure)} and {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
