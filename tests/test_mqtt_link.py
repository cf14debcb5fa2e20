"""The MQTT link against a real Mosquitto: outage, crash, ACL refusal, TLS, status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from edge.backoff import backoff_delay
from edge.delivery.contract import AlertStream
from edge.delivery.mqtt import LinkConfig, MqttLink
from edge.delivery.outbox import Outbox
from edge.delivery.topics import Topics
from tests.broker import Broker, Pki, Subscriber, make_pki

ROOT = Path(__file__).resolve().parents[1]
DEV = "dev-1"
T = Topics.for_device(DEV)  # the names the link uses, from the one value object


def plain(broker: Broker, **kw: Any) -> LinkConfig:
    return LinkConfig(device_id=DEV, host=broker.host, port=broker.port, tls=False,
                      backoff_min_s=0.1, reconnect_max_s=1.0, **kw)


def alert(seq: int) -> bytes:
    return json.dumps({"event_id": str(uuid.uuid4()), "seq": seq, "device_id": DEV}).encode()


def until(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def status_of(sub: Subscriber) -> dict[str, Any] | None:
    found = sub.payloads("/status")
    return json.loads(found[-1]) if found else None


def test_delivers_alerts_status_bundle_and_clean_close(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker, (T.leaf("#"),))
    received: list[tuple[str, bytes]] = []
    acked: list[int] = []
    with Outbox(tmp_path / "o.db") as ob:
        link = MqttLink(plain(broker), ob, on_message=lambda t, p: received.append((t, p)),
                        on_ack=acked.append)
        link.set_status({"state": "running", "bundle_version": 3})
        link.start()
        assert until(lambda: link.connected)
        ids = [link.queue_alert(alert)[0] for _ in range(5)]
        assert sub.wait_for(lambda s: len(s.payloads("/alerts")) == 5)
        assert [json.loads(p)["seq"] for p in sub.payloads("/alerts")] == [1, 2, 3, 4, 5]
        assert until(lambda: ob.depth() == 0) and sorted(acked) == ids
        st = status_of(sub)
        assert st is not None and st["availability"] == "online" and st["bundle_version"] == 3
        # The subscribed bundle topic reaches the handler given at construction.
        sub.client.publish(T.bundle, b"signed-bundle-bytes", qos=1)
        assert until(lambda: received == [(T.bundle, b"signed-bundle-bytes")])
        assert link.alive()
        assert link.close(drain_timeout=30) is True
        assert not link.alive()
    assert sub.wait_for(lambda s: (status_of(s) or {}).get("availability") == "offline")
    assert status_of(sub) == {"availability": "offline", "bundle_version": 3,
                              "device_id": DEV, "reason": "shutdown", "state": "running"}
    sub.close()


@pytest.mark.slow
def test_subscriptions_are_sent_before_the_online_status(broker: Broker, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever sees "online" may publish a bundle at once: it must meet an active subscription."""
    from paho.mqtt import client as mqtt

    calls: list[str] = []
    real_publish, real_subscribe = mqtt.Client.publish, mqtt.Client.subscribe

    def publish(self: Any, topic: str, *a: Any, **kw: Any) -> Any:
        calls.append(f"publish {topic}")
        return real_publish(self, topic, *a, **kw)

    def subscribe(self: Any, topic: Any, *a: Any, **kw: Any) -> Any:
        calls.append("subscribe")
        return real_subscribe(self, topic, *a, **kw)

    monkeypatch.setattr(mqtt.Client, "publish", publish)
    monkeypatch.setattr(mqtt.Client, "subscribe", subscribe)
    received: list[tuple[str, bytes]] = []
    with Outbox(tmp_path / "o.db") as ob:
        link = MqttLink(plain(broker), ob, on_message=lambda t, p: received.append((t, p)),
                        on_ack=lambda _i: None)
        link.start()
        try:
            assert until(lambda: f"publish {T.status}" in calls)
            assert "subscribe" in calls
            assert calls.index("subscribe") < calls.index(f"publish {T.status}"), calls
        finally:
            link.close(drain_timeout=30)


def test_broker_outage_loses_nothing(make_broker: Callable[..., Broker], tmp_path: Path) -> None:
    broker = make_broker()
    saved = broker.workdir / "data" / "mosquitto.db"
    before = saved.stat().st_mtime_ns if saved.exists() else -1
    sub = Subscriber(broker, (T.alerts, T.status), client_id="central",
                     persistent=True)
    # The broker's autosave has written the consumer's session, so the kill keeps it.
    assert until(lambda: saved.exists() and saved.stat().st_mtime_ns > before, 10)
    n = 60
    with Outbox(tmp_path / "o.db") as ob:
        link = MqttLink(plain(broker), ob).start()
        assert until(lambda: link.connected)

        def produce() -> None:
            for _ in range(n):
                link.queue_alert(alert)
                time.sleep(0.05)

        producer = threading.Thread(target=produce)
        producer.start()
        assert until(lambda: len(sub.payloads("/alerts")) >= 3)  # some got through before the kill
        broker.kill()
        killed_at = len(sub.payloads("/alerts"))
        assert until(lambda: not link.connected, 5)
        assert until(lambda: ob.depth() >= 10, 10)  # alerts accumulate on disk during the outage
        broker.start()
        producer.join()
        assert until(lambda: ob.depth() == 0, 20), link.health()
        assert sub.wait_for(lambda s: len({json.loads(p)["event_id"]
                                           for p in s.payloads("/alerts")}) == n, 20)
        health = link.health()
        assert link.close(2) is True
    stream = AlertStream()
    for p in sub.payloads("/alerts"):
        stream.add(json.loads(p))
    assert len(stream.seen) == n and stream.gaps() == {}
    assert stream.seqs[DEV] == set(range(1, n + 1))
    assert 0 < killed_at < n
    # The retained status was published again after the reconnect.
    onlines = [p for p in sub.payloads("/status") if json.loads(p)["availability"] == "online"]
    assert len(onlines) >= 2
    assert health.connects >= 2 and health.refused == 0
    sub.close()


def test_acl_refusal_keeps_event_and_counts(make_broker: Callable[..., Broker],
                                            tmp_path: Path) -> None:
    acl = (f"topic readwrite {T.status}\n"
           f"topic read {T.bundle}\n"
           f"topic read {T.review}\n")
    broker = make_broker(acl=acl)
    with Outbox(tmp_path / "o.db") as ob:
        link = MqttLink(plain(broker, refused_retry_s=0.3), ob).start()
        assert until(lambda: link.connected)
        event_id, _ = link.queue_alert(alert)
        assert until(lambda: link.health().refused >= 1)
        # Retried later (the ACL may be fixed), still refused, still kept.
        assert until(lambda: link.health().refused >= 3, 5)
        health = link.health()
        assert health.last_refusal is not None and "0x87" in health.last_refusal
        assert [e.id for e in ob.pending()] == [event_id]
        assert health.delivered == 0 and health.outbox.depth == 1
        assert link.close(0.5) is False  # the refused alert is still waiting
        assert [e.id for e in ob.pending()] == [event_id]
    assert "Denied PUBLISH" in broker.log_text()


@pytest.mark.slow
def test_tls_with_client_certificates(tls_broker: Broker, test_pki: Pki,
                                     tmp_path: Path) -> None:
    broker = tls_broker
    sub = Subscriber(broker, (T.alerts,), tls=test_pki.clients["central"])
    tls = test_pki.clients[DEV]
    cfg = LinkConfig(device_id=DEV, host="127.0.0.1", port=broker.port, tls=True,
                     ca=tls.ca, cert=tls.cert, key=tls.key, backoff_min_s=0.1)
    with Outbox(tmp_path / "o.db") as ob:
        link = MqttLink(cfg, ob).start()
        link.queue_alert(alert)
        assert sub.wait_for(lambda s: len(s.payloads("/alerts")) == 1)
        assert link.close(2) is True
    assert f"u'{DEV}'" in broker.log_text()  # the certificate CN is the username
    sub.close()

    # A device holding a certificate from another CA never gets through.
    bad = make_pki(tmp_path / "other", (DEV,)).clients[DEV]
    bad_cfg = LinkConfig(**{**asdict(cfg), "cert": bad.cert, "key": bad.key})
    with Outbox(tmp_path / "o2.db") as ob:
        link = MqttLink(bad_cfg, ob).start()
        link.queue_alert(alert)
        assert until(lambda: "UNKNOWN_CA" in (link.health().last_error or ""), 10)
        assert not link.connected and ob.depth() == 1
        link.close(0.2)


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from edge.delivery.mqtt import LinkConfig, MqttLink
    from edge.delivery.outbox import Outbox
    cfg = LinkConfig(**json.loads(sys.argv[2]))
    link = MqttLink(cfg, Outbox(Path(sys.argv[3]))).start()
    while not link.connected:
        time.sleep(0.02)
    print("connected", flush=True)
    for line in sys.stdin:
        print(link.queue_alert(lambda _seq: line.strip().encode())[0], flush=True)
    """
)


def test_firmware_crash_before_puback_delivers_after_restart(
    make_broker: Callable[..., Broker], tmp_path: Path
) -> None:
    broker = make_broker()
    sub = Subscriber(broker, (T.leaf("#"),), client_id="central", persistent=True)
    cfg = plain(broker)
    db = tmp_path / "o.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ROOT), json.dumps(asdict(cfg)), str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "connected"
        assert sub.wait_for(lambda s: (status_of(s) or {}).get("availability") == "online")
        os.kill(broker.pid, signal.SIGSTOP)  # the broker can no longer PUBACK anything
        event = alert(1)
        child.stdin.write(event.decode() + "\n")
        child.stdin.flush()
        written = int(child.stdout.readline())
        child.send_signal(signal.SIGKILL)  # written, published maybe, never acknowledged
        child.wait()
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    # The broker notices the dead connection and publishes the Last Will.
    assert sub.wait_for(lambda s: (status_of(s) or {}).get("reason") == "connection lost")

    with Outbox(db) as ob:
        assert [e.id for e in ob.pending()] == [written]
        link = MqttLink(cfg, ob).start()
        assert until(lambda: ob.depth() == 0)
        assert link.health().delivered == 1  # this process delivered it, not the dead one
        link.close(2)
    eid = json.loads(event)["event_id"]
    assert sub.wait_for(lambda s: eid in {json.loads(p)["event_id"]
                                          for p in s.payloads("/alerts")})
    sub.close()


def test_periodic_stats_go_through_the_outbox(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker, (T.stats,))
    counter = {"frames": 0}

    def stats() -> dict[str, Any]:
        counter["frames"] += 10
        return {"frames": counter["frames"], "alerts": 0}

    with Outbox(tmp_path / "o.db") as ob:
        link = MqttLink(plain(broker, stats_interval_s=0.2, stats_qos=1), ob,
                        stats_provider=stats).start()
        assert sub.wait_for(lambda s: len(s.payloads("/stats")) >= 3)
        link.close(1)
        assert ob.depth() == 0
    frames = [json.loads(p)["frames"] for p in sub.payloads("/stats")]
    assert frames == sorted(frames) and frames[0] == 10
    sub.close()


def test_callback_exception_is_contained(broker: Broker, tmp_path: Path) -> None:
    def boom(_t: str, _p: bytes) -> None:
        raise ValueError("handler bug")

    sub = Subscriber(broker, (T.alerts,))
    with Outbox(tmp_path / "o.db") as ob:
        link = MqttLink(plain(broker), ob, on_message=boom).start()
        assert until(lambda: link.connected)
        sub.client.publish(T.bundle, b"x", qos=1)
        assert until(lambda: "handler bug" in (link.health().last_error or ""))
        link.queue_alert(alert)
        assert sub.wait_for(lambda s: len(s.payloads("/alerts")) == 1)
        assert link.alive() and link.connected
        link.close(1)
    sub.close()


def test_backoff_grows_caps_and_jitters() -> None:
    delays = [backoff_delay(a, 0.5, 8.0, 0.0) for a in range(8)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert backoff_delay(10, 0.5, 8.0, 0.999) == pytest.approx(8.0, rel=1e-3)
    spread = {round(backoff_delay(3, 0.5, 8.0, u / 10), 3) for u in range(10)}
    assert len(spread) == 10 and min(spread) >= 2.0 and max(spread) < 4.0


def test_keeps_retrying_without_broker_and_says_why(tmp_path: Path) -> None:
    port = Broker(tmp_path / "never").port  # a free port where nothing listens
    cfg = LinkConfig(device_id=DEV, port=port, tls=False, backoff_min_s=0.05,
                     reconnect_max_s=0.4)
    with Outbox(tmp_path / "o.db") as ob:
        link = MqttLink(cfg, ob).start()
        link.queue_alert(alert)
        assert until(lambda: str(port) in (link.health().last_error or ""))  # it tried, and says why
        health = link.health()
        assert link.alive()
        assert link.close(0.2) is False
        assert ob.depth() == 1
    assert health.state in ("backoff", "connecting") and not health.connected
    assert health.last_error is not None and str(port) in health.last_error


@pytest.mark.parametrize("missing", ["ca", "cert", "key"])
def test_tls_requires_all_paths(tmp_path: Path, missing: str) -> None:
    from edge.errors import BrokerError

    paths = {"ca": tmp_path / "ca", "cert": tmp_path / "c", "key": tmp_path / "k", missing: None}
    with Outbox(tmp_path / "o.db") as ob, pytest.raises(BrokerError):
        MqttLink(LinkConfig(device_id=DEV, tls=True, **paths), ob)


def test_a_review_sent_while_the_device_is_offline_is_delivered_after(broker: Broker,
                                                                      tmp_path: Path) -> None:
    """Issue 11 item 9: the device's session outlives an outage (fixed client id, no clean
    start, a session expiry of days), so a QoS 1 review sent meanwhile is not lost."""
    received: list[tuple[str, bytes]] = []
    centre = Subscriber(broker, (T.leaf("status"),), client_id="centre")
    with Outbox(tmp_path / "o.db") as ob:
        link = MqttLink(plain(broker), ob, on_message=lambda t, p: received.append((t, p)))
        link.start()
        assert until(lambda: link.connected)
        # Subscribed once: a live review arrives (the positive control) ...
        centre.client.publish(T.review, b"live-review", qos=1).wait_for_publish(5)
        assert until(lambda: (T.review, b"live-review") in received)
        assert link.close(drain_timeout=30) is True
        # ... the device is away; the centre decides two alerts meanwhile.
        for p in (b"offline-review-1", b"offline-review-2"):
            centre.client.publish(T.review, p, qos=1).wait_for_publish(5)
        received.clear()
        back = MqttLink(plain(broker), ob, on_message=lambda t, p: received.append((t, p)))
        back.start()
        try:
            assert until(lambda: len(received) >= 2)
            assert received[:2] == [(T.review, b"offline-review-1"), (T.review, b"offline-review-2")]
        finally:
            back.close(drain_timeout=5)
