"""Audit log throughput: fsync'd appends (with the head file) and verification."""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.audit import AuditLog, verify_dir
from edge.audit import records as ar

APPENDS = 300


def run(args: argparse.Namespace) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="edge-bench-audit-") as tmp:
        d = Path(tmp)
        log = AuditLog.open(d, "bench", t0, max_segment_bytes=64 * 1024)
        start = time.perf_counter()
        for i in range(APPENDS):
            ar.alert(log, t0 + timedelta(seconds=i), event_id=f"evt-{i}", seq=i, subject_ref="S-1",
                     bundle_id="wl-1", bundle_version=1)
        append_s = (time.perf_counter() - start) / APPENDS
        log.close()
        start = time.perf_counter()
        report = verify_dir(d)
        verify_s = time.perf_counter() - start
    print(f"{'append (fsync file + head file)':<36} {append_s * 1e3:8.2f} ms/record")
    print(f"{'verify':<36} {report.records / verify_s:8.0f} records/s ({report.records} records, "
          f"{len(report.segments)} segments, ok={report.ok})")
