"""Temporal attention over short sequences on CPU: which exact formulation is fastest?

Times self-attention of ``(sequences, heads, T, d)`` fp32 tensors (the shape temporal
attention gives: one sequence per pixel) forward and forward + backward, for every
formulation below, after checking that each one equals ``math`` within 1e-5 (output and
the gradients of q, k, v). FLOPs are counted as ``4 * T * T * d`` per (sequence, head)
forward (``q k^T`` and ``p v``) and three times that for forward + backward.

Formulations:
    math      explicit fp32 softmax(q k^T) v, the reference (``backend="math"``)
    sdpa      ``F.scaled_dot_product_attention`` (``backend="sdpa"``)
    short     the chunked kernel of ``spacetime.ops.short_attention`` (``backend="short"``)
    blockG    G sequences packed into one (G*T)^2 product with a block-diagonal mask
              (bigger GEMMs, G times the FLOPs; only the useful FLOPs are counted)

Prints a table (ms, GFLOP/s, % of the fp32 matmul rate measured first) and writes
``benchmarks/temporal_attention.csv``. ``--micro`` also prints the two kernel facts the
``short`` design rests on (exp vs exp2 on masked logits, amax vs a maximum tree).

Single-core comparison, as in ``temporal_attention.md``::

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/temporal_attention.py --clock cpu --micro
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
from tqdm import tqdm

from spacetime.ops import attention

HERE = Path(__file__).resolve().parent


def timer(clock: str):
    return time.process_time if clock == "cpu" else time.perf_counter


def measure(fn, clock: str, min_time: float) -> float:
    """Median seconds of ``fn()`` over repeats filling about ``min_time`` (after one warm-up)."""
    now = timer(clock)
    fn()
    start = now()
    fn()
    once = max(now() - start, 1e-6)
    times = []
    for _ in range(max(5, int(min_time / once))):
        start = now()
        fn()
        times.append(now() - start)
    return statistics.median(times)


def matmul_rate(clock: str, min_time: float, size: int = 1024) -> float:
    """fp32 GFLOP/s of one ``size x size`` matmul (the 100% of the table)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / measure(lambda: torch.mm(a, b), clock, min_time) / 1e9


def block_diagonal(group: int):
    """Formulation: ``group`` sequences per GEMM, kept apart by a block-diagonal mask."""

    def run(q, k, v):
        s, heads, t, d = q.shape
        pack = lambda x: x.reshape(s // group, group, heads, t, d).transpose(1, 2).reshape(s // group, heads, group * t, d)  # noqa: E731
        ids = torch.arange(group * t) // t
        out = attention(pack(q), pack(k), pack(v), mask=ids[:, None] == ids[None, :], backend="math")
        return out.reshape(s // group, heads, group, t, d).transpose(1, 2).reshape(s, heads, t, d)

    return run


def formulations(t: int) -> dict:
    forms = {name: (lambda q, k, v, _b=name: attention(q, k, v, backend=_b)) for name in ("math", "sdpa", "short")}
    for group in (2, 4):
        if group * t <= 64:
            forms[f"block{group}"] = block_diagonal(group)
    return forms


def check_exact(fn, q, k, v, grad, ref) -> float:
    """Largest deviation from the reference over the output and the q, k, v gradients."""
    out = fn(q, k, v)
    got = [out, *torch.autograd.grad(out, (q, k, v), grad)]
    return max(float((a.detach() - b.detach()).abs().max()) for a, b in zip(got, ref))


def run_table(args) -> list[dict]:
    peak = matmul_rate(args.clock, args.min_time)
    print(f"fp32 matmul 1024^3: {peak:.1f} GFLOP/s on {torch.get_num_threads()} thread(s) ({args.clock} clock)")
    rows = []
    configs = [(t, d) for t in args.frames for d in args.head_dims]
    for t, d in tqdm(configs, desc="configs", disable=None):
        heads = max(1, args.channels // d)
        torch.manual_seed(0)
        q, k, v = (torch.randn(args.sequences, heads, t, d, requires_grad=True) for _ in range(3))
        grad = torch.randn(args.sequences, heads, t, d)
        flops = 4 * t * t * d * args.sequences * heads
        ref_out = attention(q, k, v, backend="math")
        ref = [ref_out, *torch.autograd.grad(ref_out, (q, k, v), grad)]
        for name, fn in formulations(t).items():
            err = check_exact(fn, q, k, v, grad, ref)
            if err > 1e-5:
                raise AssertionError(f"{name} differs from math by {err:.2e} at T={t}, d={d}")

            def forward(fn=fn):
                with torch.no_grad():
                    fn(q, k, v)

            def forward_backward(fn=fn):
                torch.autograd.grad(fn(q, k, v), (q, k, v), grad)

            for mode, work, call in (("fwd", flops, forward), ("fwd+bwd", 3 * flops, forward_backward)):
                sec = measure(call, args.clock, args.min_time)
                rows.append(dict(formulation=name, T=t, head_dim=d, heads=heads, sequences=args.sequences, mode=mode,
                                 ms=round(sec * 1e3, 3), gflops=round(work / sec / 1e9, 2),
                                 pct_of_matmul=round(100 * work / sec / 1e9 / peak, 1), max_err=f"{err:.1e}"))
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'formulation':>11} {'T':>3} {'d':>3} {'mode':>8} {'ms':>9} {'GFLOP/s':>8} {'% mm':>6} {'max err':>8}")
    for r in rows:
        print(f"{r['formulation']:>11} {r['T']:>3} {r['head_dim']:>3} {r['mode']:>8} {r['ms']:>9.2f} "
              f"{r['gflops']:>8.1f} {r['pct_of_matmul']:>6.1f} {r['max_err']:>8}")


def micro(args) -> None:
    """The two measured facts behind the ``short`` kernel's softmax."""
    n = 1 << 20
    out = torch.empty(n)
    print("\nexp vs exp2 on 2^20 fp32 values (ms):")
    for label, x in (("N(0,1)", torch.randn(n)), ("-100 (denormal result)", torch.full((n,), -100.0)),
                     ("-inf (masked)", torch.full((n,), float("-inf")))):
        t_exp = measure(lambda: torch.exp(x, out=out), args.clock, args.min_time)
        t_exp2 = measure(lambda: torch.exp2(x, out=out), args.clock, args.min_time)
        print(f"  {label:>24}: exp {t_exp * 1e3:8.2f}   exp2 {t_exp2 * 1e3:6.2f}")
    from spacetime.ops.short_attention import _max_tree

    print("row maximum over m keys of (c, m, n) transposed scores, 2^21 values (ms):")
    for m in (8, 16, 32):
        st = torch.randn((1 << 21) // (m * m), m, m)
        t_amax = measure(lambda: st.amax(dim=1, keepdim=True), args.clock, args.min_time)
        t_tree = measure(lambda: _max_tree(st), args.clock, args.min_time)
        print(f"  m={m:>2}: amax(dim=1) {t_amax * 1e3:6.2f}   maximum tree {t_tree * 1e3:6.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=2048, help="sequences (pixels b*h*w); default 2048")
    parser.add_argument("--channels", type=int, default=128, help="model width C; heads = C // d (default 128)")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32], help="sequence lengths T")
    parser.add_argument("--head-dims", type=int, nargs="+", default=[32, 64], help="head dims d")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall time, or process CPU time (steadier on a shared machine; single thread only)")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds of repeats per measurement")
    parser.add_argument("--micro", action="store_true", help="also print the exp/exp2 and row-max micro-benchmarks")
    parser.add_argument("--csv", type=Path, default=HERE / "temporal_attention.csv", help="where to write the table")
    args = parser.parse_args(argv)
    if args.sequences % 4:
        parser.error(f"--sequences must be a multiple of 4 (block-diagonal packing); got {args.sequences}")
    if args.clock == "cpu" and torch.get_num_threads() > 1:
        print("note: --clock cpu sums the CPU time of all threads; use OMP_NUM_THREADS=1", file=sys.stderr)

    rows = run_table(args)
    print_table(rows)
    tmp = args.csv.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(args.csv)
    print(f"wrote {args.csv}")
    if args.micro:
        micro(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
