"""Issue 11 items 10 and 11: a power cut at every step between the outbox commit and the
last ledger write. After the restart every committed (deliverable) alert has exactly one
audit record and its evidence, and the public counters agree with the audit log (and so
does ``edge report``). The kill points are injected (``tests/power_cut_child.py``): no timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from edge.accountability.ledger import Ledger
from edge.accountability.report import build_report
from edge.delivery.outbox import Outbox
from edge.runtime import journal
from tests.accountability_world import ORDER, T0, open_audit, records_of
from tests.power_cut_child import CUT, STEPS

ROOT = Path(__file__).resolve().parents[1]


def child(state: Path, step: str, during: int = 2) -> int:
    return subprocess.run([sys.executable, "-m", "tests.power_cut_child", str(state), step, str(during)],
                          cwd=ROOT, timeout=120).returncode


@pytest.mark.parametrize("step", list(STEPS))
def test_every_committed_alert_is_recorded_after_a_cut_at(step: str, tmp_path: Path) -> None:
    assert child(tmp_path, step) == CUT
    assert child(tmp_path, "none") == 0  # the restart reconciles, then records three more
    now = T0 + timedelta(hours=2)
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        committed = sorted(json.loads(e.payload)["seq"] for e in outbox.pending() if e.kind == "alert")
        assert outbox.journal() == []
    assert committed == list(range(1, 6))  # 2 before the cut, 3 after (seq 1..5)
    audit = open_audit(tmp_path, now)
    try:
        alerts = records_of(audit, "alert")
        assert sorted(a["seq"] for a in alerts) == committed  # each exactly once
        ledger = Ledger(tmp_path, audit, "cam-north", ORDER)
        ledger.begin(ORDER, now)
        assert ledger.transparency.current is not None and ledger.transparency.current.alerts == 5
        for a in alerts:
            assert ledger.evidence.get(a["event_id"]) is not None, a["event_id"]
        assert sorted(ledger.adjudicator.pending()) == sorted(a["event_id"] for a in alerts)
        with Outbox(tmp_path / "outbox.sqlite3") as outbox:
            assert journal.reconcile(outbox, ledger, audit, now) == 0
    finally:
        audit.close()
    (dep,) = build_report(tmp_path, now)["deployments"]
    assert dep["counters"]["alerts"] == dep["audit"]["alerts"] == 5 and dep["counters_match_audit"]
