"""Issue 11 item 2, the must-show: ``edge run`` survives 10,000 fuzzed review, bundle and
order messages on its topics (a real Mosquitto, the real firmware as a subprocess), and a
poisonous *retained* message does not kill the next start either. Bounded in time: every
wait has a deadline, and each message is accounted for in the device's status.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from edge.delivery.topics import Topics
from tests.broker import Broker, Subscriber
from tests.e2e import provision, start_firmware, stop_firmware

pytestmark = pytest.mark.slow

N = 10_000
DEVICE = "dev-demo"
T = Topics.for_device(DEVICE)
FAST_STATUS = "\n[stats]\nstatus_interval_s = 1.0\n"


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One of: flipped bytes, truncation, junk appended, or a splice of two halves."""
    b = bytearray(data)
    pick = rng.randrange(4)
    if pick == 0:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif pick == 1:
        del b[rng.randrange(1, len(b)):]
    elif pick == 2:
        b += rng.randbytes(rng.randint(1, 64))
    else:
        cut = rng.randrange(1, len(b))
        b = b[cut:] + b[:cut]
    return bytes(b)


def hostile_json(rng: random.Random) -> bytes:
    pick = rng.randrange(7)
    if pick == 0:
        return b"[" * rng.randint(1000, 4096)
    if pick == 1:
        return json.dumps({"event_id": "e", "outcome": "false_alert", "verifier_id": "v",
                           "decided_at": "9999-12-31T23:59:59-23:59"}).encode()
    if pick == 2:
        return b'{"event_id": 1e999999, "outcome": ' + b"[" * 500 + b"}"
    if pick == 3:
        return json.dumps({"outcome": rng.choice(["confirmed", "false_alert", None, 7]),
                           "event_id": rng.choice(["", "x" * 5000, None, ["a"]]),
                           "decided_at": rng.choice(["", "not a date", 0,
                                                     "0001-01-01T00:00:00+23:59"])}).encode()
    if pick == 4:
        return rng.randbytes(rng.randint(0, 4096))
    if pick == 5:
        return ("\ud800" * 3).encode("utf-8", "surrogatepass") + b"{}"
    return b""


def fuzzed(rng: random.Random, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    leaf = rng.choice(["review", "bundle", "order", "review", "bundle", "order", "revocations", "resume"])
    seed = seeds.get(leaf)
    payload = mutate(rng, seed) if seed is not None and rng.random() < 0.6 else hostile_json(rng)
    if payload == seed:
        payload += b"\x00"
    return leaf, payload


def refused(status: dict[str, Any]) -> int:
    return sum((status.get("messages") or {}).get("refused", {}).values())


def last_status(sub: Subscriber) -> dict[str, Any]:
    found = sub.payloads("/status")
    return json.loads(found[-1]) if found else {}


def test_edge_run_survives_ten_thousand_fuzzed_messages(tmp_path: Path, testdata: Path,
                                                        broker: Broker) -> None:
    dep = provision(tmp_path, testdata, broker, seconds=900, seed=6, realtime=True, n_others=1,
                    extra_config=FAST_STATUS)
    sub = Subscriber(broker, (T.status,), client_id="fuzz-centre")
    proc = start_firmware(dep, testdata)
    try:
        assert sub.wait_for(lambda s: last_status(s).get("state") == "recognising", timeout=180), \
            (dep.work / "run.log").read_text()[-3000:]
        rng = random.Random(11)
        seeds = {"bundle": dep.bundle.read_bytes(), "order": dep.order.read_bytes()}
        sent = 0
        for batch in range(10):
            for _ in range(N // 10):
                leaf, payload = fuzzed(rng, seeds)
                info = sub.client.publish(T.leaf(leaf), payload, qos=1)
                sent += 1
            info.wait_for_publish(60)
            assert proc.poll() is None, f"edge run exited after batch {batch}"
            assert sub.wait_for(lambda s, n=sent: refused(last_status(s)) >= n, timeout=180), \
                (sent, last_status(sub).get("messages"), (dep.work / "run.log").read_text()[-2000:])
        status = last_status(sub)
        assert refused(status) == N and status["state"] == "recognising"
        assert set(status["messages"]["refused"]) <= {"review", "bundle", "order", "revocations", "resume"}

        # A poisonous retained review and order: delivered again at every start.
        sub.client.publish(T.review, b"[" * 4096, qos=1, retain=True).wait_for_publish(30)
        sub.client.publish(T.order, hostile_json(random.Random(1)), qos=1, retain=True).wait_for_publish(30)
        assert sub.wait_for(lambda s: refused(last_status(s)) >= N + 2, timeout=60)
    finally:
        assert stop_firmware(proc) == 0
    started = time.monotonic()
    proc = start_firmware(dep, testdata, "run2.log")
    try:
        assert sub.wait_for(lambda s: last_status(s).get("state") == "recognising"
                            and refused(last_status(s)) >= 2, timeout=180), \
            (dep.work / "run2.log").read_text()[-3000:]
        assert proc.poll() is None and time.monotonic() - started < 180
    finally:
        assert stop_firmware(proc) == 0
        sub.client.publish(T.review, b"", qos=1, retain=True)
        sub.client.publish(T.order, b"", qos=1, retain=True)
        sub.close()
