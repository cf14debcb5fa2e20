"""Public, non-biometric figures per deployment, kept across restarts.

One deployment is one deployment order. Its counters:

- ``faces_processed``: faces the recognizer tracked and looked at (one per track);
- ``embeddings_computed``: templates computed (a face may get several);
- ``alerts``: alerts raised; ``confirmed``, ``false_alerts``, ``not_engaged``,
  ``duplicates``: alerts settled by the centre's review (``adjudication``), so
  that ``alerts - settled`` is the number awaiting or inconclusive;
- ``watchlist_size``: entries of the bundle matched against (largest seen);
- ``active_seconds``: time recognition was running, from ``tick(now, active)``
  calls (the runner ticks on every gate change and every few seconds); a gap
  longer than ``MAX_TICK_S`` (a stall, a restart) counts as ``MAX_TICK_S`` at
  most, so downtime is never reported as recognition time.

Outcomes are counted under the current deployment (the latest begun): the
alert's own, unless a new order began between the alert and its review.

Nothing here is about a person: numbers, the order's id, site, window and its
public references. The file (``transparency.json`` in the state directory) is
written atomically by ``save``; the runner calls it now and then and at stop,
and outcome counts save at once. ``public_payload`` is the retained message for
``<prefix>/transparency``; ``lfr_flag`` the retained message for ``<prefix>/lfr``,
the public sign that live facial recognition is running here and whom to ask.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from edge.audit.chain import iso_ts
from edge.errors import StateError
from edge.fsutil import atomic_write
from edge.watchlist.order import MAX_RETENTION_DAYS, DeploymentOrder

SCHEMA: Final = "edge.transparency/1"
LFR_SCHEMA: Final = "edge.lfr/1"
FILE_NAME: Final = "transparency.json"
MAX_TICK_S: Final = 60.0
RATE_UNIT_FACES: Final = 10_000
_OUTCOME_FIELD: Final = {"confirmed": "confirmed", "false_alert": "false_alerts",
                         "not_engaged": "not_engaged", "duplicate": "duplicates"}


@dataclass
class Deployment:
    order_id: str
    site: str
    valid_from: str
    valid_until: str
    purpose: str = ""
    authorising_ref: str = ""
    dpia_ref: str = ""
    equality_impact_ref: str = ""
    rights_impact_ref: str = ""
    public_notice_ref: str = ""
    public_contact: str | None = None
    retention_days: int = MAX_RETENTION_DAYS
    false_alert_budget: int | None = None
    require_two_verifiers: bool = False
    camera_ids: list[str] = field(default_factory=list)
    faces_processed: int = 0
    embeddings_computed: int = 0
    alerts: int = 0
    confirmed: int = 0
    false_alerts: int = 0
    not_engaged: int = 0
    duplicates: int = 0
    watchlist_size: int = 0
    active_seconds: float = 0.0
    first_active_at: str | None = None
    last_active_at: str | None = None

    @classmethod
    def from_order(cls, order: DeploymentOrder) -> Deployment:
        return cls(order_id=order.order_id, site=order.site, valid_from=iso_ts(order.valid_from),
                   valid_until=iso_ts(order.valid_until), purpose=order.purpose,
                   authorising_ref=order.authorising_ref, dpia_ref=order.dpia_ref,
                   equality_impact_ref=order.equality_impact_ref, rights_impact_ref=order.rights_impact_ref,
                   public_notice_ref=order.public_notice_ref, public_contact=order.public_contact,
                   retention_days=order.retention_days, false_alert_budget=order.false_alert_budget,
                   require_two_verifiers=order.require_two_verifiers, camera_ids=list(order.camera_ids))

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Deployment:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in names})

    @property
    def settled(self) -> int:
        return self.confirmed + self.false_alerts + self.not_engaged + self.duplicates

    def false_alert_rate(self) -> float | None:
        """False alerts per 10,000 faces processed (None before any face)."""
        if self.faces_processed == 0:
            return None
        return self.false_alerts * RATE_UNIT_FACES / self.faces_processed

    def counters(self) -> dict[str, Any]:
        return {"faces_processed": self.faces_processed, "embeddings_computed": self.embeddings_computed,
                "alerts": self.alerts, "confirmed": self.confirmed, "false_alerts": self.false_alerts,
                "not_engaged": self.not_engaged, "duplicates": self.duplicates,
                "awaiting_review": max(0, self.alerts - self.settled), "watchlist_size": self.watchlist_size,
                "active_seconds": round(self.active_seconds, 1)}


class Transparency:
    def __init__(self, path: Path, device_id: str) -> None:
        self.path = Path(path)
        self.device_id = device_id
        self._lock = threading.Lock()
        self._deployments: dict[str, Deployment] = {}
        self._current: str | None = None
        self._last_tick: datetime | None = None
        self._last_active = False
        self.stored_device_id: str | None = None  # as read from the file
        self._load()

    # --- deployments ----------------------------------------------------------------------

    def begin(self, order: DeploymentOrder, now: datetime) -> Deployment:
        """Count from now on under ``order`` (resumes its counters if it was seen before)."""
        with self._lock:
            dep = self._deployments.get(order.order_id)
            if dep is None:
                dep = self._deployments[order.order_id] = Deployment.from_order(order)
            self._current = order.order_id
            self._last_tick, self._last_active = None, False
            self._save(now)
            return dep

    @property
    def current(self) -> Deployment | None:
        return None if self._current is None else self._deployments.get(self._current)

    def deployments(self) -> list[Deployment]:
        with self._lock:
            return sorted(self._deployments.values(), key=lambda d: (d.valid_from, d.order_id))

    # --- counting (no-ops outside a deployment: recognition cannot run there) -------------

    def add_faces(self, n: int) -> None:
        self._add("faces_processed", n)

    def add_embeddings(self, n: int) -> None:
        self._add("embeddings_computed", n)

    def alert(self) -> None:
        self._add("alerts", 1)

    def reconcile_alerts(self, audited_at: list[datetime]) -> None:
        """Each deployment counts at least the audited alerts within its window (as
        ``edge report`` cross-checks them): a counter lost to a crash is restored."""
        with self._lock:
            for dep in self._deployments.values():
                lo, hi = _parse(dep.valid_from), _parse(dep.valid_until)
                if lo is None or hi is None:
                    continue
                dep.alerts = max(dep.alerts, sum(1 for t in audited_at if lo <= t < hi))

    def count_outcome(self, outcome: str, now: datetime) -> None:
        """An alert settled by review (see ``adjudication``); saved at once."""
        name = _OUTCOME_FIELD.get(outcome)
        if name is None:
            raise StateError(f"outcome '{outcome}' is not a counted outcome ({sorted(_OUTCOME_FIELD)})")
        self._add(name, 1)
        self.save(now)

    def set_watchlist_size(self, n: int) -> None:
        with self._lock:
            dep = self.current
            if dep is not None:
                dep.watchlist_size = max(dep.watchlist_size, n)

    def tick(self, now: datetime, active: bool) -> None:
        """Recognition is ``active`` from ``now`` on; the time since the last tick counts if it was."""
        with self._lock:
            dep = self.current
            last, was = self._last_tick, self._last_active
            self._last_tick, self._last_active = now, active
            if dep is None:
                return
            stamp = iso_ts(now)
            if was and last is not None:
                dep.active_seconds += min(MAX_TICK_S, max(0.0, (now - last).total_seconds()))
                dep.last_active_at = stamp
            if active:
                dep.first_active_at = dep.first_active_at or stamp
                dep.last_active_at = stamp

    def _add(self, name: str, n: int) -> None:
        if type(n) is not int or n < 0:
            raise StateError(f"counter {name} can only grow (got {n!r})")
        with self._lock:
            dep = self.current
            if dep is not None:
                setattr(dep, name, getattr(dep, name) + n)

    # --- publishing ---------------------------------------------------------------------

    def public_payload(self, now: datetime) -> dict[str, Any]:
        """The retained ``<prefix>/transparency`` message: current deployment, figures only."""
        with self._lock:
            dep = self.current
            out: dict[str, Any] = {"schema": SCHEMA, "device_id": self.device_id, "at": iso_ts(now),
                                   "deployment": None}
            if dep is not None:
                rate = dep.false_alert_rate()
                out["deployment"] = {
                    "order_id": dep.order_id, "site": dep.site, "purpose": dep.purpose,
                    "window": {"from": dep.valid_from, "until": dep.valid_until},
                    "public_contact": dep.public_contact, "retention_days": dep.retention_days,
                    "counters": dep.counters(),
                    "false_alerts_per_10000_faces": None if rate is None else round(rate, 3),
                }
            return out

    # --- persistence --------------------------------------------------------------------

    def save(self, now: datetime) -> None:
        with self._lock:
            self._save(now)

    def _save(self, now: datetime) -> None:
        doc = {"schema": SCHEMA, "device_id": self.device_id, "updated_at": iso_ts(now),
               "current": self._current,
               "deployments": {k: asdict(v) for k, v in sorted(self._deployments.items())}}
        try:
            atomic_write(self.path, json.dumps(doc, indent=1, sort_keys=True).encode(), 0o640)
        except OSError as e:
            raise StateError(f"cannot write transparency counters {self.path}: {e}") from e

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            raise StateError(f"transparency counters {self.path} are unreadable: {e}") from e
        try:
            if doc.get("schema") != SCHEMA:
                raise ValueError(f"schema {doc.get('schema')!r}")
            self._deployments = {k: Deployment.from_json(v) for k, v in doc["deployments"].items()}
            device_id = doc.get("device_id")
            self.stored_device_id = device_id if isinstance(device_id, str) else None
            current = doc.get("current")
            self._current = current if current in self._deployments else None
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise StateError(f"transparency counters {self.path} are malformed: {e}") from e


def _parse(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def load_deployments(path: Path) -> tuple[str | None, list[Deployment]]:
    """(device id, deployments) from a transparency file, for ``edge report``."""
    if not path.exists():
        return None, []
    t = Transparency(path, "")
    return t.stored_device_id, t.deployments()


def lfr_flag(active: bool, site: str, public_contact: str | None, now: datetime,
             order_id: str | None = None) -> dict[str, Any]:
    """The retained ``<prefix>/lfr`` message: is live facial recognition running here, whom to ask."""
    return {"schema": LFR_SCHEMA, "live_facial_recognition": bool(active), "site": site,
            "public_contact": public_contact, "order_id": order_id, "since": iso_ts(now)}
