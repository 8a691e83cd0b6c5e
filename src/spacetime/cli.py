"""The ``spacetime`` command line.

Each pipeline keeps its subcommands in a ``commands`` module of its own (argparse glue over its
library functions) with a ``register(subparsers)`` function; :data:`COMMAND_MODULES` lists them.
Nothing imports this module. Subcommand parsers inherit the house formatting (defaults shown in
``--help``) from :class:`Parser`, so a command module needs nothing from here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__

#: modules whose ``register(subparsers)`` adds subcommands, in the order ``--help`` lists them
COMMAND_MODULES = [
    "spacetime.diffusion.commands",
    "spacetime.classify.commands",
    "spacetime.bench.commands",
    "spacetime.interop.commands",
]


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that shows defaults in ``--help``; ``add_subparsers`` makes more of its kind."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="spacetime", description="Spatio-temporal attention for video models.")
    parser.add_argument("--version", action="version", version=f"spacetime {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # OpenMP threads that spin while waiting made CPU training steps 5-10x slower whenever another
    # process shared the cores; passive waiting costs nothing on an idle machine. OpenMP reads this
    # once, when torch loads it, so it is set here, before the command modules import torch. A
    # user's own setting wins; the library itself (``import spacetime``) sets nothing.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:  # bad input: one clear line, exit 2
        print(f"spacetime {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
