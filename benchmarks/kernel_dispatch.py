"""Where the fused C++ kernel beats the torch path it replaces: the data behind the dispatch rule.

For each shape the kernel (``backend="fused"``) and the path ``backend=None`` takes without it
(``"short"`` for n, m <= 32, else ``"sdpa"``) run forward + backward in turn, ``--rounds`` times,
in one process, so a machine whose speed drifts is seen by both; the medians are compared.
Two layouts: ``contiguous`` ``(b, heads, n, d)`` tensors (spatial, joint and window attention
hand the operator these), and ``temporal``: :class:`spacetime.Temporal` on a ``(1, T, H, W, 4, d)``
clip, whose rows reach the operator a frame apart. The matmul rate at each thread count is
written beside the times. Results: ``benchmarks/kernel_dispatch.md`` (and ``.csv``).

    python benchmarks/kernel_dispatch.py                  # 1 and 2 threads
    python benchmarks/kernel_dispatch.py --threads 2 --rounds 3
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the spacetime CLI does (docs/architecture.md)

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch

from spacetime.measure import matmul_rate
from spacetime.ops import Temporal, attention
from spacetime.ops.attention import SHORT_MAX_LEN
from spacetime.ops.fused_attention import available, build_error

HERE = Path(__file__).resolve().parent
CONTIGUOUS = [(d, n) for d in (8, 16, 32, 64) for n in (16, 32, 64, 128, 256, 512)]
TEMPORAL = [(d, t) for d in (16, 32, 64) for t in (8, 16, 32, 64)]


def _case(layout: str, d: int, n: int):
    """(run(backend), GFLOP of one forward + backward)."""
    if layout == "contiguous":
        seqs = max(1, (1 << 19) // (n * n)) * 4  # about the same work per case
        q, k, v = (torch.randn(seqs // 4, 4, n, d, requires_grad=True) for _ in range(3))
        grad = torch.randn(seqs // 4, 4, n, d)
        return (lambda be: attention(q, k, v, backend=be).backward(grad)), 12 * seqs * n * n * d / 1e9
    hw = 32 if n * d <= 1024 else 16
    x = [torch.randn(1, n, hw, hw, 4, d, requires_grad=True) for _ in range(3)]
    grad = torch.randn(1, n, hw, hw, 4, d)
    pattern = Temporal()
    return (lambda be: pattern(*x, backend=be).backward(grad)), 12 * hw * hw * 4 * n * n * d / 1e9


def measure(layout: str, d: int, n: int, rounds: int) -> dict:
    run, gflop = _case(layout, d, n)
    base = "short" if n <= SHORT_MAX_LEN else "sdpa"
    times = {"fused": [], base: []}
    for r in range(rounds + 1):
        for be, seen in times.items():
            t0 = time.perf_counter()
            run(be)
            if r:  # the first round warms up
                seen.append(time.perf_counter() - t0)
    fused, other = (statistics.median(times[be]) for be in ("fused", base))
    return {"layout": layout, "d": d, "n": n, "fused_ms": round(1e3 * fused, 2), "base": base,
            "base_ms": round(1e3 * other, 2), "ratio": round(fused / other, 2), "gflop": gflop}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts (default 1 2)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per backend (default 5)")
    p.add_argument("--out", default=str(HERE / "kernel_dispatch.md"), help="markdown table (a .csv beside it)")
    args = p.parse_args(argv)
    if not available():
        raise SystemExit(f"the fused kernel is not available here: {build_error()}")
    if args.rounds < 1 or min(args.threads) < 1:
        p.error(f"--rounds and --threads must be >= 1; got {args.rounds}, {args.threads}")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        rate = matmul_rate(2048)
        print(f"{threads} thread(s): fp32 matmul {rate:.1f} GFLOP/s", flush=True)
        for layout, cases in (("contiguous", CONTIGUOUS), ("temporal", TEMPORAL)):
            for d, n in cases:
                row = {"threads": threads, "matmul_gflops": round(rate, 1), **measure(layout, d, n, args.rounds)}
                row["fused_pct"] = round(100 * row.pop("gflop") / (row["fused_ms"] / 1e3) / rate, 1)
                rows.append(row)
                print(f"  {layout:10s} d={d:3d} n={n:4d}: fused {row['fused_ms']:8.2f} ms ({row['fused_pct']:4.1f}% "
                      f"of matmul), {row['base']} {row['base_ms']:8.2f} ms, ratio {row['ratio']:.2f}", flush=True)
    out = Path(args.out)
    with out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    command = " ".join(["python benchmarks/kernel_dispatch.py", *(sys.argv[1:] if argv is None else argv)])
    lines = [f"Command: `{command}`", "",
             ("Forward + backward, fp32; ratio = fused time / the torch path's (< 1: the kernel is faster). "
              "`n` is T for the temporal layout."), "",
             "| threads (matmul GFLOP/s) | layout | d | n | fused ms | % of matmul | torch path | ms | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['threads']} ({r['matmul_gflops']}) | {r['layout']} | {r['d']} | {r['n']} | {r['fused_ms']} "
                     f"| {r['fused_pct']} | {r['base']} | {r['base_ms']} | {r['ratio']} |")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out} and {out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
