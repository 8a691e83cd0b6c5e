"""Plausibility and diversity of a `spacetime demo` run against its training minutes, from the checkpoints it kept.

Every ``--every``-th checkpoint of the run (and its last) is sampled as the demo samples (its own
sampler, steps, motion temperature and seed; 32 videos) and scored by ``spacetime eval``'s
scorers against the run's data (plausibility, and the first moves' distance to the data's law); the
minutes are the run's training clock at that step (``train/log.csv``), on the
machine whose fp32 matmul rate the run recorded in ``demo.json`` (the ``matmul_gflops`` column;
empty for runs older than that file). Writes ``<name>.csv`` and ``<name>.png`` to ``--out``
(default ``benchmarks/motion/demo_runs``).

    python benchmarks/demo_curve.py runs/r7f-2x-s0 --every 2 --jobs 2
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the spacetime CLI does (docs/architecture.md)

import argparse
import csv
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def score(path: str, seed: int) -> dict:
    """Sample one checkpoint as ``spacetime sample`` does (its run's settings) and score the videos against the
    run's data, as ``spacetime eval`` does: plausibility and the first moves' distance to the data's law."""
    import tempfile

    import torch

    from spacetime.diffusion.evaluate import evaluate_samples
    from spacetime.diffusion.sample import sample_checkpoint

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = sample_checkpoint(path, tmp, seed=seed, progress=False)["config"]["data"]
        report = evaluate_samples(Path(tmp) / "samples.npy", data=data["data"], digit_size=data["digit_size"],
                                  objects=data["objects"], max_speed=int(data["max_speed"]))
    moves = report["diversity"]["statistics"]["first_move"]
    return {"step": int(Path(path).stem.split("-")[1]), "plausible": report["plausible_fraction"],
            "first_move_tv": round(moves["distance"], 4), "first_move_data_p99": round(moves["data_p99"], 4)}


def checkpoint_minutes(train: Path) -> dict[int, tuple[Path, float]]:
    """Every checkpoint a run kept: its step -> its path and the training minutes at the logged step nearest to it
    (``train/log.csv``)."""
    with open(train / "log.csv") as f:
        clock = {int(r["step"]): float(r["seconds"]) / 60 for r in csv.DictReader(f)}
    found = {int(p.stem.split("-")[1]): p for p in (train / "checkpoints").glob("step-*.safetensors")}
    return {s: (p, clock[min(clock, key=lambda c: abs(c - s))]) for s, p in sorted(found.items())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a spacetime demo output folder (holding train/)")
    p.add_argument("--every", type=int, default=1, help="score every N-th kept checkpoint (default 1), and the last")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: the run's training seed)")
    p.add_argument("--jobs", type=int, default=1, help="checkpoints scored at once, one core each (default 1)")
    p.add_argument("--name", default=None, help="file name stem (default: the run folder's name)")
    p.add_argument("--out", type=Path, default=HERE / "motion" / "demo_runs", help="folder for the CSV and PNG")
    args = p.parse_args(argv)
    if args.every < 1 or args.jobs < 1:
        p.error(f"--every and --jobs must be >= 1; got {args.every} and {args.jobs}")
    train = args.run / "train"
    if not list((train / "checkpoints").glob("step-*.safetensors")) or not (train / "log.csv").is_file():
        p.error(f"{args.run} is not a demo run: it needs train/checkpoints/step-*.safetensors and train/log.csv")
    kept = checkpoint_minutes(train)
    steps = list(kept)
    chosen = steps[args.every - 1::args.every]
    if chosen[-1] != steps[-1]:
        chosen.append(steps[-1])
    seed = args.seed if args.seed is not None else json.loads((train / "config.json").read_text())["seed"]
    record = args.run / "demo.json"
    rate = json.loads(record.read_text())["machine"]["matmul_gflops"] if record.is_file() else ""
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(score, [str(kept[s][0]) for s in chosen], [seed] * len(chosen)))
    for r in rows:
        r["minutes"], r["matmul_gflops"] = round(kept[r["step"]][1], 2), rate
        print(f"step {r['step']:>6}  {r['minutes']:6.2f} min  plausible {r['plausible']:.3f}  first moves "
              f"{r['first_move_tv']:.3f} (data {r['first_move_data_p99']:.3f})", flush=True)
    name = args.name or args.run.name
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "minutes", "plausible", "first_move_tv", "first_move_data_p99",
                                               "matmul_gflops"])
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spacetime.io.files import save_figure

    fig, ax = plt.subplots(figsize=(6.5, 4))
    minutes = [r["minutes"] for r in rows]
    ax.plot(minutes, [r["plausible"] for r in rows], "-o", ms=4, label=f"{name}: plausible fraction")
    ax.plot(minutes, [r["first_move_tv"] for r in rows], "-s", ms=4, color="C1",
            label="first moves: total variation to the data's law")
    ax.plot(minutes, [r["first_move_data_p99"] for r in rows], ":", color="C1",
            label="the data's own (99th percentile, same count)")
    ax.axhline(0.9, color="grey", lw=0.8, ls=":", label="the 90% target")
    ax.set_xlabel("training minutes (2 processes, one per core)"), ax.set_ylabel("fraction of 32 videos / distance")
    ax.set_ylim(-0.03, 1.03), ax.grid(alpha=0.3), ax.legend(fontsize=7)
    ax.set_title(f"spacetime demo ({name}): plausibility and diversity vs training time", fontsize=10)
    fig.tight_layout()
    print(f"wrote {save_figure(fig, args.out / f'{name}.png')} and {args.out / f'{name}.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
