"""The alert contract validator and ``edge alerts`` against a real Mosquitto."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.delivery.contract import ALERT_SCHEMA, AlertStream, format_gaps, validate_alert
from edge.delivery.topics import Topics
from tests.broker import Broker

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 22, 3, 0, 0, tzinfo=UTC)
REQUIRED = ("schema", "event_id", "seq", "device_id", "camera_id", "site", "captured_at",
            "subject_ref", "category", "score", "threshold", "margin", "track_id", "box",
            "quality", "bundle", "model", "possible_match", "requires_human_review")


def uuid7(seq: int) -> str:
    ms = int(NOW.timestamp() * 1000) + seq
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | (uuid.uuid4().int >> 66)
    return str(uuid.UUID(int=value))


def sample(n: int = 1, device: str = "dev-1", **over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "schema": ALERT_SCHEMA, "event_id": uuid7(n), "seq": n, "device_id": device,
        "camera_id": "cam-1", "site": "boulevard-north",
        "captured_at": "2026-11-22T03:00:00.125Z", "subject_ref": "S-0042",
        "category": "wanted", "score": 0.71, "threshold": 0.6, "margin": 0.12,
        "track_id": 7, "box": [100.0, 80.0, 160.0, 150.0], "quality": 0.8,
        "bundle": {"id": "bundle-1", "version": 3}, "model": {"id": "dlib-resnet-v1-int8"},
        "possible_match": True, "requires_human_review": True,
    }
    e.update(over)  # after the id is made: ``seq`` may be overridden with a wrong type
    return e


def test_complete_alert_is_valid() -> None:
    assert validate_alert(sample()) == []


def test_the_firmware_builder_satisfies_the_contract() -> None:
    alert = pytest.importorskip("edge.delivery.alert")
    prov = alert.Provenance("dev-1", "cam-1", "site-1", "b1", 3, "dlib", "ab" * 32, "blazeface",
                            "cpu", 0.6)
    facts = alert.MatchFacts(NOW, "S1", "wanted", 0.7, 0.1, 3, (1.0, 2.0, 30.0, 40.0), 0.8,
                             0.9, NOW, 3, 2)
    built = alert.build_alert(prov, facts, 1, alert.uuid7(NOW), None)
    assert validate_alert(json.loads(alert.alert_bytes(built))) == []


@pytest.mark.parametrize("name", REQUIRED)
def test_each_missing_field_is_named(name: str) -> None:
    e = sample()
    del e[name]
    assert validate_alert(e) == [f"{name}: missing"]


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"event_id": str(uuid.uuid4())}, "not a UUIDv7"),
        ({"event_id": "nope"}, "not a UUID"),
        ({"seq": "1"}, "seq"),
        ({"seq": True}, "seq"),
        ({"seq": -1}, "seq"),
        ({"captured_at": "2026-11-22T03:00:00+01:00"}, "not UTC"),
        ({"captured_at": "yesterday"}, "not ISO 8601"),
        ({"score": 0.5}, "below the threshold"),
        ({"score": float("nan")}, "score"),
        ({"box": [10, 10, 5, 20]}, "inverted"),
        ({"box": [1, 2, 3]}, "box"),
        ({"bundle": {"id": "b"}}, "bundle.version"),
        ({"model": "dlib"}, "model"),
        ({"possible_match": False}, "human adjudication"),
        ({"subject_ref": ""}, "subject_ref"),
        ({"schema": "other/2"}, "schema"),
        ({"crop_jpeg_b64": base64.b64encode(b"GIF89a...").decode()}, "not a JPEG"),
        ({"crop_jpeg_b64": "!!!"}, "base64"),
    ],
)
def test_violations_are_reported(over: dict[str, Any], needle: str) -> None:
    problems = validate_alert(sample(1, **over))
    assert problems and any(needle in p for p in problems), problems


def test_real_jpeg_crop_is_accepted(testdata: Path) -> None:
    import cv2

    img = cv2.imread(str(testdata / "obama.jpg"))
    ok, buf = cv2.imencode(".jpg", img[50:150, 50:150])
    assert ok
    assert validate_alert(sample(crop_jpeg_b64=base64.b64encode(buf.tobytes()).decode())) == []


def test_stream_dedup_and_gaps() -> None:
    s = AlertStream()
    a = [sample(i) for i in (1, 2, 3, 5, 6, 9)]
    assert all(s.add(e) for e in a)
    assert not s.add(a[1])  # redelivery
    s.add(sample(4, device="dev-2"))
    assert s.duplicates == 1
    assert s.gaps() == {"dev-1": [(4, 4), (7, 8)]}
    assert format_gaps(s.gaps()) == "dev-1: 4, 7-8"


@given(st.sets(st.integers(min_value=0, max_value=300), min_size=1))
def test_gaps_are_exactly_the_missing_seqs(seqs: set[int]) -> None:
    s = AlertStream()
    for i in seqs:
        s.add({"event_id": f"id-{i}", "seq": i, "device_id": "d"})
    holes = s.gaps().get("d", [])
    missing = {x for a, b in holes for x in range(a, b + 1)}
    assert missing == set(range(min(seqs), max(seqs) + 1)) - seqs


# --- the command against a real broker -----------------------------------------------


def run_cli(broker: Broker, events: list[bytes], *extra: str) -> subprocess.CompletedProcess[str]:
    """Start ``edge alerts``, wait for its SUBACK, publish ``events``, collect its output."""
    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "alerts", "--host", broker.host, "--port",
         str(broker.port), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith("listening on"), first
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    for payload in events:
        device = json.loads(payload).get("device_id", "dev-1") if payload[:1] == b"{" else "x"
        pub.publish(Topics.for_device(device).alerts, payload, qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, first + err)


def enc(e: dict[str, Any]) -> bytes:
    return json.dumps(e).encode()


def test_cli_passes_a_complete_stream_with_redelivery(broker: Broker) -> None:
    events = [sample(i) for i in (1, 2, 3)] + [sample(1, device="dev-2")]
    payloads = [enc(e) for e in events]
    # The redelivery comes before the last alert: --count stops at 4 distinct alerts.
    stream = [payloads[0], payloads[1], payloads[1], payloads[2], payloads[3]]
    r = run_cli(broker, stream, "--check", "--count", "4", "--timeout", "20")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and all("POSSIBLE MATCH S-0042" in x for x in lines)
    assert "4 alerts, 1 duplicates, 0 invalid; seq gaps: none" in r.stderr


def test_cli_detects_missing_field(broker: Broker) -> None:
    bad = sample(2)
    del bad["subject_ref"]
    r = run_cli(broker, [b"not json", enc(sample(1)), enc(bad)],
                "--check", "--count", "2", "--timeout", "10")
    assert r.returncode == 1
    assert "subject_ref: missing" in r.stderr and "not JSON" in r.stderr


def test_cli_detects_seq_gap(broker: Broker) -> None:
    r = run_cli(broker, [enc(sample(i)) for i in (1, 2, 4)],
                "--check", "--json", "--count", "3", "--timeout", "10")
    assert r.returncode == 1
    assert "seq gaps: dev-1: 3" in r.stderr
    assert [json.loads(x)["seq"] for x in r.stdout.splitlines()] == [1, 2, 4]


def test_cli_times_out_when_count_not_reached(broker: Broker) -> None:
    r = run_cli(broker, [enc(sample(1))], "--count", "2", "--timeout", "1.5")
    assert r.returncode == 3 and "timed out with 1 of 2" in r.stderr


def test_cli_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    port = Broker(tmp_path / "unused").port
    r = subprocess.run([sys.executable, "-m", "edge", "alerts", "--port", str(port),
                        "--timeout", "1"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and f"cannot connect to 127.0.0.1:{port}" in r.stderr
