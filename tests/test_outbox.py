"""The durable outbox: order, bounds, telemetry before alerts, 80% warning, SIGKILL."""

from __future__ import annotations

import hashlib
import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge.delivery.outbox import Outbox
from edge.errors import OutboxFullError

ROOT = Path(__file__).resolve().parents[1]


def test_pending_in_insertion_order_and_ack_removes(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        ids = [ob.put("alert", "edge/d/alerts", f"a{i}".encode()) for i in range(5)]
        assert ids == sorted(ids) and len(set(ids)) == 5
        assert [e.payload for e in ob.pending()] == [f"a{i}".encode() for i in range(5)]
        assert ob.ack(ids[2]) is True
        assert ob.ack(ids[2]) is False
        assert [e.id for e in ob.pending()] == [ids[0], ids[1], ids[3], ids[4]]
        assert [e.id for e in ob.pending(after_id=ids[1], limit=1)] == [ids[3]]
        assert ob.get(ids[4]) is not None and ob.get(ids[2]) is None
        assert ob.stats().acked == 1 and ob.depth() == 4


def test_reopen_keeps_events_order_and_counters(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_events=3) as ob:
        ob.put("stats", "t/stats", b"s1", 0)
        for i in range(3):
            ob.put("alert", "t/alerts", bytes([i]))
        assert ob.stats().dropped_telemetry == 1
    with Outbox(tmp_path / "o.db", max_events=3) as ob:
        assert [e.payload for e in ob.pending()] == [b"\0", b"\1", b"\2"]
        assert ob.stats().dropped_telemetry == 1 and ob.stats().alerts == 3
        # New ids keep growing after a restart: replay order is insertion order.
        new = ob.put("stats", "t/stats", b"s2", 0)
        assert new is None  # full of alerts: the telemetry is the one dropped


def test_telemetry_dropped_before_alerts_and_alerts_refused_loudly(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_events=4) as ob:
        s1 = ob.put("stats", "t/stats", b"s1", 0)
        a1 = ob.put("alert", "t/alerts", b"a1")
        s2 = ob.put("status", "t/status", b"s2")
        a2 = ob.put("alert", "t/alerts", b"a2")
        assert ob.depth() == 4
        a3 = ob.put("alert", "t/alerts", b"a3")  # drops s1, the oldest telemetry
        assert [e.id for e in ob.pending()] == [a1, s2, a2, a3]
        a4 = ob.put("alert", "t/alerts", b"a4")  # drops s2
        assert [e.id for e in ob.pending()] == [a1, a2, a3, a4]
        assert s1 is not None and s2 is not None
        assert ob.stats().dropped_telemetry == 2
        with pytest.raises(OutboxFullError, match="alert refused"):
            ob.put("alert", "t/alerts", b"a5")
        assert ob.stats().refused_alerts == 1
        assert [e.id for e in ob.pending()] == [a1, a2, a3, a4]  # nothing silently lost
        ob.ack(a1)
        assert ob.put("alert", "t/alerts", b"a5") is not None


def test_byte_bound(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_events=100, max_bytes=1000) as ob:
        ob.put("stats", "t/stats", b"x" * 600, 0)
        a = ob.put("alert", "t/alerts", b"y" * 500)  # evicts the 600-byte stats
        assert [e.id for e in ob.pending()] == [a]
        with pytest.raises(OutboxFullError):
            ob.put("alert", "t/alerts", b"z" * 501)
        with pytest.raises(OutboxFullError):
            ob.put("alert", "t/alerts", b"z" * 1001)  # could never fit
        assert ob.stats().bytes == 500


def test_fill_warning_at_80_percent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge.delivery.outbox")
    with Outbox(tmp_path / "o.db", max_events=10) as ob:
        ids = [ob.put("alert", "t/alerts", b"a") for _ in range(7)]
        assert not ob.warning and ob.fill_ratio == pytest.approx(0.7)
        assert not [r for r in caplog.records if "full" in r.getMessage()]
        ob.put("alert", "t/alerts", b"a")
        assert ob.warning and ob.stats().warning and ob.fill_ratio == pytest.approx(0.8)
        ob.put("alert", "t/alerts", b"a")
        warnings = [r for r in caplog.records if "80% full" in r.getMessage()]
        assert len(warnings) == 1  # once per crossing, not per event
        for i in ids[:4]:
            ob.ack(i)
        assert not ob.warning


def test_wal_and_full_sync(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        ob.put("alert", "t/alerts", b"a")
    db = sqlite3.connect(tmp_path / "o.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


WRITER = textwrap.dedent(
    """
    import hashlib, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from edge.delivery.outbox import Outbox
    ob = Outbox(Path(sys.argv[1]), max_events=1_000_000, max_bytes=1 << 30)
    i = 0
    while True:
        payload = (b"%08d" % i) * (1 + i % 500)
        payload += hashlib.sha256(payload).digest()
        event_id = ob.put("alert", "t/alerts", payload)
        print(event_id, flush=True)  # only after the commit returned
        i += 1
    """
)


def test_survives_sigkill_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(ROOT)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    confirmed: list[int] = []
    deadline = time.monotonic() + 30
    while len(confirmed) < 150 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        confirmed.append(int(line))
    proc.send_signal(signal.SIGKILL)  # lands mid-write with high probability
    proc.wait()
    confirmed += [int(x) for x in proc.stdout.read().split()]
    assert len(confirmed) >= 150, "writer did not start"

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with Outbox(path) as ob:
        events = ob.pending()
        ids = [e.id for e in events]
        assert ids == sorted(ids)
        assert set(confirmed) <= set(ids), "an event confirmed as written was lost"
        # At most the one write in flight at the kill may be extra, and it is whole.
        assert len(ids) - len(confirmed) <= 1
        for e in events:
            body, digest = e.payload[:-32], e.payload[-32:]
            assert hashlib.sha256(body).digest() == digest
        assert ob.depth() == len(ids)


def test_put_alert_numbers_seq_durably_without_gaps(tmp_path: Path) -> None:
    def build(seq: int) -> bytes:
        return b'{"seq": %d}' % seq

    with Outbox(tmp_path / "o.db", max_events=3) as ob:
        got = [ob.put_alert("t/alerts", build) for _ in range(3)]
        assert [s for _, s in got] == [1, 2, 3]
        with pytest.raises(OutboxFullError):
            ob.put_alert("t/alerts", build)  # refused: consumes no seq
        assert ob.last_seq == 3
        for event_id, _ in got:
            ob.ack(event_id)
    with Outbox(tmp_path / "o.db", max_events=3) as ob:  # a restart continues the numbering
        event_id, seq = ob.put_alert("t/alerts", build)
        assert seq == 4 and ob.get(event_id) is not None
        assert ob.pending()[0].payload == b'{"seq": 4}'
