"""How a next-frame model holds up when rolled out past the length it trained on.

Samples ``--num`` videos of ``--factor`` times the run's trained length from its latest checkpoint (the
run's own sampler and temperature unless given), scores them with ``spacetime eval``'s scorer, and scores
the same videos cut to the trained length (a rollout's first frames are the trained-length sample of the
same seed: ``tests/diffusion/test_rollout.py``). The ratio of the two plausible shares is the issue's
measure: a rollout to 3x the length should keep at least 90% of the plausibility at the trained length.

    python benchmarks/rollout.py runs/demo-s0/train --factor 3 --num 64 --seed 1

writes the videos under ``RUN/../roll<frames>/`` and adds (or replaces) the run's row of
``benchmarks/generality/rollout.csv``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from spacetime.checks import int_at_least
from spacetime.diffusion.config import TrainConfig
from spacetime.diffusion.evaluate import evaluate_samples
from spacetime.diffusion.sample import sample_checkpoint
from spacetime.diffusion.train import load_model
from spacetime.io.checkpoint import latest_checkpoint
from spacetime.measure import matmul_rate

FIELDS = ["run", "num", "seed", "motion_temperature", "trained_frames", "frames", "plausible_trained",
          "plausible_rollout", "ratio", "matmul_gflops", "sample_seconds"]


def rollout(run: Path, factor: int, num: int, seed: int, temperature: float | None) -> dict:
    """Sample ``run`` at ``factor`` times its trained length; score the videos whole and cut to that length."""
    _, meta = load_model(latest_checkpoint(run)[0])
    cfg = TrainConfig.from_dict(meta["train_config"])
    if not cfg.context_frames:
        raise SystemExit(f"{run} is a whole-video model (context_frames=0): only a next-frame model rolls out")
    frames = factor * cfg.frames
    out = run.resolve().parent / f"roll{frames}"
    result = sample_checkpoint(run, out, num=num, seed=seed, frames=frames, motion_temperature=temperature,
                               progress=False)
    cut = out / f"first{cfg.frames}"
    cut.mkdir(exist_ok=True)
    np.save(cut / "samples.npy", result["videos"][:, :, :cfg.frames].numpy())
    settings = {"data": cfg.data, "digit_size": cfg.object_size, "objects": cfg.objects,
                "max_speed": int(cfg.max_speed)}
    whole = evaluate_samples(out / "samples.npy", **settings)["plausible_fraction"]
    trained = evaluate_samples(cut / "samples.npy", **settings)["plausible_fraction"]
    return {"run": run.resolve().parent.name if run.name == "train" else run.name, "num": num, "seed": seed,
            "motion_temperature": result["config"]["motion_temperature"], "trained_frames": cfg.frames,
            "frames": frames, "plausible_trained": round(trained, 4), "plausible_rollout": round(whole, 4),
            "ratio": round(whole / trained, 4) if trained else float("nan"),
            "sample_seconds": result["config"]["seconds"]}


def save_row(row: dict, path: Path) -> None:
    """Add ``row`` to the CSV at ``path``, replacing an earlier row of the same run and seed."""
    rows = []
    if path.is_file():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if (r["run"], r["seed"]) != (row["run"], str(row["seed"]))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows + [row])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a next-frame run folder (its latest checkpoint) or a checkpoint")
    parser.add_argument("--factor", type=int, default=3, help="the rollout's length in trained lengths")
    parser.add_argument("--num", type=int, default=64, help="videos to sample")
    parser.add_argument("--seed", type=int, default=1, help="sampling noise seed")
    parser.add_argument("--motion-temperature", type=float, default=None, help="default: the run's own")
    parser.add_argument("--csv", type=Path, default=Path(__file__).parent / "generality" / "rollout.csv")
    args = parser.parse_args(argv)
    int_at_least("--factor", args.factor, 2)
    int_at_least("--num", args.num, 1)
    rate = matmul_rate()
    row = {**rollout(args.run, args.factor, args.num, args.seed, args.motion_temperature),
           "matmul_gflops": round(rate, 1)}
    save_row(row, args.csv)
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
