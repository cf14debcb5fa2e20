"""Storage on SQLite and PostgreSQL: contract validation, device from the topic, de-duplication,
incidents across cameras, decisions signed for the devices, retention, migrations, append-only log."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from edge.accountability.signed_review import verify_review
from edge.watchlist.keys import load_signer
from station import db
from station.errors import AlertRefusedError, DecisionError, SchemaError
from station.people import Signers, create_key
from station.store import Store
from station_tests.world import T0, alert, crop_jpeg, open_store
from tests.accountability_world import review_trust

NOW = T0.timestamp()


def count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(db.metadata.tables[table])).scalar() or 0)


def test_alerts_are_validated_deduplicated_and_linked_across_cameras(database: str, testdata: Path) -> None:
    store = open_store(database, window_s=120)
    crop = crop_jpeg(testdata)
    a1 = alert("cam-1", 1, T0, crop=crop)
    a2 = alert("cam-2", 1, T0 + timedelta(seconds=40), crop=crop)
    got = store.alert("cam-1", a1, NOW)
    assert got is not None and got.new_incident
    assert store.alert("cam-1", a1, NOW + 1) is None, "a redelivery is recognised by its event_id"
    second = store.alert("cam-2", a2, NOW + 2)
    assert second is not None and second.incident_id == got.incident_id and not second.new_incident
    later = store.alert("cam-1", alert("cam-1", 2, T0 + timedelta(minutes=10)), NOW + 3)
    other = store.alert("cam-2", alert("cam-2", 2, T0 + timedelta(seconds=50), "subj-biden"), NOW + 4)
    assert later is not None and later.new_incident, "outside the window: a new incident"
    assert other is not None and other.new_incident, "another subject: another incident"
    assert count(store, "alerts") == 4 and count(store, "crops") == 2
    inc = store.incident(got.incident_id)
    assert inc is not None
    assert [(t["device_id"], t["seq"]) for t in inc["timeline"]] == [("cam-1", 1), ("cam-2", 1)]
    assert all(t["has_crop"] for t in inc["timeline"])
    assert store.crop(json.loads(a1)["event_id"]) == crop
    devices = {d["device_id"]: d for d in store.devices(NOW + 5, 60)}
    assert devices["cam-1"]["duplicates"] == 1 and not devices["cam-1"]["quiet"]
    store.status("cam-1", b'{"availability": "online"}', NOW + 10)
    assert [d["online"] for d in store.devices(NOW + 60, 60) if d["device_id"] == "cam-1"] == [True]
    quiet = [d for d in store.devices(NOW + 71, 60) if d["device_id"] == "cam-1"]
    assert quiet[0]["quiet"] and not quiet[0]["online"], "nothing for over a minute: flagged"
    assert next(i["id"] for i in store.queue()) == later.incident_id, "newest first"


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "not JSON"),
    (b'{"schema": "edge.alert/1"}', "event_id: missing"),
    (json.dumps({**json.loads(alert("cam-1", 1, T0)), "score": 0.1}).encode(), "below the threshold"),
    # cam-1's topic carrying cam-2's alert
    (alert("cam-2", 1, T0), "does not match the topic's device 'cam-1'"),
])
def test_refused_alerts_leave_nothing_but_a_count(database: str, payload: bytes, reason: str) -> None:
    store = open_store(database)
    with pytest.raises(AlertRefusedError, match=reason):
        store.alert("cam-1", payload, NOW)
    assert count(store, "alerts") == 0 and count(store, "incidents") == 0 and count(store, "crops") == 0
    assert next(r["reason"] for r in store.refusal_rows()).find(reason) >= 0
    assert {d["device_id"]: d["refused"] for d in store.devices(NOW, 60)} == {"cam-1": 1}


def test_decisions_are_signed_per_device_and_wait_for_a_second_operator(
        database: str, testdata: Path, tmp_path: Path) -> None:
    store = open_store(database)
    keys = tmp_path / "keys"
    for name in ("officer-1", "officer-2"):
        create_key(keys, name)
    signers = Signers(keys)
    for dev in ("cam-1", "cam-2"):
        store.status(dev, json.dumps({"availability": "online", "state": "recognising",
                                      "order": {"valid": True, "require_two_verifiers": True}}).encode(), NOW)
    crop = crop_jpeg(testdata)
    first = store.alert("cam-1", alert("cam-1", 1, T0, crop=crop), NOW)
    store.alert("cam-2", alert("cam-2", 5, T0 + timedelta(seconds=30), crop=crop), NOW)
    assert first is not None
    r = store.decide(first.incident_id, "officer-1", "confirmed", "matches the list", signers.sign, NOW + 10)
    assert r == {"state": "awaiting_second", "outcome": None, "alerts": 2}
    with pytest.raises(DecisionError, match="second operator"):
        store.decide(first.incident_id, "officer-1", "confirmed", "", signers.sign, NOW + 11)
    r = store.decide(first.incident_id, "officer-2", "confirmed", "", signers.sign, NOW + 12)
    assert r["state"] == "decided" and r["outcome"] == "confirmed"
    with pytest.raises(DecisionError, match="already decided"):
        store.decide(first.incident_id, "officer-2", "false_alert", "", signers.sign, NOW + 13)
    # One signed review per alert and decision, addressed to the device that raised the alert,
    # verifiable by that device against a trust root listing the officers' keys.
    trust = review_trust({n: load_signer(keys / f"{n}.ed25519") for n in ("officer-1", "officer-2")})
    outbox = store.unpublished()
    assert len(outbox) == 4
    for _rid, device, envelope in outbox:
        review = verify_review(envelope, trust, device)
        assert review.outcome == "confirmed" and review.verifier_id in ("officer-1", "officer-2")
    # The device reports the reviews it applied on its status: the station shows them applied.
    for rid, _d, _e in outbox:
        store.mark_published(rid, NOW + 14)
    ev = store.incident(first.incident_id)
    assert ev is not None
    cam1 = ev["timeline"][0]["event_id"]
    applied_doc = {"availability": "online", "reviews_applied": [
        {"event_id": cam1, "outcome": "confirmed", "applied_at": "2026-12-01T09:00:20Z"}]}
    store.status("cam-1", json.dumps(applied_doc).encode(), NOW + 20)
    after = store.incident(first.incident_id)
    assert after is not None
    applied = {(r["device_id"], r["applied_at"] is not None) for r in after["reviews"]}
    assert applied == {("cam-1", True), ("cam-2", False)}
    # cam-2 went away and came back: its reviews not yet applied are sent again.
    assert store.unpublished() == []
    store.status("cam-2", json.dumps({"availability": "offline"}).encode(), NOW + 30)
    store.status("cam-2", json.dumps({"availability": "online"}).encode(), NOW + 40)
    assert sorted(d for _r, d, _e in store.unpublished()) == ["cam-2", "cam-2"]


def test_false_alert_deletes_crops_at_once_and_retention_the_rest(
        database: str, testdata: Path, tmp_path: Path) -> None:
    store = open_store(database)
    create_key(tmp_path, "officer-1")
    signers = Signers(tmp_path)
    crop = crop_jpeg(testdata)
    fa = store.alert("cam-1", alert("cam-1", 1, T0, crop=crop), NOW)
    kept = store.alert("cam-1", alert("cam-1", 2, T0, "subj-biden", crop=crop), NOW)
    assert fa is not None and kept is not None
    store.decide(fa.incident_id, "officer-1", "false_alert", "", signers.sign, NOW + 5)
    assert store.crop(fa.event_id) is None and store.crop(kept.event_id) is not None
    assert [d["reason"] for d in store.deletions()] == ["adjudicated a false alert"]
    store.status("cam-1", json.dumps({"order": {"retention_days": 14}}).encode(), NOW)
    assert store.apply_retention(NOW + 13 * 86400) == 0
    assert store.apply_retention(NOW + 14 * 86400 + 1) == 1
    assert store.crop(kept.event_id) is None
    assert next(d["reason"] for d in store.deletions()) == "end of retention"
    assert count(store, "alerts") == 2, "the alert record stays, only the image goes"


def test_schema_versions_and_the_append_only_logs(database: str) -> None:
    store = open_store(database)
    store.log("officer-1", "login", "from 127.0.0.1", True, NOW)
    for stmt in (update(db.action_log).values(detail="x"), db.action_log.delete()):
        with pytest.raises(SQLAlchemyError, match="append-only"), store.engine.begin() as conn:
            conn.execute(stmt)
    assert count(store, "action_log") == 1
    assert db.migrate(store.engine) == db.SCHEMA_VERSION, "migrating twice changes nothing"
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": db.SCHEMA_VERSION + 1})
    with pytest.raises(SchemaError, match="newer than this station knows"):
        db.migrate(store.engine)


def test_a_batch_is_stored_in_one_transaction(database: str) -> None:
    store = open_store(database)
    a1 = alert("cam-1", 1, T0)
    batch = [("cam-1", "alerts", a1), ("cam-1", "alerts", a1), ("cam-1", "alerts", alert("cam-2", 1, T0)),
             ("cam-1", "status", b'{"availability": "online"}'), ("cam-1", "stats", b'{"fps": 9}'),
             ("cam-1", "alerts", alert("cam-1", 2, T0 + timedelta(seconds=5)))]
    assert store.ingest(batch, NOW) == ["stored", "duplicate", "refused", "status", "document", "stored"]
    assert count(store, "alerts") == 2 and count(store, "incidents") == 1
    (dev,) = store.devices(NOW, 60)
    assert (dev["duplicates"], dev["refused"], dev["availability"]) == (1, 1, "online")
