"""The ``spacetime`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


def _cmd_patterns(args: argparse.Namespace) -> int:
    from .tour import format_rows, run_tour

    b, t, h, w = args.shape
    print(f"Attention patterns on q/k/v of (b, t, h, w) = {(b, t, h, w)}, heads={args.heads}, head_dim={args.head_dim}")
    rows = run_tour(Path(args.out), shape=(b, t, h, w), heads=args.heads, head_dim=args.head_dim, seed=args.seed)
    print(format_rows(rows))
    worst = max(r["max_abs_diff"] for r in rows)
    print(f"\nsdpa == math for every pattern (largest difference {worst:.1e}).")
    print(f"Who-sees-whom figure: {Path(args.out) / 'patterns.png'}")
    return 0 if worst < 1e-4 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spacetime",
        description="Spatio-temporal attention for video models.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"spacetime {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name, help_text in (
        ("patterns", "tour the attention patterns: who sees whom, sdpa vs math, timings"),
        ("demo", "the main job (for now: the attention-pattern tour)"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--out", default="runs/patterns", help="folder for the figure")
        p.add_argument("--shape", type=int, nargs=4, default=(2, 8, 16, 16), metavar=("B", "T", "H", "W"),
                       help="clip shape of the timing run")
        p.add_argument("--heads", type=int, default=4, help="attention heads")
        p.add_argument("--head-dim", type=int, default=32, help="channels per head")
        p.add_argument("--seed", type=int, default=0, help="random seed")
        p.set_defaults(func=_cmd_patterns)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
