"""Performance of the attention operator: ``math`` vs ``sdpa`` (and any other registered backend).

Prints, for spatial (N=1024), temporal (T=16 over 2048 pixels), 3D window and joint shapes, the
forward and forward+backward time, GFLOP/s and peak memory of every backend, next to the
machine's measured fp32 matmul rate. The attention alone: the pattern on ``(b, t, h, w, heads, d)``
q/k/v, no projections (``spacetime bench --level op`` measures the same way, over a sweep).

    python benchmarks/attention.py                       # print the table
    python benchmarks/attention.py --results benchmarks/RESULTS.md   # also update its block

Timing, the matmul rate and peak memory come from ``spacetime.bench`` (one place for all three).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the spacetime CLI does (docs/architecture.md)

import argparse
import sys

import torch

from spacetime.bench.report import check_block, replace_block
from spacetime.bench.sweep import BenchConfig, run_sweep, write_csv
from spacetime.measure import matmul_rate
from spacetime.ops.attention import available_backends

#: (label, pattern name, batch, (t, h, w), head_dim, options) with heads=4: the shapes of issue 19
CASES = [
    ("spatial N=1024", "spatial", 2, (8, 32, 32), 32, {}),
    ("spatial N=1024 d=8", "spatial", 2, (8, 32, 32), 8, {}),
    ("temporal T=8 x 2048 px", "temporal", 2, (8, 32, 32), 32, {}),
    ("temporal T=16 x 2048 px", "temporal", 2, (16, 32, 32), 32, {}),
    ("temporal T=32 x 2048 px", "temporal", 2, (32, 32, 32), 32, {}),
    ("temporal T=16 x 2048 px d=64", "temporal", 2, (16, 32, 32), 64, {}),
    ("window (2,8,8)", "window", 2, (16, 32, 32), 32, {"window": (2, 8, 8)}),
    ("window (4,8,8)", "window", 2, (16, 32, 32), 32, {"window": (4, 8, 8)}),
    ("joint N=4096", "joint", 1, (4, 32, 32), 32, {}),
]

def _fmt(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=list(available_backends()),
                        help="backends by name (every registered one by default)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case (median reported)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--head-dim", type=int, default=None, help="channels per head (default: each case's own)")
    parser.add_argument("--cases", nargs="+", default=None, metavar="WORD",
                        help="only the cases whose label contains one of these words (e.g. temporal window)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--memory-budget-gb", type=float, default=4.0, help="skip cases predicted to need more")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--csv", default=None, help="also write the rows to this CSV")
    parser.add_argument("--results", default=None, metavar="FILE.md",
                        help="rewrite the <!-- attention:begin/end --> block of this markdown file with the table")
    args = parser.parse_args(argv)
    if args.results:
        try:  # fail now, not after the measurements
            check_block(args.results, "attention")
        except ValueError as exc:
            parser.error(f"--results: {exc}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rate = matmul_rate(2048)
    rows = []
    for label, pattern, batch, shape, head_dim, options in CASES:
        if args.cases and not any(word in label for word in args.cases):
            continue
        head_dim = args.head_dim or head_dim
        cfg = BenchConfig(shapes=[shape], patterns=[pattern], backends=args.backends, impls=["op"], batch=batch,
                          dim=args.heads * head_dim, heads=args.heads, repeats=args.repeats, options=options,
                          memory_budget=int(args.memory_budget_gb * 2**30), max_seconds=30.0,
                          measure_memory=not args.no_memory, threads=args.threads)
        for row in run_sweep(cfg, log=lambda msg: print(msg, file=sys.stderr), matmul_gflops=rate):
            rows.append({**row, "label": label})
    lines = [
        f"fp32 matmul rate: {rate:.1f} GFLOP/s (2048x2048 `torch.mm`, {torch.get_num_threads()} threads); "
        f"heads={args.heads}, head_dim 32 unless the case says, fp32, attention only (no projections); "
        "",
        "",
        "| case | B x T x H x W | backend | mode | GFLOP | ms | GFLOP/s | % of matmul | peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms = r["time_ms"] if r["status"] == "ok" else float("nan")
        lines.append(
            f"| {r['label']} | {r['b']}x{r['t']}x{r['h']}x{r['w']} | {r['backend']} | {r['mode']} | {r['gflop']:.3g} "
            f"| {_fmt(ms, '.2f')} | {_fmt(r['gflops'], '.1f')} | {_fmt(100 * r['frac_matmul'], '.0f')} "
            f"| {_fmt(r['mem_mb'], '.1f')} |" + ("" if r["status"] == "ok" else f" {r['status']}")
        )
    table = "\n".join(lines)
    print(table)
    if args.csv:
        write_csv(rows, args.csv)
    if args.results:
        replace_block(args.results, "attention", "Command: `python benchmarks/attention.py`\n\n" + table)
        print(f"updated the generated block of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
