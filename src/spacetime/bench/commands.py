"""``spacetime bench`` and ``spacetime patterns``: argparse glue over :mod:`spacetime.bench`.

``bench``: which attention pattern fits my shape, machine and memory. It measures forward and forward+backward time and peak memory of the chosen patterns, backends
and peers over a sweep of clip shapes, next to the cost model's FLOPs and memory and the
machine's fp32 matmul rate; writes ``bench.csv``, ``bench_report.md``, ``bench_config.json`` and
three PNG plots (``bench_*.png``) into ``--out``. ``--results FILE`` also rewrites the generated
block ``<!-- bench:begin -->`` ... ``<!-- bench:end -->`` of a markdown file (the prose stays).

``patterns``: the tour of :mod:`spacetime.bench.tour`, who sees whom and ``sdpa`` against ``math``.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from ..io.files import atomic_write_text
from ..ops.attention import available_backends, default_backend
from .cases import PATTERN_NAMES, PEERS, available_peers
from .plots import PLOT_FILES, plot_all
from .report import check_block, format_factorized_summary, format_peer_table, format_table, replace_block
from .sweep import BenchConfig, available_memory, config_dict, run_sweep, write_csv
from .tour import format_rows, run_tour

__all__ = ["register", "QUICK", "config_from_args"]

DEFAULT_PATTERNS = PATTERN_NAMES
#: what ``--quick`` uses for every option left unset: small shapes, every code path, well under a minute
QUICK = {
    "shape": ["4x8x8", "4x16x16"], "dim": 32, "heads": 2, "repeats": 1, "matmul_n": 256, "max_seconds": 1.0,
    "patterns": ["spatial", "temporal", "factorized", "joint"], "peers": ["mha", "explicit"], "threads": 1,
}


def _parse_shape(text: str) -> tuple[int, int, int]:
    try:
        t, h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--shape must look like TxHxW (for example 16x32x32); got {text!r}") from None
    if min(t, h, w) < 1:
        raise ValueError(f"--shape needs T, H, W >= 1; got {text!r}")
    return t, h, w


def config_from_args(args) -> BenchConfig:
    """The :class:`BenchConfig` of parsed ``spacetime bench`` arguments (``--quick`` fills unset ones)."""
    def pick(name, default):
        value = getattr(args, name)
        if value is not None:
            return value
        return QUICK.get(name, default) if args.quick else default

    if args.shape is not None or (args.quick and args.t is None and args.hw is None):
        shapes = [_parse_shape(s) for s in pick("shape", None)]
    else:
        shapes = [(t, s, s) for t in (args.t or [4, 8, 16, 32, 64]) for s in (args.hw or [8, 16, 32, 64])]
    peers = pick("peers", list(available_peers()))
    impls = [args.level] + [p for p in peers if p != args.level]
    options = {"window": tuple(args.window), "shift": tuple(args.shift) if args.shift else None,
               "local": args.local, "cross": args.cross}
    budget = None if args.memory_budget_gb is None else int(args.memory_budget_gb * 2**30)
    return BenchConfig(
        shapes=shapes, patterns=pick("patterns", list(DEFAULT_PATTERNS)), backends=args.backends, impls=impls,
        modes=args.modes, batch=args.batch, dim=pick("dim", 128), heads=pick("heads", 4), options=options,
        memory_budget=budget, max_seconds=pick("max_seconds", 5.0), warmup=args.warmup,
        repeats=pick("repeats", 3), measure_memory=not args.no_memory, matmul_n=pick("matmul_n", 2048),
        threads=pick("threads", None),
    )


def _run(args) -> int:
    try:
        cfg = config_from_args(args)
        focus = _parse_shape(args.focus) if args.focus else (
            (16, 32, 32) if (16, 32, 32) in cfg.shapes else cfg.shapes[-1])
    except ValueError as exc:
        print(f"spacetime bench: {exc}", file=sys.stderr)
        return 2
    if args.results:  # fail now, not after a long sweep
        try:
            check_block(args.results, "bench")
        except (OSError, ValueError) as exc:
            print(f"spacetime bench: --results: {exc}", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    argv = sys.argv[1:] if sys.argv[1:2] == ["bench"] else ["bench", "(called from Python)"]
    command = "spacetime " + " ".join(shlex.quote(a) for a in argv)
    print(f"{len(cfg.specs())} cases x {len(cfg.modes)} modes on shapes "
          f"{', '.join('x'.join(map(str, s)) for s in cfg.shapes)}; memory budget {cfg.memory_budget / 2**30:.1f} GiB")
    start = time.perf_counter()
    rows = run_sweep(cfg)
    csv_path = write_csv(rows, out / "bench.csv")
    plot_backend = args.plot_backend or (default_backend() if default_backend() in cfg.backends else cfg.backends[0])
    plots = plot_all(rows, out, backend=plot_backend, impl=args.level)
    atomic_write_text(out / "bench_config.json", json.dumps({"command": command, **config_dict(cfg)}, indent=2) + "\n")
    rate = rows[0]["matmul_gflops"] if rows else float("nan")
    report = "\n\n".join([
        f"Command: `{command}`",
        f"fp32 matmul rate: {rate:.1f} GFLOP/s ({cfg.matmul_n}x{cfg.matmul_n} `torch.mm`)",
        "### Factorized vs joint\n\n" + format_factorized_summary(rows, backend=plot_backend),
        "### Peers (ratio = peer time / spacetime time; > 1 means spacetime is faster)\n\n"
        + format_peer_table(rows, backend=args.plot_backend),
        f"### Every pattern and backend at T x H x W = {'x'.join(map(str, focus))}\n\n"
        + format_table([r for r in rows if (r["t"], r["h"], r["w"]) == focus], impls=(args.level,)),
        "Every shape: `bench.csv`; columns are described in docs (pred_ms is FLOPs at the matmul rate).",
    ]) + "\n"
    atomic_write_text(out / "bench_report.md", report)
    if args.results:
        replace_block(args.results, "bench", report)
        print(f"updated the generated block of {args.results}")
    print()
    print("Factorized vs joint:\n" + format_factorized_summary(rows, backend=plot_backend))
    print("\nPeers:\n" + format_peer_table(rows, backend=args.plot_backend))
    skipped = sum(r["status"].startswith("skipped") for r in rows)
    errors = sum(r["status"].startswith("error") for r in rows)
    print(f"\n{len(rows)} rows ({skipped} skipped, {errors} errors) in {time.perf_counter() - start:.1f} s")
    print(f"CSV: {csv_path}\nreport: {out / 'bench_report.md'}")
    for name in PLOT_FILES:
        print(f"plot: {plots[name]}")
    return 1 if errors else 0


def _run_patterns(args) -> int:
    b, t, h, w = args.shape
    print(f"Attention patterns on q/k/v of (b, t, h, w) = {(b, t, h, w)}, heads={args.heads}, head_dim={args.head_dim}")
    rows = run_tour(Path(args.out), shape=(b, t, h, w), heads=args.heads, head_dim=args.head_dim, seed=args.seed)
    print(format_rows(rows))
    worst = max(r["max_abs_diff"] for r in rows)
    print(f"\nsdpa == math for every pattern (largest difference {worst:.1e}).")
    print(f"Who-sees-whom figure: {Path(args.out) / 'patterns.png'}")
    return 0 if worst < 1e-4 else 1


def _register_patterns(subparsers) -> None:
    text = "tour the attention patterns: who sees whom, sdpa vs math, timings"
    p = subparsers.add_parser("patterns", help=text, description=text)
    p.add_argument("--out", default="runs/patterns", help="folder for the figure")
    p.add_argument("--shape", type=int, nargs=4, default=(2, 8, 16, 16), metavar=("B", "T", "H", "W"),
                   help="clip shape of the timing run")
    p.add_argument("--heads", type=int, default=4, help="attention heads")
    p.add_argument("--head-dim", type=int, default=32, help="channels per head")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=_run_patterns)


def register(subparsers) -> None:
    """Add ``spacetime bench`` and ``spacetime patterns``."""
    _register_bench(subparsers)
    _register_patterns(subparsers)


def _register_bench(subparsers) -> None:
    text = "measure attention patterns (time, memory, GFLOP/s) over clip shapes next to the cost model"
    p = subparsers.add_parser("bench", help=text, description=text)
    p.add_argument("--out", default="runs/bench",
                   help="folder for bench.csv, bench_report.md, bench_config.json and the bench_*.png plots")
    p.add_argument("--results", default=None, metavar="FILE.md",
                   help="also rewrite the <!-- bench:begin/end --> block of this markdown file with the report")
    p.add_argument("--quick", action="store_true",
                   help=f"a small sweep for CI and a first look (fills unset options from {QUICK})")
    p.add_argument("--patterns", nargs="+", choices=PATTERN_NAMES, default=None,
                   help=f"patterns to measure (default: all; --quick: {' '.join(QUICK['patterns'])})")
    p.add_argument("--backends", nargs="+", default=None,
                   help="attention backends by name (default: every available one, now "
                        f"{' '.join(available_backends())})")
    p.add_argument("--peers", nargs="*", choices=PEERS, default=None,
                   help=f"the design texts' approaches to run on the same shapes (default: installed ones, now "
                        f"{' '.join(available_peers())}); give none to skip")
    p.add_argument("--level", choices=("layer", "op"), default="layer",
                   help="layer: attention layer with qkv/output projections; op: the pattern alone on q/k/v")
    p.add_argument("--t", type=int, nargs="+", default=None, help="frames of the shape grid (default 4 8 16 32 64)")
    p.add_argument("--hw", type=int, nargs="+", default=None, help="H = W of the shape grid (default 8 16 32 64)")
    p.add_argument("--shape", nargs="+", default=None, metavar="TxHxW",
                   help="explicit clip shapes instead of the --t x --hw grid, for example 16x32x32")
    p.add_argument("--focus", default=None, metavar="TxHxW",
                   help="shape whose every case the report tabulates (default 16x32x32 if swept, else the last shape)")
    p.add_argument("--batch", type=int, default=1, help="clips per batch")
    p.add_argument("--dim", type=int, default=None, help="channels C (default 128; --quick: 32)")
    p.add_argument("--heads", type=int, default=None, help="attention heads (default 4; --quick: 2)")
    p.add_argument("--window", type=int, nargs=3, default=(2, 8, 8), metavar=("WT", "WH", "WW"),
                   help="3D window of the window patterns")
    p.add_argument("--shift", type=int, nargs=3, default=None, metavar=("ST", "SH", "SW"),
                   help="shift of the shifted window (default: half the window)")
    p.add_argument("--local", type=int, default=1, help="frames each side for local temporal attention")
    p.add_argument("--cross", type=int, default=1, help="neighbour frames each side for cross-frame attention")
    p.add_argument("--modes", nargs="+", choices=("fwd", "fwdbwd"), default=["fwd", "fwdbwd"],
                   help="forward only (no grad) and/or forward+backward")
    p.add_argument("--memory-budget-gb", type=float, default=None,
                   help=f"skip cases whose predicted peak memory exceeds this (default: half of the memory "
                        f"available now, {available_memory() / 2**31:.1f})")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="skip cases whose predicted time per call at the matmul rate exceeds this (default 5)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per case, median reported (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    p.add_argument("--matmul-n", dest="matmul_n", type=int, default=None,
                   help="size of the matmul that measures the machine's fp32 rate (default 2048)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice; --quick: 1)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement (child processes)")
    p.add_argument("--plot-backend", default=None, help="backend whose rows the bar chart and tables use "
                   "(default: the default backend; the peer table: spacetime's fastest backend per case)")
    p.set_defaults(func=_run)
