"""Training steps the demo's recipe gets in a fixed time, with the fused attention kernel and without.

Each run is ``spacetime demo``'s training (``DEMO_CONFIG``: the patch4 U-Net, 2 single-thread
processes, batch 16) for ``--minutes`` of training time, in a fresh subprocess, with the kernel on
(the default dispatch) or off (``SPACETIME_NO_KERNEL=1``: the torch backends the dispatch used before
the kernel). ``--rounds`` alternates them (on, off, on, off, ...) so a machine whose speed drifts is
seen by both, and the fp32 matmul rate is measured before every run and written beside its count.
The demo trains for 13 minutes; the ratio of steps per minute carries over to it. Results go to
``benchmarks/demo_steps.json``.

    python benchmarks/demo_steps.py                          # 3 rounds of 2 minutes each
    python benchmarks/demo_steps.py --minutes 0.5 --rounds 1 # a quick look
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the spacetime CLI does (docs/architecture.md)

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(minutes: float) -> dict:
    from spacetime.diffusion.config import DEMO_CONFIG, TrainConfig
    from spacetime.diffusion.train import train_processes
    from spacetime.ops import fused_attention

    cfg = TrainConfig.from_dict({**DEMO_CONFIG, "time_limit": minutes, "checkpoint_every": 10**9})
    with tempfile.TemporaryDirectory() as out:
        result = train_processes(cfg, out, procs=2, progress=False)
    return {"steps": result["step"], "train_seconds": result["train_seconds"],
            "kernel_loaded": fused_attention.available()}


def matmul_rate() -> float:
    """This machine's fp32 matmul rate now (2 threads, 2048^2), GFLOP/s."""
    import torch

    from spacetime.measure import matmul_rate as rate

    torch.set_num_threads(2)
    return rate(2048)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=2.0, help="training minutes per run (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="on/off pairs, alternating (default 3)")
    p.add_argument("--out", default=str(HERE / "demo_steps.json"), help="where the results go")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.rounds < 1:
        p.error(f"--minutes must be > 0 and --rounds >= 1; got {args.minutes}, {args.rounds}")
    if args.worker:
        print(json.dumps(worker(args.minutes)))
        return 0
    runs = []
    for r in range(args.rounds):
        for kernel in ("on", "off"):
            env = {**os.environ, "SPACETIME_NO_KERNEL": "0" if kernel == "on" else "1"}
            rate = matmul_rate()
            done = subprocess.run([sys.executable, __file__, "--worker", "--minutes", str(args.minutes)], env=env,
                                  check=True, capture_output=True, text=True)
            run = {"round": r, "kernel": kernel, "matmul_gflops": round(rate, 1),
                   **json.loads(done.stdout.splitlines()[-1])}
            run["steps_per_min"] = round(60 * run["steps"] / run["train_seconds"], 1)
            runs.append(run)
            print(f"round {r} kernel {kernel}: {run['steps']} steps in {run['train_seconds']:.0f} s "
                  f"({run['steps_per_min']} /min; matmul {rate:.1f} GFLOP/s)", flush=True)
    on = [x["steps_per_min"] for x in runs if x["kernel"] == "on"]
    off = [x["steps_per_min"] for x in runs if x["kernel"] == "off"]
    ratio = statistics.median(on) / statistics.median(off)
    summary = {"median_steps_per_min_on": round(statistics.median(on), 1),
               "median_steps_per_min_off": round(statistics.median(off), 1),
               "ratio_on_over_off": round(ratio, 3), "in_13_minutes_on": round(13 * statistics.median(on)),
               "in_13_minutes_off": round(13 * statistics.median(off))}
    print(f"median steps/min: kernel on {summary['median_steps_per_min_on']}, off "
          f"{summary['median_steps_per_min_off']} ({ratio:.3f}x); over 13 minutes: {summary['in_13_minutes_on']} "
          f"against {summary['in_13_minutes_off']}")
    Path(args.out).write_text(json.dumps({"command": "python benchmarks/" + " ".join([Path(__file__).name] + (
        argv if argv is not None else sys.argv[1:])), "machine": platform.processor() or platform.machine(),
        "minutes": args.minutes, "runs": runs, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
