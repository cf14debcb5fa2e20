"""Ingest over a real Mosquitto: a persistent session loses nothing while the station is down,
and a station killed with SIGKILL while alerts flow has every alert exactly once after restart."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from station import db
from station.config import BrokerConfig
from station.ingest import Ingest
from station.store import Store
from station_tests.run import Station, write_config
from station_tests.world import T0, alert, open_store
from tests.broker import Broker


def publisher(broker: Broker, name: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def alert_ids(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return [str(x) for x in conn.execute(select(db.alerts.c.event_id)).scalars()]


def wait_until(pred: object, timeout: float, what: str) -> None:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_persistent_session_and_every_topic(database: str, broker: Broker) -> None:
    store = open_store(database)
    cfg = BrokerConfig(host=broker.host, port=broker.port, client_id="station-test")
    ingest = Ingest(cfg, store).start()
    assert ingest.connected.wait(10)
    ingest.stop()  # the session stays on the broker
    dev = publisher(broker, "cam-1")
    sent = [alert("cam-1", i, T0 + timedelta(seconds=i)) for i in range(1, 21)]
    for payload in sent:
        dev.publish("edge/cam-1/alerts", payload, qos=1).wait_for_publish(5)
    dev.publish("edge/cam-1/alerts", sent[0], qos=1).wait_for_publish(5)  # a redelivery
    dev.publish("edge/cam-1/alerts", alert("cam-2", 99, T0), qos=1).wait_for_publish(5)  # foreign id
    dev.publish("edge/cam-1/alerts", b"\x00garbage", qos=1).wait_for_publish(5)
    status = {"availability": "online", "state": "recognising", "fps": 9.5}
    dev.publish("edge/cam-1/status", json.dumps(status).encode(), qos=1, retain=True).wait_for_publish(5)
    for leaf in ("stats", "transparency", "audit/checkpoint"):
        dev.publish(f"edge/cam-1/{leaf}", json.dumps({"leaf": leaf}).encode(), qos=1).wait_for_publish(5)
    again = Ingest(cfg, store).start()  # same client id: the queued messages come now
    try:
        wait_until(lambda: again.counts["refused"] == 2 and len(store.documents("checkpoint")) == 1, 20,
                   "the queued messages")
        assert sorted(alert_ids(store)) == sorted(json.loads(p)["event_id"] for p in sent)
        assert again.counts == {"stored": 20, "duplicate": 1, "refused": 2}
        (device,) = store.devices(time.time(), 60)
        assert device["online"] and device["status"]["fps"] == 9.5 and device["refused"] == 2
        assert [len(store.documents(k)) for k in ("stats", "transparency")] == [1, 1]
    finally:
        again.stop()
        dev.loop_stop()


def test_sigkill_mid_flow_then_restart_keeps_every_alert_once(database: str, broker: Broker,
                                                              tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "station", database, broker)
    station = Station(cfg, tmp_path / "station.log").start()
    store = open_store(database)
    devices = {d: publisher(broker, d) for d in ("cam-1", "cam-2")}
    sent: list[str] = []
    done = threading.Event()

    def flow() -> None:
        for i in range(1, 301):
            for d, c in devices.items():
                payload = alert(d, i, T0 + timedelta(seconds=i), f"subj-{i % 7}")
                sent.append(json.loads(payload)["event_id"])
                c.publish(f"edge/{d}/alerts", payload, qos=1)
            time.sleep(0.004)  # paces the two devices at a few hundred alerts/s together
        done.set()

    t = threading.Thread(target=flow)
    t.start()
    try:
        wait_until(lambda: len(alert_ids(store)) >= 100, 60, "the first 100 alerts stored")
        station.kill()
        at_kill = len(alert_ids(store))
        assert at_kill < 600, "killed while alerts were still flowing"
        assert done.wait(60)
        station.start()
        wait_until(lambda: len(alert_ids(store)) >= 600, 120, "all 600 alerts after the restart")
        ids = alert_ids(store)
        assert len(ids) == len(set(ids)) == 600 and set(ids) == set(sent)
        with store.engine.connect() as conn:
            sightings = conn.execute(select(func.count()).select_from(db.alerts)
                                     .where(db.alerts.c.incident_id.is_not(None))).scalar()
        assert sightings == 600
    finally:
        t.join()
        station.stop()
        for c in devices.values():
            c.loop_stop()


def test_decisions_reach_the_devices_review_topics(database: str, broker: Broker, tmp_path: Path) -> None:
    from edge.accountability.signed_review import verify_review
    from edge.watchlist.keys import load_signer
    from station.people import Signers, create_key
    from tests.accountability_world import review_trust
    from tests.broker import Subscriber

    store = open_store(database)
    create_key(tmp_path, "officer-1")
    signers = Signers(tmp_path)
    trust = review_trust({"officer-1": load_signer(tmp_path / "officer-1.ed25519")})
    devices = Subscriber(broker, ("edge/+/review",), client_id="devices")
    ingest = Ingest(BrokerConfig(host=broker.host, port=broker.port, client_id="station-rev"), store).start()
    try:
        assert ingest.connected.wait(10)
        incidents = []
        for i in range(40):  # many at once: PUBACKs race the publishing thread's bookkeeping
            got = store.alert(f"cam-{i % 2}", alert(f"cam-{i % 2}", i, T0 + timedelta(hours=i), f"s-{i}"),
                              time.time())
            assert got is not None
            incidents.append(got.incident_id)
        for inc in incidents:
            store.decide(inc, "officer-1", "not_engaged", "", signers.sign, time.time())
        ingest.wake()
        wait_until(lambda: not store.unpublished(), 30, "every review acknowledged by the broker")
        assert devices.wait_for(lambda s: len({p for _t, p, _r in s.messages}) == 40)
        for topic, payload, retained in devices.messages:
            device = topic.split("/")[1]
            assert not retained
            assert verify_review(payload, trust, device).outcome == "not_engaged"
        # cam-1 comes back online: its reviews not yet applied are sent again.
        before = sum(t == "edge/cam-1/review" for t, _p, _r in devices.messages)
        store.status("cam-1", b'{"availability": "online"}', time.time())
        ingest.wake()
        assert devices.wait_for(lambda s: sum(t == "edge/cam-1/review" for t, _p, _r in s.messages)
                                >= before + 20)
        wait_until(lambda: not store.unpublished(), 30, "the re-sent reviews acknowledged")
    finally:
        ingest.stop()
        devices.close()
