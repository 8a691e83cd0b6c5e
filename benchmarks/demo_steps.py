"""Training steps the demo's recipe gets in a fixed time: this tree against an earlier revision, or with the
fused attention kernel against without it.

Each run is ``spacetime demo``'s training (``DEMO_CONFIG``: the patch4 U-Net, 2 single-thread
processes, batch 16) for ``--minutes`` of training time, in a fresh subprocess. The two sides:

* ``--baseline REV``: this working tree against the package as it was at git revision ``REV`` (checked out
  into a temporary folder by ``git archive`` and put first on ``PYTHONPATH``); the same recipe, the code
  that runs it changed;
* without it: this tree with the kernel on (the default dispatch) and off (``SPACETIME_NO_KERNEL=1``: the
  torch backends the dispatch used before the kernel).

``--rounds`` alternates the sides (A, B, A, B, ...) so a machine whose speed drifts is seen by both, and the
fp32 matmul rate is measured before every run and written beside its count. The demo trains for 13 minutes;
the ratio of steps per minute carries over to it. Results go to ``benchmarks/demo_steps.json``
(``demo_steps_baseline.json`` with ``--baseline``).

    python benchmarks/demo_steps.py --baseline fbfa5d4 --minutes 2 --rounds 2
    python benchmarks/demo_steps.py                          # kernel on/off, 3 rounds of 2 minutes each
    python benchmarks/demo_steps.py --minutes 0.5 --rounds 1 # a quick look
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the spacetime CLI does (docs/architecture.md)

import argparse
import contextlib
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(minutes: float) -> dict:
    import spacetime
    from spacetime.diffusion.config import DEMO_CONFIG, TrainConfig
    from spacetime.diffusion.train import train_processes
    from spacetime.ops import fused_attention

    cfg = TrainConfig.from_dict({**DEMO_CONFIG, "time_limit": minutes, "checkpoint_every": 10**9})
    with tempfile.TemporaryDirectory() as out:
        result = train_processes(cfg, out, procs=2, progress=False)
    return {"steps": result["step"], "train_seconds": result["train_seconds"],
            "kernel_loaded": fused_attention.available(), "package": str(Path(spacetime.__file__).parent)}


def matmul_rate() -> float:
    """This machine's fp32 matmul rate now (2 threads, 2048^2), GFLOP/s."""
    import torch

    from spacetime.measure import matmul_rate as rate

    torch.set_num_threads(2)
    return rate(2048)


@contextlib.contextmanager
def sides(baseline: str | None):
    """``{name: environment}`` of the two sides: this tree and ``baseline``'s package, or kernel on and off."""
    if baseline is None:
        yield {"kernel on": {**os.environ, "SPACETIME_NO_KERNEL": "0"},
               "kernel off": {**os.environ, "SPACETIME_NO_KERNEL": "1"}}
        return
    root = HERE.parent
    rev = subprocess.run(["git", "rev-parse", "--short", baseline], cwd=root, capture_output=True, text=True,
                         check=False)
    if rev.returncode != 0:
        raise SystemExit(f"--baseline must name a git revision of this repository; got {baseline!r} "
                         f"({rev.stderr.strip()})")
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(["git", "archive", rev.stdout.strip(), "src"], cwd=root, capture_output=True,
                                 check=True)
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        yield {"this tree": dict(os.environ),
               rev.stdout.strip(): {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(tree) / "src"),
                                                                                os.environ.get("PYTHONPATH", "")])}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=2.0, help="training minutes per run (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="pairs of runs, the sides alternating (default 3)")
    p.add_argument("--baseline", metavar="REV", help="compare this tree with the package at this git revision "
                                                     "(default: compare the kernel on and off)")
    p.add_argument("--out", help="where the results go (default: benchmarks/demo_steps.json, with --baseline "
                                 "benchmarks/demo_steps_baseline.json)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.rounds < 1:
        p.error(f"--minutes must be > 0 and --rounds >= 1; got {args.minutes}, {args.rounds}")
    if args.worker:
        print(json.dumps(worker(args.minutes)))
        return 0
    out = Path(args.out) if args.out else HERE / ("demo_steps_baseline.json" if args.baseline else "demo_steps.json")
    runs = []
    with sides(args.baseline) as envs:
        for r in range(args.rounds):
            for side, env in envs.items():
                rate = matmul_rate()
                done = subprocess.run([sys.executable, __file__, "--worker", "--minutes", str(args.minutes)],
                                      env=env, check=True, capture_output=True, text=True)
                run = {"round": r, "side": side, "matmul_gflops": round(rate, 1),
                       **json.loads(done.stdout.splitlines()[-1])}
                run["steps_per_min"] = round(60 * run["steps"] / run["train_seconds"], 1)
                runs.append(run)
                print(f"round {r} {side}: {run['steps']} steps in {run['train_seconds']:.0f} s "
                      f"({run['steps_per_min']} /min; matmul {rate:.1f} GFLOP/s)", flush=True)
        names = list(envs)
    medians = {side: statistics.median(x["steps_per_min"] for x in runs if x["side"] == side) for side in names}
    first, second = names
    summary = {"median_steps_per_min": medians, "ratio": round(medians[first] / medians[second], 3),
               "ratio_is": f"{first} over {second}", "in_13_minutes": {s: round(13 * v) for s, v in medians.items()}}
    print(f"median steps/min: {first} {medians[first]}, {second} {medians[second]} ({summary['ratio']:.3f}x); "
          f"over 13 minutes: {summary['in_13_minutes'][first]} against {summary['in_13_minutes'][second]}")
    out.write_text(json.dumps({"command": "python benchmarks/" + " ".join([Path(__file__).name] + (
        argv if argv is not None else sys.argv[1:])), "machine": platform.processor() or platform.machine(),
        "minutes": args.minutes, "runs": runs, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
