"""Plausibility and diversity side by side for each sampling setting of a trained run.

A sharper sampler (``motion_temperature`` below 1) buys plausibility with diversity; this script
samples one checkpoint at every setting with the same noise seed and scores each set with
``spacetime eval``'s scorers (plausibility, and each diversity distance beside the data's own
value at the same count), so the trade can be read off one table.

    python benchmarks/sampling_settings.py runs/demo-s0/train --num 128 --temperatures 0.7 0.85 1.0

writes ``benchmarks/generality/sampling-<name>.csv`` and ``.md`` (``--out`` to change) and the
samples under ``RUN/../settings/``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import csv
import json
import sys
from pathlib import Path

from spacetime.diffusion.evaluate import evaluate_samples
from spacetime.diffusion.sample import sample_checkpoint
from spacetime.measure import matmul_rate

FIELDS = ["setting", "num", "plausible", "first_move_tv", "first_move_data_p99", "first_move_cells", "start_tv",
          "start_data_p99", "count_tv", "count_data_p99", "diverse", "sample_seconds"]


def score(run: Path, temperature: float, num: int, seed: int, out: Path) -> dict:
    """Sample ``num`` videos of ``run`` at ``temperature`` and score them against the run's data."""
    result = sample_checkpoint(run, out, num=num, seed=seed, motion_temperature=temperature, progress=False)
    data = result["config"]["data"]
    report = evaluate_samples(out / "samples.npy", data=data["data"], digit_size=data["digit_size"],
                              objects=data["objects"], max_speed=int(data["max_speed"]))
    stats = report["diversity"]["statistics"]
    row = {"setting": f"motion_temperature {temperature:g}", "num": num,
           "plausible": round(report["plausible_fraction"], 4), "diverse": report["diversity"]["ok"],
           "sample_seconds": result["config"]["seconds"], "first_move_cells": stats["first_move"]["cells"]}
    for name in ("first_move", "start", "count"):
        if name in stats:
            row[f"{name}_tv"] = round(stats[name]["distance"], 4)
            row[f"{name}_data_p99"] = round(stats[name]["data_p99"], 4)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a training run folder (its latest checkpoint) or a checkpoint")
    parser.add_argument("--num", type=int, default=128, help="videos per setting")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 0.85, 1.0])
    parser.add_argument("--seed", type=int, default=1, help="sampling noise seed (the same for every setting)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "generality")
    args = parser.parse_args(argv)
    name = args.run.resolve().parent.name if args.run.name == "train" else args.run.name
    rate = matmul_rate()
    rows = []
    for temperature in args.temperatures:
        rows.append(score(args.run, temperature, args.num, args.seed,
                          args.run.resolve().parent / "settings" / f"t{temperature:g}"))
        print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"sampling-{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# Sampling settings of {name}", "", f"`python benchmarks/sampling_settings.py {' '.join(sys.argv[1:])}` "
             f"(fp32 matmul {rate:.0f} GFLOP/s). Total variation to the data's law; beside it the data's own 99th "
             f"percentile at the same count (a set is diverse when every distance is at most that).", "",
             "| setting | plausible | first move (cells) | start | count | diverse | sampling |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        count = f"{r['count_tv']:.3f} / {r['count_data_p99']:.3f}" if "count_tv" in r else "-"
        lines.append(f"| {r['setting']} | {r['plausible']:.1%} | "
                     f"{r['first_move_tv']:.3f} / {r['first_move_data_p99']:.3f} "
                     f"({r['first_move_cells']}) | {r['start_tv']:.3f} / {r['start_data_p99']:.3f} | {count} | "
                     f"{'yes' if r['diverse'] else 'no'} | {r['sample_seconds']:.0f} s |")
    (args.out / f"sampling-{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
