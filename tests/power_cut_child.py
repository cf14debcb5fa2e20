"""Subprocess for the alert power-cut test: a device that records alerts and dies at a kill point.

Run as ``python -m tests.power_cut_child STATE_DIR STEP N``: starts as ``edge run`` does
(audit log, outbox, ledger, the start-up reconciliation), then commits and records three
alerts the way the emitter does. During alert ``N`` the process ends with ``os._exit`` right
after ``STEP`` returns (``none``: never): a power cut at that exact point, no timing involved.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from edge.accountability.adjudication import Adjudicator
from edge.accountability.evidence import EvidenceStore
from edge.accountability.ledger import Ledger
from edge.accountability.transparency import Transparency
from edge.audit import records as audit_records
from edge.delivery.outbox import Outbox
from edge.runtime import journal
from tests.accountability_world import ORDER, T0, open_audit

CUT = 137
# Every step between the outbox commit and the last ledger write, in the order they run.
STEPS: dict[str, tuple[Any, str]] = {
    "outbox_commit": (Outbox, "put_alert"),
    "evidence": (EvidenceStore, "put"),
    "adjudication": (Adjudicator, "alert_raised"),
    "audit": (audit_records, "alert"),
    "counters": (Transparency, "save"),
    "journal_done": (Outbox, "journal_done"),
}


def cut_after(owner: Any, name: str, when: Callable[[], bool]) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapped(*args: Any, **kw: Any) -> Any:
        out = original(*args, **kw)
        if when():
            os._exit(CUT)
        return out

    setattr(owner, name, wrapped)


def main() -> int:
    state, step, during = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    now = T0 + timedelta(hours=1)
    audit = open_audit(state, now)
    outbox = Outbox(state / "outbox.sqlite3")
    ledger = Ledger(state, audit, "cam-north", ORDER)
    ledger.begin(ORDER, now)
    journal.reconcile(outbox, ledger, audit, now)
    current = {"n": 0}
    if step != "none":
        owner, name = STEPS[step]
        cut_after(owner, name, lambda: current["n"] == during)
    for i in range(1, 4):
        current["n"] = i
        event_id = f"evt-{os.getpid()}-{i}"
        jpeg = b"\xff\xd8\xff" + os.urandom(64)

        def pending(seq: int, event_id: str = event_id, jpeg: bytes = jpeg) -> journal.PendingAlert:
            return journal.PendingAlert(event_id, seq, "subj-00001", "bundle-1", 1, now, jpeg)

        _, seq = outbox.put_alert("edge/cam-north/alerts", lambda s: b'{"seq":%d}' % s,
                                  journal=lambda s: pending(s).encode())
        journal.record(outbox, ledger, audit, pending(seq), now)
    ledger.close(now)
    outbox.close()
    audit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
