"""Alert evidence on disk: the reviewer's JPEG crop of each alert, and nothing else.

Only an alert has an ``event_id``, so the store cannot hold anything of a face
that did not match: there is no way to put one in. Each item is two files in a
0700 directory, both mode 0600 and written atomically::

    <event_id>.json   captured_at, retention_days, size and sha256 of the crop
    <event_id>.jpg    the crop

The metadata is written first and removed last, so a crop never exists without
the time that bounds its life. A crop found without metadata (put there by hand)
has no provable age and is treated as expired.

Deleting is logged after the file is gone: if the audit write fails the crop is
still deleted (the error propagates), which is the failure that protects people.
The audit records say how many and which event, never the bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from edge.audit import records
from edge.audit.chain import iso_ts
from edge.audit.records import AuditSink
from edge.errors import StateError
from edge.fsutil import atomic_write, fsync_dir
from edge.watchlist.order import MAX_RETENTION_DAYS

WHAT: Final = "alert_evidence"
MAX_CROP_BYTES: Final = 512 * 1024
_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class EvidenceItem:
    event_id: str
    captured_at: datetime
    retention_days: int

    def expires_at(self, retention_days: int) -> datetime:
        """The stricter of the retention it was captured under and the one in force now."""
        return self.captured_at + timedelta(days=min(self.retention_days, retention_days))


def _check_event_id(event_id: str) -> str:
    if not isinstance(event_id, str) or _EVENT_ID.fullmatch(event_id) is None:
        raise StateError(f"evidence event id {event_id!r:.60} is not a plain identifier")
    return event_id


def _check_retention(days: int) -> int:
    if type(days) is not int or not 0 <= days <= MAX_RETENTION_DAYS:
        raise StateError(f"evidence retention must be 0..{MAX_RETENTION_DAYS} days, got {days!r}")
    return days


def _aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise StateError(f"{what} must be a timezone-aware UTC time")
    return t


class EvidenceStore:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    # --- writing ------------------------------------------------------------------------

    def put(self, event_id: str, jpeg: bytes, captured_at: datetime,
            retention_days: int = MAX_RETENTION_DAYS) -> None:
        """Keep the crop of alert ``event_id``; ``retention_days`` is the order's (<= 31)."""
        _check_event_id(event_id)
        _check_retention(retention_days)
        _aware(captured_at, "captured_at")
        if not isinstance(jpeg, bytes) or not jpeg.startswith(_JPEG_MAGIC):
            raise StateError(f"evidence for {event_id} is not a JPEG")
        if len(jpeg) > MAX_CROP_BYTES:
            raise StateError(f"evidence for {event_id} is {len(jpeg)} bytes (limit {MAX_CROP_BYTES})")
        meta = {"event_id": event_id, "captured_at": iso_ts(captured_at), "retention_days": retention_days,
                "bytes": len(jpeg), "sha256": hashlib.sha256(jpeg).hexdigest()}
        try:
            self._ensure_dir()
            atomic_write(self._meta(event_id), json.dumps(meta, sort_keys=True).encode(), 0o600)
            atomic_write(self._jpeg(event_id), jpeg, 0o600)
        except OSError as e:
            raise StateError(f"cannot store evidence for {event_id} in {self.dir}: {e}") from e

    def delete(self, event_id: str, reason: str, now: datetime, audit: AuditSink) -> bool:
        """Delete one item at once and log it; False (and no record) if none was held."""
        if not self._remove(_check_event_id(event_id)):
            return False
        records.deletion(audit, now, event_id=event_id, what=WHAT, reason=reason)
        return True

    def purge_expired(self, now: datetime, retention_days: int, audit: AuditSink) -> int:
        """Delete every item older than its retention; one ``purge`` record with the count."""
        _check_retention(retention_days)
        _aware(now, "now")
        expired = [i.event_id for i in self._items() if i.expires_at(retention_days) <= now]
        expired += self._orphans()
        count = sum(1 for e in expired if self._remove(e))
        if count:
            records.purge(audit, now, what=WHAT, count=count,
                          reason=f"retention of {retention_days} days (or less, as captured) elapsed",
                          older_than=now - timedelta(days=retention_days))
        return count

    def purge_all(self, now: datetime, reason: str, audit: AuditSink) -> int:
        """Delete everything held (end of deployment, decommissioning); logged as one purge."""
        ids = [i.event_id for i in self._items()] + self._orphans()
        count = sum(1 for e in ids if self._remove(e))
        if count:
            records.purge(audit, now, what=WHAT, count=count, reason=reason)
        return count

    # --- reading ------------------------------------------------------------------------

    def event_ids(self) -> list[str]:
        return sorted(i.event_id for i in self._items())

    def __contains__(self, event_id: object) -> bool:
        return isinstance(event_id, str) and _EVENT_ID.fullmatch(event_id) is not None \
            and self._jpeg(event_id).exists()

    def get(self, event_id: str) -> bytes | None:
        try:
            return self._jpeg(_check_event_id(event_id)).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"cannot read evidence {event_id}: {e}") from e

    def item(self, event_id: str) -> EvidenceItem | None:
        return self._read_meta(self._meta(_check_event_id(event_id)))

    # --- internals ----------------------------------------------------------------------

    def _jpeg(self, event_id: str) -> Path:
        return self.dir / f"{event_id}.jpg"

    def _meta(self, event_id: str) -> Path:
        return self.dir / f"{event_id}.json"

    def _ensure_dir(self) -> None:
        if not self.dir.is_dir():
            self.dir.mkdir(parents=True, mode=0o700)
            fsync_dir(self.dir.parent)

    def _names(self, suffix: str) -> Iterator[str]:
        try:
            entries = list(self.dir.iterdir())
        except FileNotFoundError:
            return
        except OSError as e:
            raise StateError(f"cannot list evidence directory {self.dir}: {e}") from e
        for p in entries:
            if p.suffix == suffix and _EVENT_ID.fullmatch(p.stem):
                yield p.stem

    def _read_meta(self, path: Path) -> EvidenceItem | None:
        try:
            obj: Any = json.loads(path.read_text("utf-8"))
            captured = _aware(datetime.fromisoformat(obj["captured_at"]), "captured_at")
            return EvidenceItem(str(obj["event_id"]), captured, _check_retention(obj["retention_days"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, StateError) as e:
            raise StateError(f"evidence metadata {path} is unreadable ({e}); delete the item by hand") from e

    def _items(self) -> list[EvidenceItem]:
        out = []
        for event_id in self._names(".json"):
            item = self._read_meta(self._meta(event_id))
            if item is not None:
                out.append(item)
        return out

    def _orphans(self) -> list[str]:
        return [e for e in self._names(".jpg") if not self._meta(e).exists()]

    def _remove(self, event_id: str) -> bool:
        """Crop first, metadata last; True if a crop was there."""
        found = False
        try:
            for path in (self._jpeg(event_id), self._meta(event_id)):
                try:
                    os.unlink(path)
                    found = found or path.suffix == ".jpg"
                except FileNotFoundError:
                    pass
            if self.dir.is_dir():
                fsync_dir(self.dir)
        except OSError as e:
            raise StateError(f"cannot delete evidence {event_id} in {self.dir}: {e}") from e
        return found
