"""Runtime false-alert monitor: matching stops when it misfires more than the order allows.

Unit (decided here, used by the order's ``false_alert_budget``): the budget is the
largest tolerated number of **false alerts per 10,000 faces processed**
(``UNIT_FACES``). A face processed is one face the recognizer tracked and looked
at (one track), whatever the number of embeddings computed for it. Example: a
budget of 1 means at most one adjudicated false alert per 10,000 faces seen.

The rate is false alerts / max(faces processed, ``min_faces``) x 10,000, so it is
not judged on a handful of faces: before the minimum sample, matching is
suspended only when the false alerts already exceed what the budget allows for
the whole minimum sample (more faces could not bring the rate back under it).
The default minimum sample is the unit itself: at most ``budget`` false alerts in
the first 10,000 faces, then at most ``budget`` per 10,000.

Note: ``DeploymentOrder.false_alert_budget`` is an integer, so budgets are whole
false alerts per 10,000 faces; ``None`` in the order means ``DEFAULT_BUDGET``.

A suspension is sticky: only ``reset`` (on a signed resume, see ``Ledger.resume``)
clears it, and both are written to the audit log. The state is
kept in a small JSON file when ``state_path`` is given, so a restart is not a way
out of a suspension. Faces counted since the last save may be lost on a crash,
which can only make the rate look worse, never better.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from edge.audit import records
from edge.audit.records import AuditSink
from edge.errors import StateError
from edge.fsutil import atomic_write

UNIT_FACES: Final = 10_000
DEFAULT_BUDGET: Final = 1.0  # per UNIT_FACES, when the order sets none
DEFAULT_MIN_FACES: Final = UNIT_FACES  # "at most N in the first 10,000 faces, then N per 10,000"
STATE_SCHEMA: Final = "edge.false-alert-monitor/1"


@dataclass(frozen=True)
class MonitorState:
    faces: int
    false_alerts: int
    rate: float  # false alerts per UNIT_FACES over max(faces, min_faces)
    budget: float
    suspended: str | None


class FalseAlertMonitor:
    def __init__(self, budget: float | None = None, *, min_faces: int = DEFAULT_MIN_FACES,
                 audit: AuditSink | None = None, state_path: Path | None = None) -> None:
        b = DEFAULT_BUDGET if budget is None else float(budget)
        if not b >= 0 or min_faces < 1:
            raise StateError(f"false-alert budget must be >= 0 and min_faces >= 1,"
                             f" got {budget} and {min_faces}")
        self.budget = b
        self.min_faces = min_faces
        self.audit = audit
        self.state_path = state_path
        self._lock = threading.Lock()
        self._faces = 0
        self._false = 0
        self._suspended: str | None = None
        if state_path is not None:
            self._load()

    # --- feeding ------------------------------------------------------------------------

    def faces_processed(self, n: int, now: datetime) -> str | None:
        """Add ``n`` faces; returns the suspension reason if matching must stop."""
        if n < 0:
            raise StateError(f"faces processed cannot decrease (got {n})")
        with self._lock:
            self._faces += n
            return self._check(now)

    def false_alert(self, now: datetime) -> str | None:
        with self._lock:
            self._false += 1
            reason = self._check(now)
            self._save()
            return reason

    def reset(self, reason: str, now: datetime) -> None:
        """Start counting afresh and lift a suspension (logged)."""
        with self._lock:
            was = self._suspended
            self._faces = self._false = 0
            self._suspended = None
            self._save()
            if was is not None and self.audit is not None:
                records.matching_resumed(self.audit, now, reason=reason)

    def save(self) -> None:
        """Persist the face count (call now and then, and at shutdown)."""
        with self._lock:
            self._save()

    # --- reading ------------------------------------------------------------------------

    @property
    def suspended(self) -> str | None:
        return self._suspended

    def rate(self) -> float:
        return self._false * UNIT_FACES / max(self._faces, self.min_faces)

    def state(self) -> MonitorState:
        with self._lock:
            return MonitorState(self._faces, self._false, self.rate(), self.budget, self._suspended)

    # --- internals ----------------------------------------------------------------------

    def _check(self, now: datetime) -> str | None:
        if self._suspended is not None or self._false == 0:
            return self._suspended
        rate = self.rate()
        if rate <= self.budget:
            return None
        self._suspended = (
            f"false alerts {self._false} in {self._faces} faces = {rate:.2f} per {UNIT_FACES:,} faces,"
            f" above the order's budget of {self.budget:g}; matching suspended until a signed resume"
            " (`edge order resume`, sent on the device's resume topic) is applied"
        )
        self._save()
        if self.audit is not None:
            records.matching_suspended(self.audit, now, reason=self._suspended, false_alerts=self._false,
                                       faces_processed=self._faces, budget=self.budget)
        return self._suspended

    def _load(self) -> None:
        assert self.state_path is not None
        try:
            obj = json.loads(self.state_path.read_text("utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            raise StateError(f"false-alert monitor state {self.state_path} is unreadable: {e}") from e
        if not isinstance(obj, dict) or obj.get("schema") != STATE_SCHEMA \
                or type(obj.get("faces")) is not int or type(obj.get("false_alerts")) is not int:
            raise StateError(f"false-alert monitor state {self.state_path} is malformed")
        suspended = obj.get("suspended")
        self._faces, self._false = obj["faces"], obj["false_alerts"]
        self._suspended = suspended if isinstance(suspended, str) else None

    def _save(self) -> None:
        if self.state_path is None:
            return
        data = json.dumps({"schema": STATE_SCHEMA, "faces": self._faces, "false_alerts": self._false,
                           "suspended": self._suspended, "budget": self.budget}, sort_keys=True).encode()
        try:
            atomic_write(self.state_path, data, 0o600)
        except OSError as e:
            raise StateError(f"cannot write false-alert monitor state {self.state_path}: {e}") from e
