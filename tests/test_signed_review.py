"""Signed reviews on the device: only an operator key of the trust root's review role decides.

The device refuses unsigned JSON, unknown keys, keys of other roles, tampered
bytes, reviews addressed to another device, a verifier id that is not the
signing key's name and retained reviews; two verifiers means two distinct keys.
"""

from __future__ import annotations

import time
from pathlib import Path

import nacl.signing
import pytest

from edge.accountability.adjudication import Adjudicator, Review
from edge.accountability.evidence import EvidenceStore
from edge.accountability.signed_review import review_envelope, sign_review, verify_review
from edge.accountability.transparency import Transparency
from edge.authority.build import trust_document
from edge.delivery.mqtt import LinkConfig, MqttLink
from edge.delivery.outbox import Outbox
from edge.errors import (
    MalformedError,
    PayloadTypeError,
    ReviewError,
    SignatureError,
    TrustError,
    UnknownKeyError,
    UntrustedKeyError,
)
from edge.watchlist import canonical
from edge.watchlist.envelope import REVIEW_TYPE, Envelope
from edge.watchlist.trust import load_pinned, parse_structure
from tests.accountability_world import (
    AUTHORITY,
    OFFICERS,
    ORDER,
    T0,
    face_crop_jpeg,
    open_audit,
    records_of,
    review_trust,
    signed,
)
from tests.broker import Broker

EVENT = "0190f2a0-0000-7000-8000-000000000001"


def test_a_signed_review_verifies_and_names_its_key() -> None:
    r = Review(EVENT, "confirmed", "officer-1", T0, "checked against the list")
    assert verify_review(signed(r), review_trust(), "cam-north") == r


@pytest.mark.parametrize(("payload", "error"), [
    (Review(EVENT, "confirmed", "officer-1", T0).to_bytes(), MalformedError),  # unsigned JSON
    (review_envelope(Review(EVENT, "confirmed", "officer-1", T0), "cam-north").encode(), ReviewError),
    (sign_review(Review(EVENT, "confirmed", "officer-1", T0), "cam-north",
                 nacl.signing.SigningKey(bytes([99]) * 32)), UnknownKeyError),
    (sign_review(Review(EVENT, "confirmed", "authority", T0), "cam-north", AUTHORITY), UntrustedKeyError),
    (sign_review(Review(EVENT, "confirmed", "officer-1", T0), "cam-north", OFFICERS["officer-2"]),
     ReviewError),  # officer-2 signs a review in officer-1's name
    (signed(Review(EVENT, "confirmed", "officer-1", T0), "cam-south"), ReviewError),
    (Envelope("application/vnd.edge.deployment-order.v1", b"{}", b"").sign(OFFICERS["officer-1"]).encode(),
     PayloadTypeError),
])
def test_refusals(payload: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        verify_review(payload, review_trust(), "cam-north")


def test_tampered_bytes_and_double_signatures_are_refused() -> None:
    good = signed(Review(EVENT, "false_alert", "officer-1", T0))
    tampered = good.replace(b"false_alert", b"confirmed__")
    with pytest.raises(SignatureError):
        verify_review(tampered, review_trust(), "cam-north")
    env = review_envelope(Review(EVENT, "confirmed", "officer-1", T0), "cam-north")
    both = env.sign(OFFICERS["officer-1"]).sign(OFFICERS["officer-2"]).encode()
    with pytest.raises(ReviewError, match="exactly one"):
        verify_review(both, review_trust(), "cam-north")


def test_a_trust_root_without_a_review_role_refuses_every_review() -> None:
    keys = {"authority": bytes(AUTHORITY.verify_key)}
    roles = {r: (["authority"], 1) for r in ("trust", "watchlist", "order")}
    trust = load_pinned(trust_document(1, keys, roles, T0).sign(AUTHORITY).encode())
    assert "review" not in trust.roles
    with pytest.raises(UntrustedKeyError, match="no 'review' role"):
        verify_review(signed(Review(EVENT, "confirmed", "officer-1", T0)), trust, "cam-north")
    bogus = {**roles, "reviewers": (["authority"], 1)}
    with pytest.raises(TrustError, match="may add review"):
        parse_structure(trust_document(1, keys, bogus, T0).sign(AUTHORITY).encode())


def test_a_header_field_outside_the_review_is_refused() -> None:
    header = {**Review(EVENT, "confirmed", "officer-1", T0).to_json(), "device_id": "cam-north",
              "settle": True}
    data = Envelope(REVIEW_TYPE, canonical.dumps(header), b"").sign(OFFICERS["officer-1"]).encode()
    with pytest.raises(ReviewError, match="unknown field"):
        verify_review(data, review_trust(), "cam-north")


def test_two_verifiers_means_two_distinct_keys(tmp_path: Path, testdata: Path) -> None:
    trust = review_trust()
    with open_audit(tmp_path) as audit:
        evidence = EvidenceStore(tmp_path / "evidence")
        counters = Transparency(tmp_path / "t.json", "cam-north")
        counters.begin(ORDER, T0)
        adj = Adjudicator(evidence, audit, counters, require_two_verifiers=True)
        evidence.put(EVENT, face_crop_jpeg(testdata), T0)
        adj.alert_raised(EVENT, T0)

        def apply(officer: str, minute: int) -> str | None:
            r = Review(EVENT, "confirmed", officer, T0.replace(minute=minute))
            return adj.apply(verify_review(signed(r), trust, "cam-north"), T0).settled

        assert apply("officer-1", 1) is None
        assert apply("officer-1", 2) is None, "the same key twice is one verifier"
        assert apply("officer-2", 3) == "confirmed"
        last = records_of(audit, "adjudication")[-1]
        assert last["verifier_ids"] == ["officer-1", "officer-2"]


def test_the_link_refuses_a_retained_review(broker: Broker, tmp_path: Path) -> None:
    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    received: list[tuple[str, bytes]] = []
    centre = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="centre", protocol=mqtt.MQTTv5)
    centre.connect(broker.host, broker.port)
    centre.loop_start()
    retained = signed(Review(EVENT, "false_alert", "officer-1", T0))
    live = signed(Review(EVENT, "confirmed", "officer-2", T0))
    centre.publish("edge/dev-r/review", retained, qos=1, retain=True).wait_for_publish(5)
    cfg = LinkConfig(device_id="dev-r", host=broker.host, port=broker.port, tls=False,
                     backoff_min_s=0.1, reconnect_max_s=1.0)
    with Outbox(tmp_path / "o.db") as ob:
        link = MqttLink(cfg, ob, on_message=lambda t, p: received.append((t, p))).start()
        # Retained messages arrive at SUBSCRIBE, before anything published afterwards; the
        # live review is re-sent until it arrives, so the subscription was in place.
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            centre.publish("edge/dev-r/review", live, qos=1).wait_for_publish(5)
            t = time.monotonic()
            while not received and time.monotonic() < t + 0.5:
                time.sleep(0.02)
        link.close(drain_timeout=2)
    centre.loop_stop()
    assert received and set(received) == {("edge/dev-r/review", live)}
