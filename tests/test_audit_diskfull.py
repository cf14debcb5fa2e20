"""Audit log under a failing disk (issue 11, item 3): a write that fails half-way is cut
back, a full disk is refused before it is reached (the reserve), and the chain is never
left broken. Real filesystems: a file-size limit set on this process (any user) and a
small tmpfs mounted by the test (root only)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.audit import AuditLog, list_segments, read_head, verify_dir
from edge.audit import records as ar
from edge.errors import AuditError, AuditSpaceError

T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def alert(log: AuditLog, i: int) -> None:
    ar.alert(log, at(i), event_id=f"evt-{i}", seq=i, subject_ref="S-1", bundle_id="wl-7", bundle_version=3)


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process: a write past ``limit`` bytes of any file is cut short
    and the next one fails with EFBIG, as a full disk cuts a write short with ENOSPC."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


@pytest.mark.parametrize("rotating", [False, True], ids=["same-segment", "into-a-new-segment"])
def test_a_write_cut_short_is_truncated_and_the_chain_stays_whole(tmp_path: Path, rotating: bool) -> None:
    log = AuditLog.open(tmp_path, "dev-01", T0, reserve_bytes=0)
    ar.start(log, at(0), device_id="dev-01", software_version="0.1.0")
    for i in range(1, 4):
        alert(log, i)
    if rotating:  # reopen with a segment limit that the next record crosses
        log.close()
        size = list_segments(tmp_path)[-1].stat().st_size
        log = AuditLog.open(tmp_path, "dev-01", T0, max_segment_bytes=size + 1, reserve_bytes=0)
    seg = list_segments(tmp_path)[-1]
    before = seg.read_bytes()
    n_segments, seq, head = len(list_segments(tmp_path)), log.seq, log.head
    # same segment: the record may only grow the segment by 40 bytes; new segment: the
    # rotate record that opens it is cut after 40 bytes
    limit = 40 if rotating else len(before) + 40
    with file_size_limit(limit), pytest.raises(AuditError, match="append failed"):
        alert(log, 4)
    assert seg.read_bytes() == before  # no half line left behind
    assert len(list_segments(tmp_path)) == n_segments  # no half-opened segment either
    assert (log.seq, log.head) == (seq, head)

    alert(log, 5)  # space is back: the next record chains on the last good one
    log.close()
    report = verify_dir(tmp_path)
    assert report.ok and report.warnings == (), (report.broken, report.warnings)
    assert report.last_seq == seq + 1 + (1 if rotating else 0)  # + the rotate record
    log = AuditLog.open(tmp_path, "dev-01", at(10), reserve_bytes=0)
    assert log.quarantined is None
    log.close()


def test_the_reserve_refuses_before_the_disk_is_reached(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    log = AuditLog.open(tmp_path, "dev-01", T0, reserve_bytes=free + (1 << 30))
    with pytest.raises(AuditSpaceError, match="reserve"):
        ar.start(log, at(0), device_id="dev-01", software_version="0.1.0")
    assert list_segments(tmp_path) == [] and read_head(tmp_path) is None  # nothing written
    log.close()


# --- a real full filesystem (issue 11, "must show": ENOSPC, audit log part) -------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test and unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (run the suite as root to see ENOSPC)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        # lazy: a log a failed assertion left open must not keep the mount alive
        subprocess.run(["umount", "--lazy", str(mnt)], check=True)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem says ENOSPC; returns the bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    total = 0
    try:
        block = b"\0" * 4096
        while True:
            try:
                n = os.write(fd, block[: 4096 if total % 4096 == 0 else 4096 - total % 4096])
            except OSError as e:
                assert e.errno == 28, e  # ENOSPC
                return total
            total += n
    finally:
        os.close(fd)


@pytest.mark.parametrize("reserve", [0, 64 * 1024], ids=["no-reserve", "reserve"])
def test_audit_log_survives_a_full_filesystem(small_fs: Path, reserve: int) -> None:
    d = small_fs / "audit"
    log = AuditLog.open(d, "dev-01", T0, reserve_bytes=reserve)
    ar.start(log, at(0), device_id="dev-01", software_version="0.1.0")
    i = 1
    seg = list_segments(d)[0]
    # leave less room in the segment's last page than one record, so that with no reserve
    # the next write really is cut short by ENOSPC half-way through a line
    while 4096 - seg.stat().st_size % 4096 > 120:
        alert(log, i)
        i += 1
    delivered = log.seq
    filler = small_fs / "outbox.bin"  # another writer (outbox, evidence) takes the rest
    assert fill(filler) > 0
    for k in range(3):  # every attempt while full is refused, typed, and leaves no trace
        size = seg.stat().st_size
        with pytest.raises(AuditError):
            alert(log, 100 + k)
        assert seg.stat().st_size == size and log.seq == delivered
    log.close()
    with AuditLog.open(d, "dev-01", at(50), reserve_bytes=reserve) as reopened:  # start is not locked out
        assert reopened.quarantined is None and reopened.seq == delivered
    report = verify_dir(d)
    assert report.ok and report.warnings == () and report.last_seq == delivered

    filler.unlink()  # space returns
    log = AuditLog.open(d, "dev-01", at(60), reserve_bytes=reserve)
    ar.stop(log, at(61), reason="disk full test", clean=True)
    log.close()
    report = verify_dir(d)
    assert report.ok and report.warnings == () and report.last_seq == delivered + 1
    kinds = [json.loads(x)["kind"] for x in seg.read_bytes().splitlines()]
    assert kinds == ["start"] + ["alert"] * (i - 1) + ["stop"]
