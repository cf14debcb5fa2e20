"""``make bench``'s station section: ingest rate and page load, on SQLite and PostgreSQL.

- ingest: alerts (with a ~6 KB JPEG crop each, built by the firmware's own alert
  builder) queued in the station's persistent session on a private Mosquitto
  while the station is down, then drained by the station's ingest: alerts
  stored per second, validation, de-duplication and incident linking included.
  Target: >= 200/s.
- pages: 10,000 stored incidents, the real app under uvicorn on loopback, a
  logged-in client: p50/p95 of the queue, an incident, health and
  transparency pages. Target: p95 <= 200 ms.

PostgreSQL: a throw-away database on ``STATION_BENCH_PG`` (default
postgresql://postgres@127.0.0.1:5432/postgres), dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import text

from edge.delivery.alert import MatchFacts, Provenance, alert_bytes, build_alert, uuid7
from station import db
from station.config import BrokerConfig, StationConfig
from station.store import Store

N_ALERTS = 3000
N_INCIDENTS = 10_000
PAGE_REQUESTS = 100
PG_ADMIN = os.environ.get("STATION_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _crop() -> bytes:
    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.integers(0, 255, (120, 100, 3), dtype=np.uint8), (5, 5), 0)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return bytes(buf.tobytes())


def _alert(device: str, seq: int, at: datetime, subject: str, crop: bytes | None) -> bytes:
    prov = Provenance(device, "cam0", "bench", "bundle-1", 1, "mfn", "ab" * 32, "blazeface", "cpu", 0.5)
    facts = MatchFacts(at, subject, "wanted", 0.7, 0.2, seq, (1.0, 1.0, 50.0, 60.0), 0.8, 0.9, at, 3, 2)
    return alert_bytes(build_alert(prov, facts, seq, uuid7(at), crop))


@contextmanager
def _database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    import psycopg

    name = f"station_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _store(url: str) -> Store:
    engine = db.connect(url)
    db.migrate(engine)
    return Store(engine)


def bench_ingest(url: str, folder: Path) -> float:
    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge.scenario.broker import free_port
    from edge.scenario.demo import local_broker
    from station.ingest import Ingest

    store = _store(url)
    port = free_port()
    crop = _crop()
    t0 = datetime.now(UTC)
    with local_broker(folder, port):
        cfg = BrokerConfig(host="127.0.0.1", port=port, client_id="station-bench")
        first = Ingest(cfg, store).start()
        first.connected.wait(10)
        first.stop()  # the session stays; everything below is queued for it
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-devices", protocol=mqtt.MQTTv5)
        pub.max_inflight_messages_set(1000)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        payloads = [(f"dev-{i % 2}",
                     _alert(f"dev-{i % 2}", i, t0 + timedelta(seconds=i), f"subj-{i % 50}", crop))
                    for i in range(N_ALERTS)]
        infos = [pub.publish(f"edge/{dev}/alerts", p, qos=1) for dev, p in payloads]
        for info in infos:
            info.wait_for_publish(30)
        pub.disconnect()
        pub.loop_stop()
        done = threading.Event()
        counts: dict[str, int] = {}

        def changed() -> None:
            if counts["stored"] >= N_ALERTS:
                done.set()

        ingest = Ingest(cfg, store, on_change=changed)
        counts = ingest.counts
        start = time.perf_counter()
        ingest.start()
        done.wait(600)
        elapsed = time.perf_counter() - start
        ingest.stop()
        assert ingest.counts["stored"] == N_ALERTS, ingest.counts
    store.engine.dispose()
    return N_ALERTS / elapsed


def _fill(store: Store) -> None:
    """10,000 incidents of one sighting each, straight into the tables (one transaction)."""
    base = time.time() - N_INCIDENTS * 30
    rows_i, rows_a = [], []
    for k in range(N_INCIDENTS):
        at = base + k * 30
        rows_i.append({"id": k + 1, "subject_ref": f"subj-{k % 400}", "category": "wanted", "first_at": at,
                       "last_at": at, "state": "pending" if k % 3 else "decided",
                       "outcome": None if k % 3 else "confirmed", "updated": at})
        rows_a.append({"event_id": str(uuid7(datetime.fromtimestamp(at, UTC))), "device_id": f"dev-{k % 2}",
                       "seq": k, "camera_id": "cam0", "site": "bench", "captured_at": at,
                       "subject_ref": f"subj-{k % 400}", "category": "wanted", "score": 0.7,
                       "threshold": 0.5, "incident_id": k + 1, "body_json": "{}", "received_at": at})
    with store.engine.begin() as conn:
        conn.execute(db.incidents.insert(), rows_i)
        conn.execute(db.alerts.insert(), rows_a)
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT setval('incidents_id_seq', :n)"), {"n": N_INCIDENTS})
    for d in ("dev-0", "dev-1"):
        store.status(d, b'{"availability": "online", "state": "recognising", "fps": 10}', time.time())


def bench_pages(url: str, folder: Path) -> dict[str, tuple[float, float]]:
    import httpx2
    import uvicorn

    from edge.scenario.broker import free_port
    from station.cli import add_user
    from station.web import StationApp

    cfg = StationConfig(database=url, state_dir=folder / "state", secure_cookies=False)
    add_user(cfg, "bench", "supervisor", "bench-password-1")
    store = _store(url)
    _fill(store)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(StationApp(cfg, store).app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    out: dict[str, tuple[float, float]] = {}
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}") as c:
            page = c.get("/login").text
            token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            c.post("/login", data={"csrf": token, "username": "bench", "password": "bench-password-1"})
            rng = random.Random(3)
            paths: dict[str, Callable[[], str]] = {
                "queue /": lambda: "/", "incident": lambda: f"/incident/{rng.randint(1, N_INCIDENTS)}",
                     "health": lambda: "/health", "transparency": lambda: "/transparency"}
            for name, path in paths.items():
                times = []
                for _ in range(PAGE_REQUESTS):
                    t = time.perf_counter()
                    r = c.get(path(), headers={"accept": "text/html"})
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, (name, r.status_code)
                times.sort()
                out[name] = (statistics.median(times), times[int(0.95 * len(times)) - 1])
    finally:
        server.should_exit = True
        thread.join(10)
        store.engine.dispose()
    return out


def run(_args: argparse.Namespace | None = None) -> None:
    print(f"station ingest: {N_ALERTS} alerts with crops through Mosquitto (target >= 200/s); "
          f"pages with {N_INCIDENTS} incidents (target p95 <= 200 ms)")
    for kind in ("sqlite", "postgresql"):
        with tempfile.TemporaryDirectory() as tmp, _database(kind, Path(tmp)) as url:
            rate = bench_ingest(url, Path(tmp))
            print(f"  {kind:10s} ingest {rate:8.0f} alerts/s  {'OK' if rate >= 200 else 'BELOW TARGET'}",
                  flush=True)
        with tempfile.TemporaryDirectory() as tmp, _database(kind, Path(tmp)) as url:
            for name, (p50, p95) in bench_pages(url, Path(tmp)).items():
                print(f"  {kind:10s} page {name:13s} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  "
                      f"{'OK' if p95 <= 200 else 'ABOVE TARGET'}", flush=True)


if __name__ == "__main__":
    run()
