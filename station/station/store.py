"""What the station keeps and decides: alerts in, incidents, decisions with signed reviews out.

Every method takes ``now`` (UTC epoch seconds) from the caller; no clock is read
here. An alert is stored only when it keeps the firmware's contract
(edge.delivery.contract) and names the device whose topic carried it; anything
else is counted as a refusal with its reason and nothing of it is kept.
De-duplication is on ``event_id`` (the primary key), so a redelivered alert is
counted, never stored twice.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import Connection, Engine, and_, case, func, insert, or_, select, update

from edge.accountability.adjudication import MAX_NOTE, Review
from edge.audit.records import OUTCOMES
from edge.delivery.contract import validate_alert
from station import db
from station.errors import AlertRefusedError, DecisionError

DEFAULT_RETENTION_DAYS: Final = 31
# Topic leaf -> the kind of device document stored.
DOC_KINDS: Final = {"stats": "stats", "transparency": "transparency", "audit/checkpoint": "checkpoint"}
Outcome = Literal["stored", "duplicate", "refused", "status", "document"]

Signer = Callable[[Review, str], bytes]  # (review, device id) -> signed review bytes


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Refused:
    reason: str


@dataclass(frozen=True)
class Ingested:
    event_id: str
    incident_id: int
    new_incident: bool


class Store:
    def __init__(self, engine: Engine, *, incident_window_s: float = 300.0,
                 default_retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self.engine = engine
        self.window = incident_window_s
        self.default_retention_days = default_retention_days

    # --- ingest -------------------------------------------------------------------------

    def _touch(self, conn: Connection, device_id: str, now: float, **values: Any) -> None:
        d = db.devices
        row = conn.execute(select(d.c.device_id).where(d.c.device_id == device_id)).first()
        if row is None:
            conn.execute(insert(d).values(device_id=device_id, availability="unknown", last_seen=now,
                                          refused=0, duplicates=0))
        conn.execute(update(d).where(d.c.device_id == device_id).values(last_seen=now, **values))

    def _refuse(self, conn: Connection, topic_device: str, reason: str, now: float) -> None:
        conn.execute(insert(db.refusals).values(at=now, topic_device=topic_device[:128], reason=reason[:512]))
        self._touch(conn, topic_device, now, refused=db.devices.c.refused + 1)

    def alert(self, topic_device: str, payload: bytes, now: float) -> Ingested | None:
        """Store one alert; None for a redelivery. :class:`AlertRefusedError` (recorded) otherwise."""
        with self.engine.begin() as conn:
            got = self._alerts(conn, [(topic_device, payload)], now)[0]
        if isinstance(got, Refused):
            raise AlertRefusedError(f"alert on {topic_device} refused: {got.reason}")
        return got

    def _alerts(self, conn: Connection, batch: Sequence[tuple[str, bytes]],
                now: float) -> list[Ingested | Refused | None]:
        """Validate, de-duplicate, link and insert; the batch's known event ids in one query."""
        events: list[Any] = []
        for _device, payload in batch:
            try:
                events.append(json.loads(payload))
            except (UnicodeDecodeError, ValueError):
                events.append(None)
        a = db.alerts
        ids = [e["event_id"] for e in events if isinstance(e, dict) and isinstance(e.get("event_id"), str)]
        known = set(conn.execute(select(a.c.event_id).where(a.c.event_id.in_(ids))).scalars() if ids else ())
        out: list[Ingested | Refused | None] = []
        seen: set[str] = set()
        dup: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        crop_rows: list[dict[str, Any]] = []
        for (device, _payload), event in zip(batch, events, strict=True):
            # the contract also refuses an alert claiming another device than its topic's
            problems = validate_alert(event, device) if event is not None else ["alert: not JSON"]
            if problems:
                reason = "; ".join(problems)
                self._refuse(conn, device, reason, now)
                out.append(Refused(reason))
                continue
            seen.add(device)
            if event["event_id"] in known:
                dup[device] = dup.get(device, 0) + 1
                out.append(None)
                continue
            known.add(event["event_id"])
            crop = event.pop("crop_jpeg_b64", None)
            captured = epoch(event["captured_at"])
            incident, new = self._link(conn, event["subject_ref"], event["category"], captured, now)
            rows.append({"event_id": event["event_id"], "device_id": device, "seq": event["seq"],
                         "camera_id": event["camera_id"], "site": event["site"], "captured_at": captured,
                         "subject_ref": event["subject_ref"], "category": event["category"],
                         "score": float(event["score"]), "threshold": float(event["threshold"]),
                         "incident_id": incident, "body_json": json.dumps(event, sort_keys=True),
                         "received_at": now})
            if crop is not None:
                crop_rows.append({"event_id": event["event_id"], "jpeg": base64.b64decode(crop),
                                  "captured_at": captured})
            out.append(Ingested(event["event_id"], incident, new))
        if rows:  # one executemany each, not one statement per alert
            conn.execute(insert(a), rows)
        if crop_rows:
            conn.execute(insert(db.crops), crop_rows)
        for device in sorted(seen):  # one device update per batch, not per alert
            extra = {"duplicates": db.devices.c.duplicates + dup[device]} if device in dup else {}
            self._touch(conn, device, now, **extra)
        return out

    def ingest(self, messages: Sequence[tuple[str, str, bytes]], now: float) -> list[Outcome]:
        """Messages (device from the topic, leaf, payload) stored in ONE transaction (one fsync):
        all or none, so the caller acknowledges them only after this returns."""
        with self.engine.begin() as conn:
            alerts = self._alerts(conn, [(d, p) for d, leaf, p in messages if leaf == "alerts"], now)
            results = iter(alerts)
            out: list[Outcome] = []
            for device, leaf, payload in messages:
                if leaf == "alerts":
                    got = next(results)
                    out.append("duplicate" if got is None else "refused" if isinstance(got, Refused)
                               else "stored")
                elif leaf == "status":
                    self._status(conn, device, payload, now)
                    out.append("status")
                else:
                    self._document(conn, device, leaf, payload, now)
                    out.append("document")
        return out

    def _link(self, conn: Connection, subject: str, category: str, captured: float,
              now: float) -> tuple[int, bool]:
        """The open incident of ``subject`` within the window of ``captured`` (widened to include
        it, in one statement), or a new one."""
        i = db.incidents
        target = (select(i.c.id)
                  .where(i.c.subject_ref == subject, i.c.state != "decided",
                         i.c.last_at >= captured - self.window, i.c.first_at <= captured + self.window)
                  .order_by(i.c.last_at.desc()).limit(1).scalar_subquery())
        found = conn.execute(update(i).where(i.c.id == target).values(
            first_at=case((i.c.first_at < captured, i.c.first_at), else_=captured),
            last_at=case((i.c.last_at > captured, i.c.last_at), else_=captured),
            updated=now).returning(i.c.id)).scalar()
        if found is not None:
            return int(found), False
        new_id = conn.execute(insert(i).values(
            subject_ref=subject, category=category, first_at=captured, last_at=captured,
            state="pending", updated=now)).inserted_primary_key
        assert new_id is not None
        return int(new_id[0]), True

    def status(self, device_id: str, payload: bytes, now: float) -> None:
        """The retained status (or its Last Will); marks reviews the device reports applied."""
        with self.engine.begin() as conn:
            self._status(conn, device_id, payload, now)

    def _status(self, conn: Connection, device_id: str, payload: bytes, now: float) -> None:
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            doc = None
        if not isinstance(doc, dict):
            self._refuse(conn, device_id, "status: not a JSON object", now)
            return
        availability = str(doc.get("availability", "unknown"))[:16]
        before = conn.execute(select(db.devices.c.availability)
                              .where(db.devices.c.device_id == device_id)).scalar()
        self._touch(conn, device_id, now, availability=availability,
                    status_json=json.dumps(doc, sort_keys=True), status_at=now)
        if availability == "online" and before != "online":
            # Devices keep no broker session: a review published while one was away is
            # sent again now (the device records an identical review once).
            conn.execute(update(db.reviews).where(
                db.reviews.c.device_id == device_id, db.reviews.c.applied_at.is_(None),
                db.reviews.c.published_at.is_not(None)).values(published_at=None))
        for a in doc.get("reviews_applied") or ():
            if not isinstance(a, dict) or not isinstance(a.get("applied_at"), str):
                continue
            r = db.reviews
            conn.execute(update(r).where(
                r.c.device_id == device_id, r.c.event_id == str(a.get("event_id")),
                r.c.outcome == str(a.get("outcome")), r.c.published_at.is_not(None),
                r.c.applied_at.is_(None)).values(applied_at=epoch(a["applied_at"])))

    def document(self, device_id: str, kind: str, payload: bytes, now: float) -> None:
        with self.engine.begin() as conn:
            self._document(conn, device_id, kind, payload, now)

    def _document(self, conn: Connection, device_id: str, leaf: str, payload: bytes, now: float) -> None:
        kind = DOC_KINDS.get(leaf, leaf)
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            self._refuse(conn, device_id, f"{kind}: not JSON", now)
            return
        conn.execute(insert(db.device_docs).values(device_id=device_id, kind=kind, at=now,
                                                    body_json=json.dumps(doc, sort_keys=True)))
        self._touch(conn, device_id, now)

    # --- reading ------------------------------------------------------------------------

    def change_marker(self) -> tuple[float, float]:
        with self.engine.connect() as conn:
            a = conn.execute(select(func.max(db.incidents.c.updated))).scalar()
            b = conn.execute(select(func.max(db.devices.c.last_seen))).scalar()
        return float(a or 0.0), float(b or 0.0)

    def queue(self, limit: int = 50) -> list[dict[str, Any]]:
        """Incidents awaiting review, newest first, each with its sightings."""
        i, a = db.incidents, db.alerts
        with self.engine.connect() as conn:
            rows = conn.execute(select(i).where(i.c.state != "decided")
                                .order_by(i.c.last_at.desc(), i.c.id.desc()).limit(limit)).mappings().all()
            ids = [r["id"] for r in rows]
            sightings: dict[int, list[dict[str, Any]]] = {k: [] for k in ids}
            if ids:
                for s in conn.execute(select(a.c.event_id, a.c.device_id, a.c.camera_id, a.c.seq, a.c.score,
                                             a.c.threshold, a.c.captured_at, a.c.incident_id)
                                      .where(a.c.incident_id.in_(ids)).order_by(a.c.captured_at)).mappings():
                    sightings[s["incident_id"]].append(dict(s))
        return [{**dict(r), "sightings": sightings[r["id"]]} for r in rows]

    def pending_count(self) -> int:
        with self.engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(db.incidents)
                             .where(db.incidents.c.state != "decided")).scalar()
        return int(n or 0)

    def incident(self, incident_id: int) -> dict[str, Any] | None:
        i, a, d, r, c = db.incidents, db.alerts, db.decisions, db.reviews, db.crops
        with self.engine.connect() as conn:
            row = conn.execute(select(i).where(i.c.id == incident_id)).mappings().first()
            if row is None:
                return None
            timeline = []
            q = (select(a, c.c.event_id.is_not(None).label("has_crop"))
                 .outerjoin(c, c.c.event_id == a.c.event_id)
                 .where(a.c.incident_id == incident_id).order_by(a.c.captured_at))
            for s in conn.execute(q).mappings():
                body = json.loads(s["body_json"])
                timeline.append({**{k: s[k] for k in s if k != "body_json"}, "margin": body.get("margin"),
                                 "bundle": body.get("bundle"), "model": body.get("model")})
            decisions = [dict(x) for x in conn.execute(
                select(d).where(d.c.incident_id == incident_id).order_by(d.c.id)).mappings()]
            sent = [dict(x) for x in conn.execute(
                select(r.c.id, r.c.decision_id, r.c.event_id, r.c.device_id, r.c.outcome, r.c.published_at,
                       r.c.applied_at).join(d, d.c.id == r.c.decision_id)
                .where(d.c.incident_id == incident_id).order_by(r.c.id)).mappings()]
        return {**dict(row), "timeline": timeline, "decisions": decisions, "reviews": sent,
                "two_required": self._two_required([t["device_id"] for t in timeline])}

    def crop(self, event_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            v = conn.execute(select(db.crops.c.jpeg).where(db.crops.c.event_id == event_id)).scalar()
        return bytes(v) if v is not None else None

    def _device_status(self, device_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        d = db.devices
        with self.engine.connect() as conn:
            rows = conn.execute(select(d.c.device_id, d.c.status_json).where(d.c.device_id.in_(device_ids)))
            return {row.device_id: json.loads(row.status_json) if row.status_json else {} for row in rows}

    def _two_required(self, device_ids: Sequence[str]) -> bool:
        return any(bool((s.get("order") or {}).get("require_two_verifiers"))
                   for s in self._device_status(sorted(set(device_ids))).values())

    def devices(self, now: float, quiet_after_s: float) -> list[dict[str, Any]]:
        d = db.devices
        out = []
        with self.engine.connect() as conn:
            for row in conn.execute(select(d).order_by(d.c.device_id)).mappings():
                status = json.loads(row["status_json"]) if row["status_json"] else {}
                quiet = now - row["last_seen"] > quiet_after_s
                online = row["availability"] == "online" and not quiet
                out.append({**dict(row), "status": status, "quiet": quiet, "online": online})
        return out

    def documents(self, kind: str, device_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        x = db.device_docs
        q = select(x).where(x.c.kind == kind)
        if device_id is not None:
            q = q.where(x.c.device_id == device_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(x.c.at.desc(), x.c.id.desc()).limit(limit)).mappings().all()
        return [{**dict(r), "body": json.loads(r["body_json"])} for r in reversed(rows)]

    # --- decisions ----------------------------------------------------------------------

    def decide(self, incident_id: int, username: str, outcome: str, note: str, sign: Signer,
               now: float) -> dict[str, Any]:
        """Record ``username``'s decision, queue one signed review per alert to its device."""
        if outcome not in OUTCOMES:
            raise DecisionError(f"outcome {outcome!r} is not one of {sorted(OUTCOMES)}")
        note = " ".join(note.split())
        if len(note) > MAX_NOTE:
            raise DecisionError(f"the note is longer than {MAX_NOTE} characters")
        inc = self.incident(incident_id)
        if inc is None:
            raise DecisionError(f"no incident {incident_id}")
        if inc["state"] == "decided":
            raise DecisionError(f"incident {incident_id} is already decided ({inc['outcome']})")
        confirmers = {x["username"] for x in inc["decisions"] if x["outcome"] == "confirmed"}
        if outcome == "confirmed" and username in confirmers:
            raise DecisionError("you have already confirmed this incident; a second operator must")
        state: str = "decided"
        final: str | None = outcome
        if outcome == "confirmed" and inc["two_required"] and len(confirmers) < 1:
            state, final = "awaiting_second", None
        decided_at = datetime.fromtimestamp(now, UTC)
        i = db.incidents
        with self.engine.begin() as conn:
            changed = conn.execute(update(i).where(i.c.id == incident_id, i.c.state == inc["state"])
                                   .values(state=state, outcome=final, updated=now)).rowcount
            if changed != 1:
                raise DecisionError(f"incident {incident_id} changed meanwhile; reload and decide again")
            did = conn.execute(insert(db.decisions).values(
                incident_id=incident_id, username=username, outcome=outcome, note=note,
                decided_at=now)).inserted_primary_key
            assert did is not None
            for t in inc["timeline"]:
                review = Review(t["event_id"], outcome, username, decided_at, note)
                conn.execute(insert(db.reviews).values(
                    decision_id=int(did[0]), event_id=t["event_id"], device_id=t["device_id"],
                    outcome=outcome, envelope=sign(review, t["device_id"])))
            if outcome == "false_alert":
                for t in inc["timeline"]:
                    self._delete_crop(conn, t["event_id"], "adjudicated a false alert", now)
        return {"state": state, "outcome": final, "alerts": len(inc["timeline"])}

    def unpublished(self, limit: int = 100) -> list[tuple[int, str, bytes]]:
        r = db.reviews
        with self.engine.connect() as conn:
            rows = conn.execute(select(r.c.id, r.c.device_id, r.c.envelope).where(r.c.published_at.is_(None))
                                .order_by(r.c.id).limit(limit)).all()
        return [(int(x.id), str(x.device_id), bytes(x.envelope)) for x in rows]

    def mark_published(self, review_id: int, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(db.reviews).where(db.reviews.c.id == review_id).values(published_at=now))

    # --- retention ----------------------------------------------------------------------

    def _delete_crop(self, conn: Connection, event_id: str, reason: str, now: float) -> bool:
        gone = conn.execute(db.crops.delete().where(db.crops.c.event_id == event_id)).rowcount
        if gone:
            conn.execute(insert(db.deletions).values(at=now, event_id=event_id, reason=reason))
        return bool(gone)

    def apply_retention(self, now: float) -> int:
        """Delete every crop older than its device's order retention (default if unknown)."""
        days = {k: int((s.get("order") or {}).get("retention_days") or self.default_retention_days)
                for k, s in self._device_status(self._device_ids()).items()}
        a, c = db.alerts, db.crops
        n = 0
        with self.engine.begin() as conn:
            conds = [and_(a.c.device_id == dev, c.c.captured_at < now - keep * 86400.0)
                     for dev, keep in days.items()]
            conds.append(and_(a.c.device_id.not_in(list(days)),
                              c.c.captured_at < now - self.default_retention_days * 86400.0))
            expired = conn.execute(select(c.c.event_id).join(a, a.c.event_id == c.c.event_id)
                                   .where(or_(*conds))).scalars().all()
            for event_id in expired:
                n += self._delete_crop(conn, event_id, "end of retention", now)
        return n

    def _device_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [str(x) for x in conn.execute(select(db.devices.c.device_id)).scalars()]

    def deletions(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(db.deletions).order_by(db.deletions.c.id.desc())
                                                  .limit(limit)).mappings()]

    # --- people and the action log ------------------------------------------------------

    def log(self, username: str, action: str, detail: str, ok: bool, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(db.action_log).values(at=now, username=username[:64], action=action[:64],
                                                      detail=detail, ok=ok))

    def actions(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(db.action_log).order_by(db.action_log.c.id.desc())
                                                  .limit(limit)).mappings()]

    def refusal_rows(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(db.refusals).order_by(db.refusals.c.id.desc())
                                                  .limit(limit)).mappings()]

    def add_user(self, username: str, password_hash: str, role: str, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(db.users).values(username=username, password_hash=password_hash, role=role,
                                                 created_at=now))

    def user(self, username: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(db.users).where(db.users.c.username == username)).mappings().first()
        return dict(row) if row is not None else None

    def set_password(self, username: str, password_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(db.users).where(db.users.c.username == username)
                         .values(password_hash=password_hash))
