"""``edge outbox quarantine`` (issue 11, item 5): a corrupt outbox is moved aside, kept
for recovery, and the move is on the audit record; a healthy one is left alone. Real
SQLite files, a real audit log, the real command line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.audit import verify_dir
from edge.audit.log import AuditLog
from edge.cli import main
from edge.delivery.outbox import Outbox, outbox_problem
from edge.errors import OutboxError
from tests.accountability_world import records_of

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def device_config(tmp: Path) -> Path:
    cfg = tmp / "edge.toml"
    cfg.write_text(f'[device]\nid = "cam-north"\ncamera_id = "cam0"\nsite = "gate"\n'
                   f'[state]\ndir = "{tmp / "state"}"\n')
    return cfg


def test_a_corrupt_outbox_is_moved_aside_with_an_audit_record(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = device_config(tmp_path)
    state = tmp_path / "state"
    with Outbox(state / "outbox.sqlite3") as ob:
        ob.put("alert", "edge/cam-north/alerts", b'{"seq": 1}')
    AuditLog.open(state / "audit", "cam-north", T0).close()
    # healthy: refused, nothing moved
    assert outbox_problem(state / "outbox.sqlite3") is None
    assert main(["outbox", "quarantine", "--config", str(cfg)]) == 1
    assert "is not corrupt" in capsys.readouterr().err
    assert (state / "outbox.sqlite3").exists()

    damaged = b"SQLite format 3\0" + b"\x5a" * 4096  # a header, then garbage pages
    (state / "outbox.sqlite3").write_bytes(damaged)
    with pytest.raises(OutboxError):  # what `edge run` meets on every restart
        Outbox(state / "outbox.sqlite3")
    assert outbox_problem(state / "outbox.sqlite3") is not None
    assert main(["outbox", "quarantine", "--config", str(cfg)]) == 0
    moved = sorted(p.name for p in state.glob("outbox.sqlite3.corrupt-*"))
    assert moved and (state / moved[0]).read_bytes() == damaged  # kept, not deleted
    assert not (state / "outbox.sqlite3").exists()
    with Outbox(state / "outbox.sqlite3") as fresh:  # `edge run` can start again
        assert fresh.depth() == 0
    report = verify_dir(state / "audit")
    assert report.ok, report.broken
    with AuditLog.open(state / "audit", "cam-north", T0) as log:
        (rec,) = records_of(log, "outbox_quarantined")
    assert rec["quarantined_as"] == moved[0] and rec["bytes"] == len(damaged)
    assert "file is not a database" in rec["reason"] or "malformed" in rec["reason"]
