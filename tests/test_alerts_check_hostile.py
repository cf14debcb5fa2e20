"""``edge alerts --check`` against hostile publishers (issue 11, item 18): the device id is
taken from the topic and a payload claiming another is invalid; no payload, however
nested or odd, stops the viewer. A real Mosquitto and the real command."""

from __future__ import annotations

import json
import subprocess
import sys

from edge.delivery.cli import Consumer
from edge.delivery.contract import device_from_topic, validate_alert
from tests.broker import Broker
from tests.test_alerts_cli import ROOT, enc, sample

HOSTILE = [
    b"[" * 200_000,  # RecursionError in json.loads
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"[" * 500 + b"]" * 500,  # parses, but too deep to print or check safely
    b'{"seq": ' + b"9" * 10_000 + b"}",  # int too large to convert (ValueError, not JSONDecodeError)
    b"\xff\xfe not utf-8",
    b"null",
]


def run_cli(broker: Broker, messages: list[tuple[str, bytes]],
            *extra: str) -> subprocess.CompletedProcess[str]:
    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "alerts", "--host", broker.host, "--port", str(broker.port), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith("listening on"), first
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    for topic, payload in messages:
        pub.publish(topic, payload, qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, first + err)


def test_check_takes_the_device_from_the_topic_and_survives_any_payload(broker: Broker) -> None:
    messages = [("edge/dev-2/alerts", p) for p in HOSTILE]
    messages.append(("edge/dev-2/alerts", enc(sample(1, device="dev-1"))))  # dev-2 claims to be dev-1
    messages.append(("edge/dev-1/alerts", enc(sample(1, device="dev-1"))))  # the real dev-1
    r = run_cli(broker, messages, "--check", "--count", "2", "--timeout", "30")
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1, r.stderr
    assert "device_id: 'dev-1' does not match the topic's device 'dev-2'" in r.stderr
    assert f"2 alerts, 0 duplicates, {len(HOSTILE) + 1} invalid" in r.stderr
    # seq bookkeeping is per topic device: dev-2's forged seq 1 is not counted for dev-1
    assert "seq gaps: none" in r.stderr


def test_device_from_topic() -> None:
    assert device_from_topic("edge/cam-7/alerts") == "cam-7"
    assert device_from_topic("site/a/b/cam-7/alerts") == "cam-7"
    assert device_from_topic("alerts") is None and device_from_topic("edge/cam-7/status") is None
    assert validate_alert(sample(1, device="cam-7"), topic_device="cam-7") == []


def test_consumer_flags_a_forged_device_in_display_mode_too() -> None:
    import io

    out, err = io.StringIO(), io.StringIO()
    c = Consumer(check=False, as_json=False, out=out, err=err)
    c.feed("edge/dev-2/alerts", json.dumps(sample(1, device="dev-1")).encode())
    assert "dev-2" in out.getvalue() and "claims dev-1" in out.getvalue()
