"""One object for the runner: evidence, reviews, the false-alert monitor and the public figures.

The runner owns the threads and the clock; it calls, always with ``now``:

- ``begin(order, now)`` when a deployment order is (re)loaded: counters per
  order; a *new* order takes its budget but never lifts a suspension;
- ``resume(resume, now)`` with a signed resume the order store admitted: the only
  way a suspension is lifted;
- ``alert(event_id, jpeg, captured_at, now)`` once an alert is durable in the outbox;
- ``observe_totals(faces_total, embeddings_total, now)`` from the recognizer's
  cumulative counters (tracks, embeddings); returns the suspension reason once
  matching must stop;
- ``review(payload, trust, now)`` for each message on ``<prefix>/review``: a signed
  review (edge.accountability.signed_review) verified against the trust root
  (:class:`ReviewError` or :class:`SignedDocumentError` for a refused one: log it, drop it);
- ``tick(now, active)`` on every gate change and every few seconds;
- ``housekeeping(now)`` now and then (hourly is plenty): retention purge and saves;
- ``public_payload(now)`` / ``lfr_payload(active, now)`` for the retained topics.

Files in the state directory: ``evidence/``, ``transparency.json``,
``adjudication.json``, ``false_alert_monitor.json``.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.accountability.adjudication import Adjudicator, Applied
from edge.accountability.evidence import EvidenceStore
from edge.accountability.monitor import DEFAULT_BUDGET, FalseAlertMonitor
from edge.accountability.signed_review import verify_review
from edge.accountability.transparency import FILE_NAME, Transparency, lfr_flag
from edge.audit.records import AuditSink
from edge.watchlist.order import MAX_RETENTION_DAYS, DeploymentOrder, Resume
from edge.watchlist.trust import TrustRoot


class Ledger:
    def __init__(self, state_dir: Path, audit: AuditSink, device_id: str,
                 order: DeploymentOrder | None = None) -> None:
        state_dir = Path(state_dir)
        self.audit = audit
        self.device_id = device_id
        self.evidence = EvidenceStore(state_dir / "evidence")
        self.transparency = Transparency(state_dir / FILE_NAME, device_id)
        self.monitor = FalseAlertMonitor(None if order is None else order.false_alert_budget, audit=audit,
                                         state_path=state_dir / "false_alert_monitor.json")
        self.adjudicator = Adjudicator(self.evidence, audit, self.transparency,
                                       order.require_two_verifiers if order is not None else False,
                                       state_path=state_dir / "adjudication.json", monitor=self.monitor)
        self.order = order
        self._totals: tuple[int, int] | None = None
        self._lock = threading.Lock()

    # --- deployment ---------------------------------------------------------------------

    def begin(self, order: DeploymentOrder, now: datetime) -> None:
        with self._lock:
            current = self.transparency.current
            new = current is None or current.order_id != order.order_id
            self.order = order
            self.transparency.begin(order, now)
            self.adjudicator.require_two_verifiers = order.require_two_verifiers
            if new:
                self.monitor.budget = (DEFAULT_BUDGET if order.false_alert_budget is None
                                       else float(order.false_alert_budget))
                if self.monitor.suspended is None:  # a suspension outlives the order id
                    self.monitor.reset(f"new deployment order {order.order_id}", now)

    def set_watchlist_size(self, n: int) -> None:
        self.transparency.set_watchlist_size(n)

    def resume(self, resume: Resume, now: datetime) -> None:
        """Lift a suspension by a signed resume (``OrderStore.admit_resume`` checked it)."""
        self.monitor.reset(f"signed resume {resume.resume_seq} by {resume.decided_by}: {resume.reason}"[:300],
                           now)

    # --- the pipeline -------------------------------------------------------------------

    def alert(self, event_id: str, jpeg: bytes | None, captured_at: datetime, now: datetime,
              count: bool = True) -> None:
        """Evidence kept, review expected, and (``count``) the public counter raised.

        Each step may be repeated (a replay after a power cut passes ``count=False``: the
        counter is then derived from the audit log, see ``reconcile_alert_count``)."""
        retention = self.order.retention_days if self.order is not None else MAX_RETENTION_DAYS
        if jpeg is not None:
            self.evidence.put(event_id, jpeg, captured_at, retention)
        if count:
            self.transparency.alert()
        self.adjudicator.alert_raised(event_id, now)

    def reconcile_alert_count(self, audited_at: list[datetime], now: datetime) -> None:
        """Raise each deployment's alert counter to the audited alerts in its window, saved."""
        self.transparency.reconcile_alerts(audited_at)
        self.transparency.save(now)

    def observe_totals(self, faces_total: int, embeddings_total: int, now: datetime) -> str | None:
        """Feed cumulative counters; only the growth since the last call is counted."""
        with self._lock:
            last = self._totals or (0, 0)
            if faces_total < last[0] or embeddings_total < last[1]:
                last = (0, 0)  # the recognizer was rebuilt and its counters restarted
            faces, embeddings = faces_total - last[0], embeddings_total - last[1]
            self._totals = (faces_total, embeddings_total)
        self.transparency.add_faces(faces)
        self.transparency.add_embeddings(embeddings)
        return self.monitor.faces_processed(faces, now)

    def review(self, payload: bytes, trust: TrustRoot, now: datetime) -> Applied:
        return self.adjudicator.apply(verify_review(payload, trust, self.device_id), now)

    @property
    def suspended(self) -> str | None:
        return self.monitor.suspended

    # --- time ---------------------------------------------------------------------------

    def tick(self, now: datetime, active: bool) -> None:
        self.transparency.tick(now, active)

    def housekeeping(self, now: datetime) -> int:
        """Retention purge (returns the count) and saves of the counters."""
        retention = self.order.retention_days if self.order is not None else MAX_RETENTION_DAYS
        purged = self.evidence.purge_expired(now, retention, self.audit)
        self.transparency.save(now)
        self.monitor.save()
        return purged

    def close(self, now: datetime) -> None:
        self.transparency.save(now)
        self.monitor.save()

    # --- retained topics ----------------------------------------------------------------

    def public_payload(self, now: datetime) -> dict[str, Any]:
        return self.transparency.public_payload(now)

    def lfr_payload(self, active: bool, now: datetime) -> dict[str, Any]:
        o = self.order
        return lfr_flag(active, o.site if o else "", o.public_contact if o else None, now,
                        o.order_id if o else None)
