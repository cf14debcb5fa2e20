"""The adjudication loop: outcomes the centre publishes about alerts, applied on the device.

The centre publishes one decision per message on ``<prefix>/review``, signed by the
operator's own key (the envelope and its checks are in
:mod:`edge.accountability.signed_review`); the decision inside is::

    {"schema": "edge.review/1", "event_id": "...", "outcome": "false_alert",
     "verifier_id": "officer-17", "decided_at": "2026-11-22T03:10:00.000Z", "note": "..."}

``outcome`` is one of confirmed | false_alert | not_engaged | inconclusive |
duplicate; ``note`` is optional and short (``MAX_NOTE`` characters, no
description of a person belongs in it). ``parse_review`` is pure.

What the device does with a review (``Adjudicator.apply``):

- every distinct review is written to the audit log (``adjudication`` record with
  the verifier ids); an identical message delivered twice (MQTT is at least
  once) is recorded once;
- a false alert's crop is deleted at once by the review that settles the event as a
  false alert (a ``deletion`` record follows); a later ``false_alert`` about an event
  already settled otherwise (say, confirmed) deletes nothing;
- an event is *settled* by its first decisive outcome and counted once under it
  (``confirmed``, ``false_alert``, ``not_engaged``, ``duplicate``); later,
  different outcomes are still recorded but do not count again, so the public
  figures add up to the number of alerts. ``inconclusive`` never settles;
- when the order requires two verifiers, a confirmation settles only once two
  distinct ``verifier_id`` values have confirmed the same event; the same
  verifier confirming twice counts once;
- a review of an event this device never raised is recorded (marked as such in
  the note) and changes nothing else.

The per-event state (raised, confirmers, settled outcome) is kept in a small
JSON file so that a restart cannot reset the two-verifier rule or count twice.
Order of a review's effects: the new state is worked out on a copy, the audit record
is written, then the state is saved, then evidence and counters follow; a review the
audit log refuses (guard, full disk) changes nothing and can be applied again.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from edge.accountability.evidence import EvidenceStore
from edge.audit import records
from edge.audit.chain import iso_ts
from edge.audit.records import OUTCOMES, AuditSink
from edge.errors import MalformedError, ReviewError, StateError
from edge.formats import canonical_json
from edge.fsutil import atomic_write
from edge.watchlist import canonical

SCHEMA: Final = "edge.review/1"
MAX_REVIEW_BYTES: Final = 4096
MAX_NOTE: Final = 200
SETTLING: Final = frozenset({"confirmed", "false_alert", "not_engaged", "duplicate"})
# Events are remembered this long after they were raised (twice the longest retention),
# so that a late review is still matched to its alert; older state is dropped.
KEEP_DAYS: Final = 62
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")
_KEYS: Final = frozenset({"schema", "event_id", "outcome", "verifier_id", "decided_at", "note"})
STATE_SCHEMA: Final = "edge.adjudication-state/1"


@dataclass(frozen=True)
class Review:
    event_id: str
    outcome: str
    verifier_id: str
    decided_at: datetime
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": SCHEMA, "event_id": self.event_id, "outcome": self.outcome,
                               "verifier_id": self.verifier_id, "decided_at": iso_ts(self.decided_at)}
        if self.note:
            out["note"] = self.note
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ReviewError(f"review field '{key}' must be a string")
    return value


def parse_review(data: bytes) -> Review:
    """Validate one ``edge.review/1`` message; :class:`ReviewError` names what is wrong."""
    if len(data) > MAX_REVIEW_BYTES:
        raise ReviewError(f"review message of {len(data)} bytes (limit {MAX_REVIEW_BYTES})")
    try:  # the strict reader: no duplicate keys or NaN; deep nesting is a typed error
        obj = canonical.loads_object(data, "review message")
    except MalformedError as e:
        raise ReviewError(str(e)) from e
    if obj.get("schema") != SCHEMA:
        raise ReviewError(f"review schema must be '{SCHEMA}', got {obj.get('schema')!r:.40}")
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise ReviewError(f"review has unknown field(s) {unknown}")
    event_id, verifier = _text(obj, "event_id"), _text(obj, "verifier_id")
    for key, value in (("event_id", event_id), ("verifier_id", verifier)):
        if _ID.fullmatch(value) is None:
            raise ReviewError(f"review field '{key}' must be a short identifier, got {value!r:.40}")
    outcome = _text(obj, "outcome")
    if outcome not in OUTCOMES:
        raise ReviewError(f"review outcome '{outcome:.40}' is not one of {sorted(OUTCOMES)}")
    try:
        decided_at = datetime.fromisoformat(_text(obj, "decided_at"))
    except ValueError as e:
        raise ReviewError(f"review field 'decided_at' is not an ISO 8601 time: {e}") from e
    if decided_at.utcoffset() is None:
        raise ReviewError("review field 'decided_at' must carry a UTC offset (e.g. 'Z')")
    try:  # in UTC, as the audit log writes it; 9999-12-31T23:59:59-23:59 is not a time
        decided_at = decided_at.astimezone(UTC)
    except OverflowError as e:
        raise ReviewError("review field 'decided_at' is outside the representable years in UTC") from e
    note = _text(obj, "note") if "note" in obj else ""
    if len(note) > MAX_NOTE or any(ord(c) < 32 for c in note):
        raise ReviewError(f"review note must be one line of at most {MAX_NOTE} characters")
    return Review(event_id, outcome, verifier, decided_at, note)


class OutcomeCounters(Protocol):
    """The transparency counters as the adjudicator sees them."""

    def count_outcome(self, outcome: str, now: datetime) -> None: ...


class FalseAlertSink(Protocol):
    """The false-alert monitor as the adjudicator sees it (returns its suspension reason)."""

    def false_alert(self, now: datetime) -> str | None: ...


@dataclass(frozen=True)
class Applied:
    """What one review did."""

    event_id: str
    outcome: str
    known: bool  # the device raised this alert
    repeated: bool  # the identical message was applied before: nothing was done
    counted: str | None  # the outcome this review settled the event as, if it did
    settled: str | None  # the event's settled outcome after this review
    confirmations: tuple[str, ...]  # distinct verifiers who confirmed so far
    evidence_deleted: bool


@dataclass
class _Event:
    raised_at: datetime
    settled: str | None = None
    confirmers: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # verifier|outcome|decided_at of applied reviews


class Adjudicator:
    def __init__(self, evidence: EvidenceStore, audit: AuditSink, counters: OutcomeCounters,
                 require_two_verifiers: bool = False, *, state_path: Path | None = None,
                 monitor: FalseAlertSink | None = None) -> None:
        self.evidence = evidence
        self.audit = audit
        self.counters = counters
        self.require_two_verifiers = require_two_verifiers
        self.monitor = monitor
        self.state_path = state_path
        self._lock = threading.Lock()
        self._events: dict[str, _Event] = self._load() if state_path is not None else {}

    # --- the runner's calls -------------------------------------------------------------

    def alert_raised(self, event_id: str, now: datetime) -> None:
        """Remember an alert so its reviews are matched to it (call when it is queued)."""
        with self._lock:
            self._events.setdefault(event_id, _Event(now))
            cutoff = now - timedelta(days=KEEP_DAYS)
            self._events = {k: v for k, v in self._events.items() if v.raised_at >= cutoff}
            self._save()

    def apply(self, review: Review, now: datetime) -> Applied:
        with self._lock:
            return self._apply(review, now)

    def pending(self) -> list[str]:
        """Raised alerts not yet settled by a decisive outcome."""
        with self._lock:
            return sorted(k for k, v in self._events.items() if v.settled is None)

    # --- rules --------------------------------------------------------------------------

    def _apply(self, r: Review, now: datetime) -> Applied:
        ev = self._events.get(r.event_id)
        if ev is None and r.event_id in self.evidence:  # state lost but the crop is ours
            ev = _Event(now)
        if ev is None:
            records.adjudication(self.audit, now, event_id=r.event_id, outcome=r.outcome,
                                 verifier_ids=[r.verifier_id], decided_at=r.decided_at,
                                 note=_remark("unknown event, nothing changed", r.note))
            return Applied(r.event_id, r.outcome, False, False, None, None, (), False)
        key = f"{r.verifier_id}|{r.outcome}|{iso_ts(r.decided_at)}"
        if key in ev.seen:
            return Applied(r.event_id, r.outcome, True, True, None, ev.settled, tuple(ev.confirmers), False)
        ev = _Event(ev.raised_at, ev.settled, list(ev.confirmers), [*ev.seen, key])  # committed below
        counted: str | None = None
        remark = ""
        verifier_ids = [r.verifier_id]
        if r.outcome == "confirmed":
            if r.verifier_id not in ev.confirmers:
                ev.confirmers.append(r.verifier_id)
            verifier_ids = sorted(ev.confirmers)
            needed = 2 if self.require_two_verifiers else 1
            if len(ev.confirmers) < needed:
                remark = f"confirmation {len(ev.confirmers)} of {needed} distinct verifiers"
            elif ev.settled is None:
                counted = "confirmed"
        elif r.outcome in SETTLING and ev.settled is None:
            counted = r.outcome
        if ev.settled is not None and counted is None and r.outcome != "inconclusive":
            remark = f"already settled as {ev.settled}, not counted again"
        if counted is not None:
            ev.settled = counted
        records.adjudication(self.audit, now, event_id=r.event_id, outcome=r.outcome,
                             verifier_ids=verifier_ids, decided_at=r.decided_at, note=_remark(remark, r.note))
        self._events[r.event_id] = ev
        self._save()
        deleted = False
        if counted == "false_alert":
            deleted = self.evidence.delete(r.event_id, "adjudicated a false alert", now, self.audit)
        if counted is not None:
            self.counters.count_outcome(counted, now)
            if counted == "false_alert" and self.monitor is not None:
                self.monitor.false_alert(now)
        return Applied(r.event_id, r.outcome, True, False, counted, ev.settled, tuple(ev.confirmers), deleted)

    # --- persistence --------------------------------------------------------------------

    def _load(self) -> dict[str, _Event]:
        assert self.state_path is not None
        try:
            obj = json.loads(self.state_path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise StateError(f"adjudication state {self.state_path} is unreadable: {e}") from e
        try:
            if obj.get("schema") != STATE_SCHEMA:
                raise ValueError(f"schema {obj.get('schema')!r}")
            return {k: _Event(datetime.fromisoformat(v["raised_at"]), v.get("settled"),
                              list(v.get("confirmers", [])), list(v.get("seen", [])))
                    for k, v in obj["events"].items()}
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise StateError(f"adjudication state {self.state_path} is malformed: {e}") from e

    def _save(self) -> None:
        if self.state_path is None:
            return
        events = {k: {"raised_at": iso_ts(v.raised_at), "settled": v.settled,
                      "confirmers": v.confirmers, "seen": v.seen}
                  for k, v in sorted(self._events.items())}
        data = json.dumps({"schema": STATE_SCHEMA, "events": events}, sort_keys=True).encode()
        try:
            atomic_write(self.state_path, data, 0o600)
        except OSError as e:
            raise StateError(f"cannot write adjudication state {self.state_path}: {e}") from e


def _remark(device: str, note: str) -> str:
    """The centre's note, prefixed with what the device made of the review."""
    if not device:
        return note
    return f"[device: {device}] {note}".rstrip()
