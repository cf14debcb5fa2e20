"""The firmware's two wire formats, each written by one function.

``canonical_json``: sorted keys, no whitespace, UTF-8, no NaN, so the same value
always gives the same bytes (signed documents, the audit chain, MQTT payloads).
``iso_utc``: RFC 3339 UTC with a ``Z``; milliseconds for events and status, seconds
for signed documents.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal


def canonical_json(obj: object) -> bytes:
    """One byte string per value; raises ``TypeError``/``ValueError`` for what JSON cannot hold."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def iso_utc(t: datetime, timespec: Literal["milliseconds", "seconds"] = "milliseconds") -> str:
    """``2026-11-22T12:00:00.123Z``; a naive datetime is a caller bug (``ValueError``)."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("naive datetime")
    return t.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
