"""Accuracy of the four VideoTransformer variants on the motion task, and of `divided` at twice the frames.

    python benchmarks/classify_variants.py            # the table in benchmarks/classify.md (+ .csv)
    python benchmarks/classify_variants.py --quick    # a smoke run (a few steps each, not a result)

Each run is `spacetime classify train` with the settings below (fresh synthetic clips every step,
1024 fixed test clips); the `divided` runs are then evaluated on 16-frame clips of the same
motion (`spacetime classify eval RUN --frames 16`). Wall times depend on the machine and its load,
which the table records (the fp32 matmul rate measured at the start, the 1-minute load average
before and after each run).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the spacetime CLI does (docs/architecture.md)

import argparse
import csv
import platform
import sys
import time
from pathlib import Path

import torch

from spacetime.classify import ClassifyConfig, evaluate_checkpoint, train
from spacetime.io.files import atomic_write_csv, atomic_write_text
from spacetime.measure import matmul_rate

#: (run name, config overrides, evaluate at 16 frames)
RUNS = [
    ("divided", {"variant": "divided"}, True),
    ("joint", {"variant": "joint"}, False),
    ("factorized_encoder", {"variant": "factorized_encoder"}, False),
    ("space_only", {"variant": "space_only"}, False),
    ("divided-sinusoidal", {"variant": "divided", "time_encoding": "sinusoidal"}, True),
    ("divided-learned", {"variant": "divided", "time_encoding": "learned"}, True),
]
FIELDS = ["run", "variant", "time_encoding", "parameters", "steps", "train_seconds", "load_before", "load_after",
          "test_acc_T8", "test_acc_T16"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks", help="folder for classify.md and classify.csv")
    parser.add_argument("--runs", default="runs/classify_variants", help="folder for the training runs")
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps per run")
    parser.add_argument("--time-limit", type=float, default=5.0, help="minutes per run at most")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--only", nargs="*", default=None, help="run names to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="a few steps per run, to check the script")
    parser.add_argument("--table-only", action="store_true", help="re-render classify.md from classify.csv (no training)")
    args = parser.parse_args(argv)
    if args.table_only:
        with (Path(args.out) / "classify.csv").open() as f:
            rows = [{k: (float(v) if k.startswith(("test_acc", "load", "train_s")) and v != "" else v) for k, v in r.items()}
                    for r in csv.DictReader(f)]
        for r in rows:
            r["parameters"], r["steps"] = int(r["parameters"]), int(r["steps"])
        atomic_write_text(Path(args.out) / "classify.md", _markdown(rows, args, "python benchmarks/classify_variants.py"))
        return 0
    torch.set_num_threads(args.threads)
    args.matmul_gflops = round(matmul_rate(), 1)
    steps = 4 if args.quick else args.steps
    rows = []
    for name, overrides, long_eval in RUNS:
        if args.only and name not in args.only:
            continue
        cfg = ClassifyConfig(**overrides, steps=steps, eval_every=max(1, steps // 6), time_limit=args.time_limit,
                             test_size=64 if args.quick else 1024)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        summary = train(cfg, Path(args.runs) / name)
        wall = time.perf_counter() - t0
        row = {"run": name, "variant": cfg.variant, "time_encoding": summary["time_encoding"],
               "parameters": summary["parameters"], "steps": summary["step"],
               "train_seconds": round(summary["train_seconds"], 1), "load_before": round(load_before, 2),
               "load_after": round(os.getloadavg()[0], 2), "test_acc_T8": round(summary["test_accuracy"], 4),
               "test_acc_T16": ""}
        if long_eval:
            row["test_acc_T16"] = round(evaluate_checkpoint(Path(args.runs) / name, frames=16)["accuracy"], 4)
        rows.append(row)
        print(f"{name}: {row['test_acc_T8']:.4f} at T=8, {row['test_acc_T16'] or '-'} at T=16, "
              f"{row['steps']} steps in {row['train_seconds']} s (wall {wall:.0f} s, load {load_before:.1f})", flush=True)
    if args.quick:
        print("quick run: nothing written")
        return 0
    out = Path(args.out)
    atomic_write_csv(out / "classify.csv", rows, FIELDS)
    cmd = "python benchmarks/classify_variants.py" + "".join(f" {a}" for a in sys.argv[1:])
    atomic_write_text(out / "classify.md", _markdown(rows, args, cmd))
    print(f"wrote {out / 'classify.md'} and {out / 'classify.csv'}")
    return 0


def _markdown(rows, args, cmd: str) -> str:
    lines = [
        "# Video classification: which attention sees motion",
        "",
        f"Made by `{cmd}` ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {args.threads} threads, fp32 matmul "
        f"{getattr(args, 'matmul_gflops', 'not recorded')} GFLOP/s).",
        "",
        "Task: `spacetime.data.motion_task.MotionTask`: is the disk moving left or right? Any single frame, and the",
        "frames as an unordered set, look the same for both classes, so chance is 50%. Model: the `micro` preset",
        "(dim 64, 4 blocks, 4 heads), 32x32 grey frames, tubelets (1, 8, 8), sinusoidal space encoding, CLS",
        f"read-out, AdamW lr 2e-3 with warm-up and cosine decay, batch 32, at most {args.steps} steps and",
        f"{args.time_limit:g} minutes per run, fresh clips every step, 1024 test clips. `T=16`: the model trained",
        "on 8 frames, tested on 16-frame clips of the same motion.",
        "`load` is the 1-minute load average before/after the run (the machine was shared).",
        "",
        "| run | time encoding | params | steps | train s | load | test acc T=8 | test acc T=16 |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        t16 = f"{100 * r['test_acc_T16']:.1f}%" if r["test_acc_T16"] != "" else "-"
        lines.append(f"| {r['run']} | {r['time_encoding']} | {r['parameters']:,} | {r['steps']} | {r['train_seconds']} "
                     f"| {r['load_before']}/{r['load_after']} | {100 * r['test_acc_T8']:.1f}% | {t16} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
