"""Hash-chained, append-only audit log: what the device did, in records nobody can
quietly edit. ``log`` writes it, ``records`` holds the typed helpers (use them,
not ``append``), ``verify`` checks it, ``checkpoint`` signs its head."""

from __future__ import annotations

from edge.audit.chain import GENESIS, KINDS, canonical, record_hash
from edge.audit.checkpoint import key_id_hex, sign_checkpoint, verify_checkpoint
from edge.audit.guard import check_data
from edge.audit.log import AuditLog, iter_records, list_segments, read_head, verify_dir
from edge.audit.records import AuditSink
from edge.audit.verify import Anchor, Break, Segment, VerifyReport, verify_log, verify_segments

__all__ = [
    "GENESIS",
    "KINDS",
    "Anchor",
    "AuditLog",
    "AuditSink",
    "Break",
    "Segment",
    "VerifyReport",
    "canonical",
    "check_data",
    "iter_records",
    "key_id_hex",
    "list_segments",
    "read_head",
    "record_hash",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_dir",
    "verify_log",
    "verify_segments",
]
