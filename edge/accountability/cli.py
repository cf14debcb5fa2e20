"""``edge report``: the publishable account of what this device did (markdown or JSON).

Reads ``transparency.json`` and the audit log under ``--state`` (see
``edge.accountability.report``); exits 1 when the audit log does not verify, so
a broken log is never published silently.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_STATE = Path("/var/lib/edge")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="transparency report of this device's deployments")
    p.add_argument("--state", type=Path, default=DEFAULT_STATE,
                   help=f"state directory (default {DEFAULT_STATE})")
    p.add_argument("--audit", type=Path, help="audit directory (default <state>/audit)")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown")
    p.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from edge.accountability.report import build_report, render_markdown, report_json

    report = build_report(args.state, datetime.now(UTC), args.audit)
    text = report_json(report) if args.format == "json" else render_markdown(report)
    if args.output is not None:
        from edge.fsutil import atomic_write

        try:
            atomic_write(args.output, text.encode("utf-8"), 0o644)
        except OSError as e:
            from edge.errors import StateError

            raise StateError(f"cannot write report {args.output}: {e}") from e
    else:
        sys.stdout.write(text)
    log = report["audit_log"]
    if log["present"] and not log["ok"]:
        print(f"edge report: audit log BROKEN: {log['broken']}", file=sys.stderr)
        return 1
    return 0
