"""``edge audit verify|show``: check a device's audit log, or read it.

``verify`` exits 0 and prints ``OK: N records, head <hash>`` for an intact log, or
prints ``BROKEN at <segment>:<line> (seq N): <reason>`` and exits 1. With
``--checkpoint FILE --pubkey KEY`` the log must also contain the signed head
the centre holds, which catches a log cut short or re-hashed from scratch.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
from pathlib import Path
from typing import Any

from edge.audit.chain import canonical
from edge.audit.checkpoint import verify_checkpoint
from edge.audit.log import iter_records, list_segments, verify_dir
from edge.audit.verify import Anchor
from edge.errors import AuditError, MalformedError

DEFAULT_DIR = Path("/var/lib/edge/audit")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("audit", help="verify or show the hash-chained audit log")
    sub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    v = sub.add_parser("verify", help="check every record and report the first broken one")
    v.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"audit directory (default {DEFAULT_DIR})")
    v.add_argument("--checkpoint", type=Path, help="signed checkpoint JSON the log must contain")
    v.add_argument("--pubkey", help="device Ed25519 public key: file or hex/base64 (checks checkpoints)")
    v.set_defaults(func=cmd_verify)

    s = sub.add_parser("show", help="print the records (no verification: use verify)")
    s.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"audit directory (default {DEFAULT_DIR})")
    s.add_argument("--kind", action="append", help="only this kind (repeatable)")
    s.add_argument("--json", action="store_true", help="one JSON record per line")
    s.set_defaults(func=cmd_show)


def load_pubkey(spec: str) -> bytes:
    """32 raw bytes from a file (raw, hex or base64) or from a hex/base64 literal."""
    path = Path(spec)
    try:
        raw = path.read_bytes() if path.is_file() else spec.encode()
    except OSError as e:
        raise AuditError(f"cannot read public key {spec}: {e}") from e
    if len(raw) == 32 and path.is_file():
        return raw
    text = raw.decode("ascii", "replace").strip()
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            key = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(key) == 32:
            return key
    raise MalformedError(f"public key {spec!r:.60} is not 32 bytes of raw, hex or base64 data")


def cmd_verify(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if not list_segments(directory):
        raise AuditError(f"no audit segments in {directory}")
    if args.checkpoint is not None and args.pubkey is None:
        raise AuditError("--checkpoint needs --pubkey: an unsigned checkpoint proves nothing")
    pubkey = load_pubkey(args.pubkey) if args.pubkey else None
    anchors: tuple[Anchor, ...] = ()
    if args.checkpoint is not None and pubkey is not None:
        try:
            statement = json.loads(args.checkpoint.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise AuditError(f"cannot read checkpoint {args.checkpoint}: {e}") from e
        if not isinstance(statement, dict):
            raise MalformedError(f"checkpoint {args.checkpoint} is not a JSON object")
        verify_checkpoint(statement, pubkey)
        anchors = (Anchor(statement["seq"], statement["head"], f"checkpoint of {statement['ts']}"),)
    report = verify_dir(directory, anchors, pubkey)
    if report.broken is not None:
        print(f"BROKEN at {report.broken}")
        return 1
    print(f"OK: {report.records} records, head {report.head}")
    for warning in report.warnings:
        print(f"WARNING: {warning}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    kinds = set(args.kind or ())
    for rec in iter_records(args.dir):
        if kinds and rec.get("kind") not in kinds:
            continue
        if args.json:
            print(canonical(rec).decode("utf-8"))
        else:
            data = rec.get("data")
            fields = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(data.items())) \
                if isinstance(data, dict) else repr(data)
            print(f"{rec.get('seq'):>6}  {rec.get('ts')}  {rec.get('kind'):<18} {fields}")
    return 0
