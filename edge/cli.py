"""``edge`` command line: a thin dispatcher over the command modules.

Each command module exposes ``register(subparsers)``, which adds its
sub-command(s) and sets ``func`` on the parser; ``func(args) -> int``. Modules
are imported here but must not import hardware libraries at import time.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edge import __version__
from edge.errors import EdgeError

# One line per command module; keep them light at import time.
COMMAND_MODULES: tuple[str, ...] = (
    "edge.authority.cli",
    "edge.audit.cli",
    "edge.delivery.cli",
    "edge.perception.cli",
    "edge.scenario.cli",
    "edge.runtime.selftest",
    "edge.runtime.cli",
    "edge.accountability.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from edge.runtime.notify import setup_logging

    setup_logging(args.verbose)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        rc: int = func(args)
    except EdgeError as exc:
        print(f"edge {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return rc
