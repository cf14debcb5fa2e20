"""Run every benchmark section in turn and print its figures.

Each section module exposes ``run(args) -> None`` and prints its own table.
``python -m edge.bench [SECTION ...]`` runs the named sections only.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edge.bench.machine import describe

SECTIONS: dict[str, str] = {
    "detector": "edge.bench.perception",
    "embedder": "edge.bench.embedder",
    "landmarks": "edge.bench.landmarks",
    "bundle": "edge.bench.bundle",
    "audit": "edge.bench.audit",
    "pipeline": "edge.bench.pipeline",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edge.bench")
    ap.add_argument("sections", nargs="*", choices=[*SECTIONS, []], metavar="SECTION")
    args = ap.parse_args(argv)
    print(describe(), flush=True)  # cpu_preferred is chosen per architecture
    for name in args.sections or list(SECTIONS):
        print(f"\n== {name} ==", flush=True)
        importlib.import_module(SECTIONS[name]).run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
