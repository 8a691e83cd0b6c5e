"""The ``spacetime`` command line.

Each subcommand lives beside the code it drives and registers itself through a
``register(subparsers)`` function; :data:`COMMAND_MODULES` lists those modules.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

#: modules whose ``register(subparsers)`` adds subcommands, in the order ``--help`` lists them
COMMAND_MODULES = [
    "spacetime.diffusion.commands",
    "spacetime.tour",
    "spacetime.classify",
    "spacetime.bench.command",
]


def add_command(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand parser with the house formatting (defaults shown in ``--help``)."""
    return subparsers.add_parser(
        name, help=help_text, description=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spacetime",
        description="Spatio-temporal attention for video models.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"spacetime {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
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
