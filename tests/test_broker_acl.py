"""The shipped central-broker config (deploy/broker) against a real Mosquitto.

Certificates come from deploy/pki/pki.sh; the broker runs the shipped
mosquitto.conf with only paths and the port changed for the test, and its
dynamic-security grants are made from the shipped acl by deploy/broker/dynsec.sh.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.delivery.topics import READS, ROOT, Topics, fleet_filter
from tests.broker import have_mosquitto
from tests.deploy_broker import (
    DeployBroker,
    DeployPki,
    Identity,
    dynsec,
    issue_pki,
    pki,
    tls_context,
)

pytestmark = [pytest.mark.skipif(not have_mosquitto(), reason="needs mosquitto and openssl"),
              pytest.mark.slow]  # a deployed broker with the dynamic-security plugin

NOT_AUTHORIZED = 0x87
FAILURE = 0x80  # reason codes below are success (0x00, or 0x10 "no matching subscribers")

# Every topic name below comes from the value object the link uses.
A, B = Topics.for_device("dev-a"), Topics.for_device("dev-b")
NEW, X = Topics.for_device("dev-new"), Topics.for_device("dev-x")


class Device:
    """A synchronous MQTT v5 client over TLS: connect, publish (reason code), subscribe."""

    def __init__(self, broker: DeployBroker, ident: Identity, name: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name,
                                  protocol=mqtt.MQTTv5)
        self.client.tls_set_context(tls_context(ident, ident.ca))
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self._acks: dict[int, int] = {}
        self._subacks: dict[int, list[int]] = {}
        self._connack: int | None = None
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        assert self._wait(lambda: self._connack is not None), "no CONNACK"
        assert self._connack == 0, f"CONNACK {self._connack:#x}"

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode,
                    _p: object) -> None:
        with self._cond:
            self._connack = rc.value
            self._cond.notify_all()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode,
                    _p: object) -> None:
        with self._cond:
            self._acks[mid] = rc.value
            self._cond.notify_all()

    def _on_subscribe(self, _c: mqtt.Client, _u: object, mid: int, rcs: list[ReasonCode],
                      _p: object) -> None:
        with self._cond:
            self._subacks[mid] = [r.value for r in rcs]
            self._cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def _wait(self, pred: object, timeout: float = 10.0) -> bool:
        assert callable(pred)
        with self._cond:
            return bool(self._cond.wait_for(pred, timeout))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """QoS 1 publish; returns the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        assert self._wait(lambda: info.mid in self._acks), f"no PUBACK for {topic}"
        return self._acks[info.mid]

    def subscribe(self, topic: str) -> list[int]:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None, f"SUBSCRIBE {topic} not sent"
        assert self._wait(lambda: mid in self._subacks), f"no SUBACK for {topic}"
        return self._subacks[mid]

    def wait_message(self, topic: str, payload: bytes, timeout: float = 10.0) -> bool:
        return self._wait(lambda: (topic, payload) in self.messages, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def deploy_pki(tmp_path_factory: pytest.TempPathFactory) -> DeployPki:
    return issue_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, deploy_pki: DeployPki) -> Iterator[DeployBroker]:
    b = DeployBroker(tmp_path_factory.mktemp("broker"), deploy_pki).start()
    yield b
    b.stop()


@pytest.fixture
def clients(broker: DeployBroker, deploy_pki: DeployPki) -> Iterator[dict[str, Device]]:
    made = {n: Device(broker, deploy_pki.ids[n], f"{n}-{id(broker)}")
            for n in ("dev-a", "dev-b", "operator-consumer")}
    yield made
    for c in made.values():
        c.close()


def test_device_publishes_its_alerts_and_status_and_the_consumer_receives_them(
        clients: dict[str, Device]) -> None:
    a, consumer = clients["dev-a"], clients["operator-consumer"]
    for topic in (fleet_filter("alerts"), fleet_filter("status"), fleet_filter("stats")):
        assert consumer.subscribe(topic) == [1]
    assert a.publish(A.alerts, b'{"event_id":"a1"}') < FAILURE
    assert a.publish(A.status, b'{"state":"online"}', retain=True) < FAILURE
    assert a.publish(A.stats, b'{"frames":10}') < FAILURE
    assert consumer.wait_message(A.alerts, b'{"event_id":"a1"}')
    assert consumer.wait_message(A.status, b'{"state":"online"}')
    assert consumer.wait_message(A.stats, b'{"frames":10}')


def test_device_cannot_publish_as_another_device(clients: dict[str, Device]) -> None:
    a, consumer = clients["dev-a"], clients["operator-consumer"]
    assert consumer.subscribe(fleet_filter("alerts")) == [1]
    assert consumer.subscribe(fleet_filter("status")) == [1]
    # Refused with the v5 reason code: the device's outbox knows it was not delivered.
    assert a.publish(B.alerts, b"forged") == NOT_AUTHORIZED
    assert a.publish(B.status, b"forged", retain=True) == NOT_AUTHORIZED
    # Nor may it write outside its own topics, e.g. push itself a bundle or an order.
    assert a.publish(A.bundle, b"self-signed?") == NOT_AUTHORIZED
    for topic in (A.order, A.revocations, A.resume, B.order):
        assert a.publish(topic, b"self-signed?", retain=True) == NOT_AUTHORIZED
    assert a.publish(A.leaf("anything"), b"x") == NOT_AUTHORIZED
    # A later legitimate publish arrives; the forged ones, sent before it, never did.
    assert a.publish(A.alerts, b"marker") < FAILURE
    assert consumer.wait_message(A.alerts, b"marker")
    assert all(p != b"forged" for _, p in consumer.messages)


def test_device_never_receives_another_devices_bundle(clients: dict[str, Device]) -> None:
    a, b, consumer = clients["dev-a"], clients["dev-b"], clients["operator-consumer"]
    # Retained bundles for both devices exist before anyone subscribes.
    assert consumer.publish(B.bundle, b"retained-for-b", retain=True) < FAILURE
    assert consumer.publish(A.bundle, b"retained-for-a", retain=True) < FAILURE
    # The subscription itself is refused (SUBACK 0x87), for B's topic and for any filter
    # that would cover it; A's own bundle topic is granted (the positive control).
    for topic in (B.bundle, fleet_filter("bundle"), f"{ROOT}/#", "#", B.alerts):
        assert a.subscribe(topic) == [NOT_AUTHORIZED], topic
    assert a.subscribe(A.bundle) == [1]
    assert b.subscribe(B.bundle) == [1]
    assert consumer.publish(B.bundle, b"live-for-b") < FAILURE
    assert consumer.publish(A.bundle, b"live-for-a") < FAILURE
    # Positive controls: each device gets its own, retained and live.
    assert a.wait_message(A.bundle, b"retained-for-a")
    assert a.wait_message(A.bundle, b"live-for-a")
    assert b.wait_message(B.bundle, b"retained-for-b")
    assert b.wait_message(B.bundle, b"live-for-b")
    # live-for-a was published after live-for-b on the same connection: had B's
    # bundle been deliverable to A, it would have arrived first.
    assert [t for t, _ in a.messages if not t.startswith(A.prefix + "/")] == []
    # Review outcomes from the operators reach the device they concern, and only it.
    assert a.subscribe(A.review) == [1]
    assert consumer.publish(A.review, b"reviewed") < FAILURE
    assert a.wait_message(A.review, b"reviewed")
    assert a.publish(B.review, b"forged") == NOT_AUTHORIZED


def test_orders_revocations_and_resumes_reach_only_their_device(clients: dict[str, Device]) -> None:
    a, consumer = clients["dev-a"], clients["operator-consumer"]
    for leaf in ("order", "revocations", "resume"):
        own, other = A.leaf(leaf), B.leaf(leaf)
        assert consumer.publish(other, b"retained-for-b", retain=True) < FAILURE
        assert consumer.publish(own, b"retained-for-a", retain=True) < FAILURE
        assert a.subscribe(other) == [NOT_AUTHORIZED], other
        assert a.subscribe(own) == [1], own
        assert a.wait_message(own, b"retained-for-a")
    assert [t for t, _ in a.messages if not t.startswith(A.prefix + "/")] == []


def test_consumer_cannot_forge_device_events(clients: dict[str, Device]) -> None:
    consumer = clients["operator-consumer"]
    assert consumer.publish(A.alerts, b"forged") == NOT_AUTHORIZED
    assert consumer.publish(A.status, b"forged") == NOT_AUTHORIZED


def test_selftest_round_trip_topic_is_private(clients: dict[str, Device]) -> None:
    a, b = clients["dev-a"], clients["dev-b"]
    assert a.subscribe(A.selftest) == [1]
    assert b.subscribe(A.selftest) == [NOT_AUTHORIZED]
    assert b.publish(A.selftest, b"from-b") == NOT_AUTHORIZED
    assert a.publish(A.selftest, b"ping") < FAILURE
    assert a.wait_message(A.selftest, b"ping")
    assert b.publish(B.alerts, b"b-marker") < FAILURE
    assert (A.selftest, b"from-b") not in a.messages
    assert all(t != A.selftest for t, _ in b.messages)


def test_consumer_subscribes_to_what_it_reads_only(clients: dict[str, Device]) -> None:
    consumer = clients["operator-consumer"]
    assert consumer.subscribe(A.alerts) == [1]
    assert consumer.subscribe(fleet_filter("transparency")) == [1]
    for topic in (fleet_filter("bundle"), A.selftest, f"{ROOT}/#", "#"):
        assert consumer.subscribe(topic) == [NOT_AUTHORIZED], topic


def test_a_new_device_gets_rights_only_once_provisioned(broker: DeployBroker,
                                                        deploy_pki: DeployPki) -> None:
    # A valid certificate alone connects (Mosquitto skips the plugin's login for certificate
    # identities, mosquitto issue #2999) but may do nothing: the CRL, not the plugin,
    # keeps a revoked device out.
    pki(deploy_pki.dir, "device", "dev-new")
    ident = Identity(deploy_pki.ca, deploy_pki.dir / "issued" / "dev-new.crt",
                     deploy_pki.dir / "issued" / "dev-new.key")

    def rights() -> tuple[list[int], int]:
        dev = Device(broker, ident, "dev-new")
        try:
            return dev.subscribe(NEW.bundle), dev.publish(NEW.alerts, b"x")
        finally:
            dev.close()

    assert rights() == ([NOT_AUTHORIZED], NOT_AUTHORIZED)
    # 6 writes, each read leaf twice (subscribe + receive), selftest 3 (both ways)
    assert f"granted {6 + 2 * len(READS) + 3} ACLs" in broker.ctrl("device", "dev-new")
    sub, pub = rights()
    assert sub == [1] and pub < FAILURE
    broker.ctrl("remove", "dev-new")
    assert rights() == ([NOT_AUTHORIZED], NOT_AUTHORIZED)


def test_dynsec_roles_are_the_acl_file_with_u_replaced() -> None:
    def render(kind: str, ident: str) -> set[str]:
        return set(dynsec(None, "render", kind, ident).splitlines())

    own = {X.leaf(t) for t in ("status", "alerts", "stats", "transparency", "lfr",
                                       "audit/checkpoint", "selftest")}
    reads = {X.leaf(t) for t in (*READS, "selftest")}
    assert render("device", "dev-x") == (
        {f"publishClientSend {t}" for t in own}
        | {f"{kind} {t}" for t in reads for kind in ("subscribePattern", "publishClientReceive")})
    consumer = render("user", "operator-consumer")
    assert {f"publishClientSend edge/+/{t}" for t in READS} <= consumer
    assert "subscribePattern edge/+/alerts" in consumer
    assert not any("selftest" in line or line.startswith("publishClientSend edge/+/alerts")
                   for line in consumer)
    assert render("user", "public-mirror") == {
        f"{kind} edge/+/{t}" for t in ("transparency", "lfr")
        for kind in ("subscribePattern", "publishClientReceive")}


# --- TLS and identity, at the byte level ----------------------------------------------


def _connect_packet(client_id: str) -> bytes:
    """A minimal MQTT v5 CONNECT (clean start, keepalive 10 s, no properties)."""
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x05\x02\x00\x0a\x00"
    payload = len(cid).to_bytes(2, "big") + cid
    body = var + payload
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


def _raw_connect(broker: DeployBroker, ctx: ssl.SSLContext | None) -> bytes:
    """Open TCP (+TLS), send CONNECT, return what came back (b'' if refused)."""
    with socket.create_connection((broker.host, broker.port), timeout=5) as raw:
        try:
            if ctx is None:
                raw.sendall(_connect_packet("plain"))
                return raw.recv(64)
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(_connect_packet("raw"))
                return tls.recv(64)
        except (ssl.SSLError, ConnectionError, TimeoutError, OSError):
            return b""


def test_valid_certificate_gets_connack(broker: DeployBroker, deploy_pki: DeployPki) -> None:
    # The positive control for the refusals below: same code path, good certificate.
    reply = _raw_connect(broker, tls_context(deploy_pki.ids["dev-a"], deploy_pki.ca))
    assert reply[:1] == b"\x20" and reply[3] == 0x00  # CONNACK, success


def test_no_client_certificate_is_refused(broker: DeployBroker, deploy_pki: DeployPki) -> None:
    assert _raw_connect(broker, tls_context(None, deploy_pki.ca)) == b""


def test_revoked_certificate_is_refused(broker: DeployBroker, deploy_pki: DeployPki) -> None:
    assert _raw_connect(broker, tls_context(deploy_pki.revoked, deploy_pki.ca)) == b""


def test_certificate_from_another_ca_is_refused(broker: DeployBroker, deploy_pki: DeployPki,
                                                tmp_path: Path) -> None:
    other = issue_pki(tmp_path / "other", devices=("dev-a",))
    # Trust the real broker, present a same-named identity from a foreign CA.
    ident = Identity(deploy_pki.ca, other.ids["dev-a"].cert, other.ids["dev-a"].key)
    assert _raw_connect(broker, tls_context(ident, deploy_pki.ca)) == b""


def test_plaintext_is_closed(broker: DeployBroker) -> None:
    # Only the TLS listener exists: no 1883, no second port of any kind.
    assert broker.listening_ports() == {broker.port}
    # And the TLS port does not answer plain MQTT.
    assert _raw_connect(broker, None)[:1] != b"\x20"


# --- the firmware's own MQTT link against the shipped broker ------------------------------


def test_firmware_link_delivers_as_itself_and_keeps_what_is_refused(
        broker: DeployBroker, deploy_pki: DeployPki, tmp_path: Path) -> None:
    import json
    import time
    import uuid

    from edge.delivery.mqtt import LinkConfig, MqttLink
    from edge.delivery.outbox import Outbox

    def until(pred: object, timeout: float = 10.0) -> bool:
        assert callable(pred)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not pred():
            time.sleep(0.02)
        return bool(pred())

    consumer = Device(broker, deploy_pki.ids["operator-consumer"], "consumer-link-test")
    assert consumer.subscribe(fleet_filter("alerts")) == [1]
    a = deploy_pki.ids["dev-a"]
    base: dict[str, Any] = dict(device_id="dev-a", host=broker.host, port=broker.port, tls=True, ca=a.ca,
                cert=a.cert, key=a.key, backoff_min_s=0.1, reconnect_max_s=1.0,
                refused_retry_s=0.3)
    event = json.dumps({"event_id": str(uuid.uuid4()), "seq": 1}).encode()
    with Outbox(tmp_path / "good.db") as ob:
        link = MqttLink(LinkConfig(**base), ob).start()
        link.queue_alert(lambda _seq: event)
        assert consumer.wait_message(A.alerts, event)
        assert link.close(2) is True and ob.depth() == 0
    # The same certificate configured with another device's topics: nothing gets out,
    # the alert stays in the outbox, and the link says why.
    with Outbox(tmp_path / "wrong.db") as ob:
        link = MqttLink(LinkConfig(**{**base, "topic_prefix": B.prefix}), ob).start()
        event_id, _ = link.queue_alert(lambda _seq: event)
        assert until(lambda: link.health().refused >= 2)  # refused, retried, refused again
        health = link.health()
        assert "0x87" in (health.last_refusal or ""), health
        assert [e.id for e in ob.pending()] == [event_id] and health.delivered == 0
        link.close(0.3)
    assert (B.alerts, event) not in consumer.messages
    consumer.close()
