"""The audit chain's pure core: canonical bytes, record hashes, record building.

A record is one JSON object on one line::

    {"data": {...}, "hash": "<hex>", "kind": "...", "prev": "<hex>", "seq": N, "ts": "...Z"}

``hash`` is SHA-256 over the canonical encoding of the record *without* ``hash``;
``prev`` is the previous record's ``hash`` (64 zeros before the very first record),
so each record commits to the whole history before it. Lines are written in the
canonical encoding itself, and the verifier insists on that, so that any change
to a line's bytes, even one that keeps the JSON meaning, is visible.

No I/O and no clock here: the caller passes ``ts``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, Final

from edge.errors import AuditError
from edge.formats import canonical_json, iso_utc

GENESIS: Final = "0" * 64
RECORD_KEYS: Final = frozenset({"seq", "ts", "kind", "data", "prev", "hash"})
# The vocabulary is fixed so that a log can be read years later without guessing;
# a new kind is added here together with its typed helper in records.py.
KINDS: Final = frozenset(
    {
        "start",
        "stop",
        "order_accepted",
        "order_refused",
        "order_expired",
        "bundle_loaded",
        "bundle_refused",
        "bundle_expired",
        "bundle_purged",
        "entries_expired",
        "trust_refused",
        "config_loaded",
        "threshold_changed",
        "matching_suspended",
        "matching_resumed",
        "recognition",
        "alert",
        "adjudication",
        "deletion",
        "purge",
        "checkpoint",
        "outbox_quarantined",
        # written by the log itself
        "rotate",
        "torn_tail",
    }
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def canonical(obj: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8, no NaN: one byte string per value."""
    try:
        return canonical_json(obj)
    except (TypeError, ValueError) as e:
        raise AuditError(f"value cannot be encoded canonically: {e}") from e


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_hash(record: dict[str, Any]) -> str:
    """Hash of a record's canonical bytes, ``hash`` itself excluded."""
    return sha256_hex(canonical({k: v for k, v in record.items() if k != "hash"}))


def is_hex64(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def iso_ts(now: datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix; a naive datetime is a caller bug."""
    if not isinstance(now, datetime):
        raise AuditError(f"audit timestamps must be datetimes, not {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise AuditError("audit timestamps must be timezone-aware (UTC)")
    return iso_utc(now)


def is_ts(value: object) -> bool:
    return isinstance(value, str) and _TS.fullmatch(value) is not None


def make_record(seq: int, ts: str, kind: str, data: dict[str, Any], prev: str) -> dict[str, Any]:
    """A complete record (with ``hash``) chained to ``prev``."""
    if kind not in KINDS:
        raise AuditError(f"unknown audit record kind '{kind}'")
    record: dict[str, Any] = {"seq": seq, "ts": ts, "kind": kind, "data": data, "prev": prev}
    record["hash"] = record_hash(record)
    return record


def encode_line(record: dict[str, Any]) -> bytes:
    return canonical(record) + b"\n"
