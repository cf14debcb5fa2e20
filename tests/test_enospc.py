"""Issue 11, the must-show for a full disk: ``edge run`` with its state on a small tmpfs
that the test mounts (and unmounts), then fills. Alerts raised before the disk filled
are delivered, recognition stops while the disk is below its reserve (the status says
why), the audit log verifies once space returns, and ``edge run`` starts again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.audit.log import iter_records
from edge.delivery.topics import Topics
from tests.broker import Broker, Subscriber
from tests.e2e import edge_cli, provision, start_firmware, stop_firmware

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")]

T = Topics.for_device("dev-demo")


@contextlib.contextmanager
def small_disk(path: Path, size: str = "24m") -> Iterator[Path]:
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write until the filesystem says ENOSPC; the filler is removed to give space back."""
    filler = disk / "filler"
    with filler.open("wb") as fh:
        chunk = b"\0" * (256 * 1024)
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def status(sub: Subscriber) -> dict[str, Any]:
    found = sub.payloads("/status")
    return json.loads(found[-1]) if found else {}


def test_a_full_state_disk_loses_no_delivered_alert_and_breaks_no_chain(
        tmp_path: Path, testdata: Path, broker: Broker) -> None:
    with small_disk(tmp_path / "disk") as disk:
        dep = provision(tmp_path, testdata, broker, seconds=600, seed=3, realtime=True,
                        watchlisted="obama,biden,tom_hanks", n_others=0,
                        extra_config="\n[stats]\nstatus_interval_s = 1.0\n")
        text = dep.config.read_text()
        text = re.sub(r'(?m)^\[state\]\ndir = ".*"$', f'[state]\ndir = "{disk}"\nreserve_mb = 4.0', text)
        dep.config.write_text(text)
        sub = Subscriber(broker, (T.leaf("#"),), client_id="enospc-centre", persistent=True)
        proc = start_firmware(dep, testdata)
        try:
            assert sub.wait_for(lambda s: len(s.payloads("/alerts")) >= 1, timeout=300), \
                (dep.work / "run.log").read_text()[-3000:]
            before = {json.loads(p)["event_id"] for p in sub.payloads("/alerts")}
            filler = fill(disk)
            assert sub.wait_for(lambda s: "below its reserve" in str(status(s).get("reason")), timeout=60), \
                (status(sub), (dep.work / "run.log").read_text()[-3000:])
            assert status(sub)["recognition_active"] is False and proc.poll() is None
            filler.unlink()  # space returns
            assert sub.wait_for(lambda s: status(s).get("state") == "recognising", timeout=60)
        finally:
            rc = stop_firmware(proc)
        assert rc == 0, (dep.work / "run.log").read_text()[-3000:]
        # Every alert delivered before the disk filled has its audit record.
        audited = {r["data"]["event_id"] for r in iter_records(disk / "audit") if r["kind"] == "alert"}
        assert before and before <= audited
        r = edge_cli("audit", "verify", "--dir", str(disk / "audit"))
        assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr
        proc = start_firmware(dep, testdata, "run2.log")
        try:
            assert sub.wait_for(lambda s: status(s).get("state") == "recognising"
                                and status(s).get("availability") == "online", timeout=180), \
                (dep.work / "run2.log").read_text()[-3000:]
        finally:
            assert stop_firmware(proc) == 0
            sub.close()
