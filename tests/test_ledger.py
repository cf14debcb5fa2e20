"""The runner's single entry point: alerts, reviews over the wire format, suspension, retention."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.accountability.adjudication import Review
from edge.accountability.ledger import Ledger
from edge.errors import ReviewError
from tests.accountability_world import (
    ORDER,
    T0,
    face_crop_jpeg,
    open_audit,
    records_of,
    review_trust,
    signed,
)
from tests.broker import Broker, Subscriber


def test_a_deployment_from_alerts_to_suspension_to_a_new_order(tmp_path: Path, testdata: Path) -> None:
    crop = face_crop_jpeg(testdata)
    order = replace(ORDER, false_alert_budget=1, require_two_verifiers=False)
    with open_audit(tmp_path) as audit:
        ledger = Ledger(tmp_path, audit, "cam-north", order)
        ledger.begin(order, T0)
        assert ledger.lfr_payload(True, T0)["public_contact"] == "lfr@example.org"
        assert ledger.observe_totals(6_000, 9_000, T0) is None
        for i in range(3):
            ledger.alert(f"ev-{i}", crop, T0, T0)
        ledger.alert("ev-nocrop", None, T0, T0)  # alerts without a crop are counted all the same
        trust = review_trust()
        ledger.review(signed(Review("ev-0", "false_alert", "officer-1", T0)), trust, T0)
        assert "ev-0" not in ledger.evidence and ledger.suspended is None  # 1 in the first 10,000 faces
        with pytest.raises(ReviewError):
            ledger.review(signed(Review("ev-1", "false_alert", "officer-2", T0), "cam-south"), trust, T0)
        applied = ledger.review(signed(Review("ev-1", "false_alert", "officer-2", T0)), trust, T0)
        assert applied.evidence_deleted
        reason = ledger.suspended
        assert reason is not None and "budget of 1" in reason
        ledger.close(T0)

        # Restart, same order: still suspended; the counters came back.
        again = Ledger(tmp_path, audit, "cam-north", order)
        again.begin(order, T0 + timedelta(hours=1))
        assert again.suspended == reason
        assert again.observe_totals(100, 100, T0) == reason  # totals restart with the process
        payload = again.public_payload(T0)["deployment"]["counters"]
        assert (payload["faces_processed"], payload["embeddings_computed"]) == (6_100, 9_100)
        assert (payload["alerts"], payload["false_alerts"], payload["awaiting_review"]) == (4, 2, 2)

        # Retention: the remaining crop goes once the order's 14 days are over.
        assert again.housekeeping(T0 + timedelta(days=13)) == 0
        assert again.housekeeping(T0 + timedelta(days=14)) == 1
        assert again.evidence.event_ids() == []

        # A new order takes its budget but does not lift the suspension (a signed resume does:
        # tests/test_order_replay.py).
        second = replace(order, order_id="DO-2026-042", false_alert_budget=4)
        again.begin(second, T0 + timedelta(days=15))
        assert again.suspended == reason and again.monitor.budget == 4.0
        assert records_of(audit, "matching_resumed") == []
        assert [d.order_id for d in again.transparency.deployments()] == ["DO-2026-041", "DO-2026-042"]


def test_reviews_and_public_figures_over_a_real_broker(tmp_path: Path, testdata: Path,
                                                       broker: Broker) -> None:
    """The centre publishes reviews on <prefix>/review; the device applies them and publishes its
    figures and the LFR flag retained, so a member of the public subscribing later still sees them."""
    prefix = "edge/cam-north"
    crop = face_crop_jpeg(testdata)
    centre = publisher(broker, "centre")
    device_inbox = Subscriber(broker, (f"{prefix}/review",), client_id="cam-north")
    with open_audit(tmp_path) as audit:
        ledger = Ledger(tmp_path, audit, "cam-north", ORDER)
        ledger.begin(ORDER, T0)
        ledger.observe_totals(2_000, 2_500, T0)
        for event_id in ("ev-a", "ev-b"):
            ledger.alert(event_id, crop, T0, T0)
        sent = [Review("ev-a", "false_alert", "officer-1", T0),
                Review("ev-b", "confirmed", "officer-1", T0), Review("ev-b", "confirmed", "officer-2", T0)]
        for r in sent:
            centre.publish(f"{prefix}/review", signed(r), qos=1).wait_for_publish(5)
        assert device_inbox.wait_for(lambda s: len(s.payloads("/review")) == 3)
        for payload in device_inbox.payloads("/review"):
            ledger.review(payload, review_trust(), T0 + timedelta(minutes=1))
        assert ledger.evidence.event_ids() == ["ev-b"]
        assert [(r["event_id"], r["outcome"]) for r in records_of(audit, "adjudication")] == [
            ("ev-a", "false_alert"), ("ev-b", "confirmed"), ("ev-b", "confirmed")]
        device = publisher(broker, "cam-north-out")
        retained_topics = (("transparency", ledger.public_payload(T0)), ("lfr", ledger.lfr_payload(True, T0)))
        for leaf, body in retained_topics:
            device.publish(f"{prefix}/{leaf}", json.dumps(body).encode(), qos=1,
                           retain=True).wait_for_publish(5)
    public = Subscriber(broker, (f"{prefix}/transparency", f"{prefix}/lfr"), client_id="public")
    assert public.wait_for(lambda s: len(s.messages) == 2)
    retained = {t.rsplit("/", 1)[1]: (json.loads(p), r) for t, p, r in public.messages}
    counters = retained["transparency"][0]["deployment"]["counters"]
    assert (counters["alerts"], counters["confirmed"], counters["false_alerts"]) == (2, 1, 1)
    assert retained["lfr"][0]["live_facial_recognition"] is True
    assert retained["lfr"][0]["public_contact"] == "lfr@example.org"
    assert all(r for _, r in retained.values())
    for c in (public, device_inbox):
        c.close()
    for p in (centre, device):
        p.disconnect()
        p.loop_stop()


def publisher(broker: Broker, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    return client
