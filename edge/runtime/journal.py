"""An alert and its record on the device cannot disagree after a power cut.

The alert is committed to the outbox together with a journal row (same SQLite
transaction) holding what the device must record about it: evidence, the review it
awaits, the audit record. Once all of those are written the row is removed. A power
cut anywhere in between leaves the row, and the next start replays it (each step may
be repeated: evidence is overwritten, the review slot is set once, the audit record is
written only if the log has none for that event). The public alert counters are then
derived from the audit log, so ``edge report`` agrees with them after any crash.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from edge.accountability.ledger import Ledger
from edge.audit import records as audit_records
from edge.audit.log import AuditLog, iter_records
from edge.delivery.outbox import Outbox
from edge.errors import StateError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingAlert:
    event_id: str
    seq: int
    subject_ref: str
    bundle_id: str
    bundle_version: int
    captured_at: datetime
    jpeg: bytes | None

    def encode(self) -> bytes:
        return json.dumps({
            "event_id": self.event_id, "seq": self.seq, "subject_ref": self.subject_ref,
            "bundle_id": self.bundle_id, "bundle_version": self.bundle_version,
            "captured_at": self.captured_at.isoformat(),
            "jpeg": None if self.jpeg is None else base64.b64encode(self.jpeg).decode("ascii"),
        }).encode()

    @classmethod
    def decode(cls, data: bytes) -> PendingAlert:
        try:
            d = json.loads(data)
            jpeg = None if d["jpeg"] is None else base64.b64decode(d["jpeg"], validate=True)
            return cls(str(d["event_id"]), int(d["seq"]), str(d["subject_ref"]), str(d["bundle_id"]),
                       int(d["bundle_version"]), datetime.fromisoformat(d["captured_at"]), jpeg)
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise StateError(f"unreadable alert journal record: {e}") from e


def record(outbox: Outbox, ledger: Ledger, audit: AuditLog, alert: PendingAlert, now: datetime, *,
           replay: bool = False) -> None:
    """Write what the device keeps about a committed alert, then close its journal row.

    Raises (typed, or ``OSError`` from the evidence store) with the row still open."""
    ledger.alert(alert.event_id, alert.jpeg, alert.captured_at, now, count=not replay)
    if not replay or alert.event_id not in _audited_ids(audit):
        audit_records.alert(audit, now, event_id=alert.event_id, seq=alert.seq,
                            subject_ref=alert.subject_ref, bundle_id=alert.bundle_id,
                            bundle_version=alert.bundle_version)
    if not replay:
        ledger.transparency.save(now)
    outbox.journal_done(alert.seq)


def _audited_ids(audit: AuditLog) -> set[str]:
    return {str((r.get("data") or {}).get("event_id")) for r in iter_records(audit.directory)
            if r.get("kind") == "alert"}


def reconcile(outbox: Outbox, ledger: Ledger, audit: AuditLog, now: datetime) -> int:
    """At start: replay the alerts a power cut left half-recorded, then derive the public
    alert counters from the audit log. Returns how many alerts were replayed."""
    pending = outbox.journal()
    for seq, data in pending:
        alert = PendingAlert.decode(data)
        log.warning("alert seq=%d %s was committed but not fully recorded: recording it now",
                    seq, alert.event_id)
        record(outbox, ledger, audit, alert, now, replay=True)
    times = [datetime.fromisoformat(r["ts"]) for r in iter_records(audit.directory)
             if r.get("kind") == "alert" and isinstance(r.get("ts"), str)]
    ledger.reconcile_alert_count(times, now)
    return len(pending)
