"""Durable, bounded outbox: every event is on disk before it is published.

SQLite in WAL mode with ``synchronous=FULL``: a committed ``put`` survives a
process kill and a power cut. Events leave the outbox only through ``ack``,
which the MQTT link calls on a successful PUBACK, so delivery is at least once.

The outbox is bounded by event count and payload bytes. When a new event does
not fit, telemetry (``stats``/``status``) is dropped first, oldest first; an
alert is never dropped: if only alerts are left, the new alert is refused with
:class:`OutboxFullError` and counted, so the caller can say so loudly.

One connection is shared by the pipeline thread (``put``) and the MQTT thread
(``pending``/``ack``), serialised by a lock.

A corrupt outbox (``outbox_problem`` names why) is moved aside by ``quarantine``,
with its WAL and shared-memory files, and kept for recovery; ``edge outbox
quarantine`` does that with an audit record, so ``edge run`` can start afresh.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from edge.config import OutboxConfig
from edge.errors import OutboxError, OutboxFullError
from edge.fsutil import fsync_dir

log = logging.getLogger(__name__)

TELEMETRY_KINDS: Final = frozenset({"stats", "status"})
WARN_RATIO: Final = 0.8
# Re-arm the warning only after the fill has clearly dropped, so that a fill
# hovering around 80% does not log on every event.
REARM_RATIO: Final = 0.7

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    record BLOB NOT NULL
);
"""

COUNTER_NAMES: Final = ("dropped_telemetry", "refused_alerts", "acked", "alert_seq")


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    kind: str
    topic: str
    payload: bytes
    qos: int
    attempts: int


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    bytes: int
    alerts: int
    fill_ratio: float
    warning: bool
    dropped_telemetry: int
    refused_alerts: int
    acked: int


class Outbox:
    """A bounded FIFO of events to publish, persisted in one SQLite file."""

    def __init__(self, path: Path, max_events: int = OutboxConfig.max_events,
                 max_bytes: int = OutboxConfig.max_bytes) -> None:
        if max_events <= 0 or max_bytes <= 0:
            raise OutboxError("outbox bounds must be positive")
        self.path = Path(path)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"outbox {self.path}: cannot enable WAL (got {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0),"
                " COALESCE(SUM(kind NOT IN ('stats', 'status')), 0) FROM events"
            ).fetchone()
            self._counters = {n: 0 for n in COUNTER_NAMES}
            for name, value in self._db.execute("SELECT name, value FROM counters"):
                self._counters[str(name)] = int(value)
        except sqlite3.Error as e:
            raise OutboxError(f"outbox {self.path} cannot be opened: {e}") from e
        self._count, self._bytes, self._alerts = int(row[0]), int(row[1]), int(row[2])
        self._warned = False
        self._check_fill()

    # --- writing ----------------------------------------------------------------

    def put(self, kind: str, topic: str, payload: bytes, qos: int = 1) -> int | None:
        """Persist one event and return its id (monotonic, defines publish order).

        Returns ``None`` only for telemetry that could not be kept (counted in
        ``dropped_telemetry``). Raises :class:`OutboxFullError` for an alert
        that does not fit after all telemetry has been dropped.
        """
        event_id, _ = self._insert(kind, topic, lambda _seq: payload, qos, with_seq=False)
        return event_id

    def put_alert(self, topic: str, build: Callable[[int], bytes], qos: int = 1,
                  journal: Callable[[int], bytes] | None = None) -> tuple[int, int]:
        """Persist an alert numbered with the next per-device ``seq``; returns (id, seq).

        ``build(seq)`` makes the payload. The seq is allocated in the same
        transaction as the insert: it survives restarts, and a refused alert
        (:class:`OutboxFullError`) does not consume one, so consumers see no gap
        that is not a real loss. ``journal(seq)``, if given, is kept in the same
        transaction until :meth:`journal_done` (what the device must still record about
        the alert: a power cut before that is reconciled at the next start).
        """
        event_id, seq = self._insert("alert", topic, build, qos, with_seq=True, journal=journal)
        if event_id is None:  # pragma: no cover - alerts are refused, never dropped
            raise OutboxError("outbox dropped an alert")
        return event_id, seq

    def _insert(
        self, kind: str, topic: str, build: Callable[[int], bytes], qos: int, with_seq: bool,
        journal: Callable[[int], bytes] | None = None,
    ) -> tuple[int | None, int]:
        if qos not in (0, 1, 2):
            raise OutboxError(f"invalid qos {qos}")
        telemetry = kind in TELEMETRY_KINDS
        with self._lock:
            seq = self._counters.get("alert_seq", 0) + 1 if with_seq else 0
            payload = build(seq)
            size = len(payload)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    fits = self._make_room(size)
                    if not fits:
                        name = "dropped_telemetry" if telemetry else "refused_alerts"
                        self._bump(name)
                        self._db.execute("COMMIT")
                        if telemetry:
                            return None, 0
                        raise OutboxFullError(
                            f"outbox full ({self._count} events, {self._bytes} bytes, all alerts):"
                            f" alert refused; {self._counters['refused_alerts']} refused so far"
                        )
                    cur = self._db.execute(
                        "INSERT INTO events (kind, topic, payload, qos) VALUES (?, ?, ?, ?)",
                        (kind, topic, sqlite3.Binary(payload), qos),
                    )
                    if with_seq:
                        self._bump("alert_seq")
                    if journal is not None:
                        self._db.execute("INSERT INTO journal (seq, record) VALUES (?, ?)",
                                         (seq, sqlite3.Binary(journal(seq))))
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    self._reload_totals()
                    raise
            except sqlite3.Error as e:
                raise OutboxError(f"outbox write failed: {e}") from e
            self._count += 1
            self._bytes += size
            self._alerts += 0 if telemetry else 1
            event_id = cur.lastrowid
            self._check_fill()
        if event_id is None:  # pragma: no cover - sqlite always sets it after INSERT
            raise OutboxError("outbox insert returned no id")
        return int(event_id), seq

    def _make_room(self, size: int) -> bool:
        """Drop the oldest telemetry until ``size`` more bytes fit; inside a transaction."""
        if size > self.max_bytes:
            return False
        while self._count + 1 > self.max_events or self._bytes + size > self.max_bytes:
            row = self._db.execute(
                "SELECT id, LENGTH(payload) FROM events WHERE kind IN ('stats', 'status')"
                " ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None:
                return False
            self._db.execute("DELETE FROM events WHERE id = ?", (row[0],))
            self._count -= 1
            self._bytes -= int(row[1])
            self._bump("dropped_telemetry")
        return True

    def _bump(self, name: str) -> None:
        self._counters[name] = self._counters.get(name, 0) + 1
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, self._counters[name]),
        )

    def _reload_totals(self) -> None:
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0),"
            " COALESCE(SUM(kind NOT IN ('stats', 'status')), 0) FROM events"
        ).fetchone()
        self._count, self._bytes, self._alerts = int(row[0]), int(row[1]), int(row[2])
        for name, value in self._db.execute("SELECT name, value FROM counters"):
            self._counters[str(name)] = int(value)

    # --- the alert journal ------------------------------------------------------

    def journal(self) -> list[tuple[int, bytes]]:
        """(seq, record) of alerts committed here whose recording is not yet done."""
        with self._lock:
            try:
                rows = self._db.execute("SELECT seq, record FROM journal ORDER BY seq").fetchall()
            except sqlite3.Error as e:
                raise OutboxError(f"outbox read failed: {e}") from e
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def journal_done(self, seq: int) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM journal WHERE seq = ?", (seq,))
            except sqlite3.Error as e:
                raise OutboxError(f"outbox write failed: {e}") from e

    # --- reading and acknowledging ----------------------------------------------

    def pending(self, after_id: int = 0, limit: int | None = None) -> list[OutboxEvent]:
        """Events not yet acknowledged, in insertion order, with id > ``after_id``."""
        sql = "SELECT id, kind, topic, payload, qos, attempts FROM events WHERE id > ? ORDER BY id"
        params: tuple[int, ...] = (after_id,)
        if limit is not None:
            sql += " LIMIT ?"
            params = (after_id, limit)
        with self._lock:
            try:
                rows = self._db.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise OutboxError(f"outbox read failed: {e}") from e
        return [
            OutboxEvent(int(r[0]), str(r[1]), str(r[2]), bytes(r[3]), int(r[4]), int(r[5]))
            for r in rows
        ]

    def get(self, event_id: int) -> OutboxEvent | None:
        found = self.pending(after_id=event_id - 1, limit=1)
        return found[0] if found and found[0].id == event_id else None

    def ack(self, event_id: int) -> bool:
        """Remove an event delivered to the broker; False if it was not there."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute(
                    "SELECT kind, LENGTH(payload) FROM events WHERE id = ?", (event_id,)
                ).fetchone()
                if row is None:
                    self._db.execute("COMMIT")
                    return False
                self._db.execute("DELETE FROM events WHERE id = ?", (event_id,))
                self._bump("acked")
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._reload_totals()
                raise OutboxError(f"outbox ack failed: {e}") from e
            self._count -= 1
            self._bytes -= int(row[1])
            self._alerts -= 0 if str(row[0]) in TELEMETRY_KINDS else 1
            self._check_fill()
        return True

    # --- status ------------------------------------------------------------------

    def depth(self) -> int:
        return self._count

    @property
    def last_seq(self) -> int:
        """The seq of the last alert accepted by ``put_alert`` (0 before the first)."""
        return self._counters["alert_seq"]

    @property
    def fill_ratio(self) -> float:
        return max(self._count / self.max_events, self._bytes / self.max_bytes)

    @property
    def warning(self) -> bool:
        """True while the outbox is at least 80% full (by count or bytes)."""
        return self.fill_ratio >= WARN_RATIO

    def _check_fill(self) -> None:
        ratio = self.fill_ratio
        if ratio >= WARN_RATIO and not self._warned:
            self._warned = True
            log.warning(
                "outbox %s is %.0f%% full (%d events, %d bytes): the broker is not taking"
                " events; telemetry will be dropped, then alerts refused",
                self.path, 100 * ratio, self._count, self._bytes,
            )
        elif ratio < REARM_RATIO and self._warned:
            self._warned = False
            log.info("outbox %s back to %.0f%% full", self.path, 100 * ratio)

    def stats(self) -> OutboxStats:
        with self._lock:
            return OutboxStats(
                depth=self._count,
                bytes=self._bytes,
                alerts=self._alerts,
                fill_ratio=round(self.fill_ratio, 4),
                warning=self.warning,
                dropped_telemetry=self._counters["dropped_telemetry"],
                refused_alerts=self._counters["refused_alerts"],
                acked=self._counters["acked"],
            )

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error as e:
                raise OutboxError(f"outbox close failed: {e}") from e

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SIDECARS: Final = ("-wal", "-shm")


def outbox_problem(path: Path) -> str | None:
    """Why the outbox file at ``path`` is unusable, or None when it opens and checks clean."""
    try:
        db = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
    except sqlite3.Error as e:
        return str(e)
    try:
        result = [str(row[0]) for row in db.execute("PRAGMA quick_check")]
        if result != ["ok"]:
            return "quick_check: " + "; ".join(result)[:250]
        tables = {str(row[0]) for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = {"events", "counters"} - tables
        return f"tables missing: {', '.join(sorted(missing))}" if missing else None
    except sqlite3.Error as e:
        return str(e)
    finally:
        db.close()


@dataclass(frozen=True)
class Quarantined:
    file: str
    quarantined_as: str
    sha256: str
    size: int
    reason: str


def quarantine(path: Path, now: datetime) -> Quarantined:
    """Move a corrupt outbox (and its WAL/SHM files) aside as ``<name>.corrupt-<time>``.

    Refused with ``OutboxError`` when the outbox is healthy or missing. The device must
    be stopped (the caller holds the audit log, which a running device keeps locked)."""
    if not path.is_file():
        raise OutboxError(f"no outbox at {path}")
    reason = outbox_problem(path)
    if reason is None:
        raise OutboxError(f"outbox {path} is not corrupt: nothing to quarantine")
    target = path.with_name(f"{path.name}.corrupt-{now.strftime('%Y%m%dT%H%M%SZ')}")
    if target.exists():
        raise OutboxError(f"{target} exists already")
    try:
        data = path.read_bytes()
        for suffix in SIDECARS:
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, target.with_name(target.name + suffix))
        os.replace(path, target)
        fsync_dir(path.parent)
    except OSError as e:
        raise OutboxError(f"cannot move outbox {path} aside: {e}") from e
    return Quarantined(path.name, target.name, hashlib.sha256(data).hexdigest(), len(data), reason[:250])
