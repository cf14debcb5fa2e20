"""The append-only audit log on disk: segments, fsync, rotation, resume, torn tails.

Layout of the log directory::

    audit-000001.jsonl   segments, oldest first, one canonical JSON record a line
    audit-000002.jsonl   begins with a ``rotate`` record chained to the previous head
    head.json            last fsync'd (seq, hash): lets the verifier see a cut-off tail
    audit-000002.jsonl.torn-<offset>   quarantined torn tail, if a power cut left one
    .lock                flock: one writer process at a time

Every append is written with one ``write`` and fsync'd before ``append`` returns;
a new segment's directory entry is fsync'd too. A segment rotates when the next
record would push it past ``max_segment_bytes``; the new segment's first record is
a ``rotate`` record naming the previous segment and its final hash, so the chain
runs unbroken through every segment.

Torn final line, decided policy: when the log is opened and the last segment does
not end in a newline, the bytes after the last newline are the remains of a write
that never completed (it was never fsync'd, so ``append`` never returned for it).
They are copied to ``<segment>.torn-<offset>`` (fsync'd), cut from the segment, and
a ``torn_tail`` record naming the file, offset, length and SHA-256 is chained on, so
the loss is itself on the record and nothing is chained over silently. A *complete*
last line that does not verify is not a power cut: ``open`` refuses with
:class:`AuditError`, as it does when the log ends before the head file's record.

A full or failing disk, decided policy: an append whose write or fsync fails is cut
back to the last good length (a segment it had just created is removed), so the
caller gets :class:`AuditError`, nothing was recorded and the next append chains on
the last good record; if even that cut fails, the log refuses every further append
until it is reopened (``open`` resumes from the last complete record and quarantines
a torn remainder as above). Appends
are refused with :class:`AuditSpaceError`, before anything is written, while the
filesystem's free space would fall below ``reserve_bytes``; the reserve is left for
the record written at open (a torn tail) and for the head file. A head file that
cannot be rewritten after a durable record is not an error: it lags behind the log,
which ``open`` and the verifier accept, and the next append rewrites it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from edge.audit.chain import GENESIS, encode_line, is_hex64, iso_ts, make_record, record_hash, sha256_hex
from edge.audit.checkpoint import sign_checkpoint
from edge.audit.guard import check_data, check_size
from edge.audit.verify import Anchor, VerifyReport, verify_log
from edge.errors import AuditError, AuditSpaceError
from edge.fsutil import atomic_write, fsync_dir, write_all

if TYPE_CHECKING:
    from nacl.signing import SigningKey

SEGMENT_RE: Final = re.compile(r"audit-(\d{6})\.jsonl")
HEAD_FILE: Final = "head.json"
LOCK_FILE: Final = ".lock"
DEFAULT_SEGMENT_BYTES: Final = 8 * 1024 * 1024
DEFAULT_RESERVE_BYTES: Final = 1024 * 1024


def segment_name(number: int) -> str:
    return f"audit-{number:06d}.jsonl"


def list_segments(directory: Path) -> list[Path]:
    """Segment files of ``directory``, oldest first."""
    try:
        names = [p for p in directory.iterdir() if SEGMENT_RE.fullmatch(p.name)]
    except FileNotFoundError:
        return []
    except OSError as e:
        raise AuditError(f"cannot list audit directory {directory}: {e}") from e
    return sorted(names, key=lambda p: p.name)


def read_head(directory: Path) -> Anchor | None:
    try:
        obj = json.loads((directory / HEAD_FILE).read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise AuditError(f"audit head file {directory / HEAD_FILE} unreadable: {e}") from e
    if not isinstance(obj, dict) or type(obj.get("seq")) is not int or not is_hex64(obj.get("hash")):
        raise AuditError(f"audit head file {directory / HEAD_FILE} is malformed")
    return Anchor(obj["seq"], obj["hash"], "head file")


def verify_dir(directory: Path, anchors: tuple[Anchor, ...] = (),
               pubkey: bytes | None = None) -> VerifyReport:
    """Verify every segment of ``directory`` against its head file and ``anchors``."""
    head = read_head(directory)
    return verify_log(list_segments(directory), (*anchors, *(() if head is None else (head,))), pubkey)


def iter_records(directory: Path) -> Iterator[dict[str, Any]]:
    """Every complete record, oldest first (no verification: see :func:`verify_dir`)."""
    for path in list_segments(directory):
        for raw in path.read_bytes().split(b"\n")[:-1]:
            try:
                yield json.loads(raw)
            except ValueError as e:
                raise AuditError(f"{path.name}: unreadable record: {e}") from e


@dataclass(frozen=True)
class _Position:
    """Where the log stood before an append: what a failed append is rolled back to."""

    segment: Path | None
    size: int
    number: int
    seq: int
    head: str
    prev_segment: str | None


class AuditLog:
    """Single-writer, thread-safe append-only log. Use :meth:`open`."""

    def __init__(self, directory: Path, device_id: str, max_segment_bytes: int, reserve_bytes: int) -> None:
        self.directory = directory
        self.device_id = device_id
        self.max_segment_bytes = max_segment_bytes
        self.reserve_bytes = reserve_bytes
        self._lock = threading.RLock()
        self._lock_fd = -1
        self._fd = -1
        self._segment: Path | None = None
        self._size = 0
        self._number = 0
        self._seq = -1
        self._head = GENESIS
        self._prev_segment: str | None = None  # set while the current segment lacks its rotate record
        self._stuck: str | None = None  # why appends are refused until reopened (an undo failed)
        self.quarantined: dict[str, Any] | None = None

    # --- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, device_id: str, now: datetime,
             max_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
             reserve_bytes: int = DEFAULT_RESERVE_BYTES) -> AuditLog:
        """Open (creating if need be) and resume the chain; ``now`` stamps a quarantine record.

        ``reserve_bytes``: free space appends leave on the filesystem (0: no reserve)."""
        log = cls(directory, device_id, max_segment_bytes, reserve_bytes)
        try:
            log._open(now)
        except OSError as e:
            log.close()
            raise AuditError(f"cannot open audit log in {directory}: {e}") from e
        except AuditError:
            log.close()
            raise
        return log

    def _open(self, now: datetime) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, mode=0o750)
            fsync_dir(self.directory.parent)
        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise AuditError(f"audit log {self.directory} is in use by another process") from e
        segments = list_segments(self.directory)
        # Resume from complete lines and check them against the head file before touching
        # anything, so that a damaged log is left exactly as found.
        self._resume(segments)
        self._check_head_file()
        torn: dict[str, Any] | None = None
        if segments:
            last = segments[-1]
            torn = self._quarantine_torn_tail(last)
            self._number = int(SEGMENT_RE.fullmatch(last.name).group(1))  # type: ignore[union-attr]
            self._segment = last
            self._size = last.stat().st_size
            self._fd = os.open(last, os.O_WRONLY | os.O_APPEND)
        if torn is not None:
            self.quarantined = torn
            self._append("torn_tail", lambda: torn, now, use_reserve=False)

    def _quarantine_torn_tail(self, path: Path) -> dict[str, Any] | None:
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut == len(data):
            return None
        tail = data[cut:]
        target = path.with_name(f"{path.name}.torn-{cut}")
        n = 1
        while target.exists():  # a second power cut at the same offset keeps the first remains too
            n += 1
            target = path.with_name(f"{path.name}.torn-{cut}.{n}")
        atomic_write(target, tail, 0o640)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, cut)
            os.fsync(fd)
        finally:
            os.close(fd)
        return {"segment": path.name, "line": data[:cut].count(b"\n") + 1, "offset": cut,
                "length": len(tail), "sha256": sha256_hex(tail), "quarantined_as": target.name}

    def _resume(self, segments: list[Path]) -> None:
        """Take seq and head from the newest complete record (which must verify on its own)."""
        for i in range(len(segments) - 1, -1, -1):
            lines = segments[i].read_bytes().split(b"\n")[:-1]
            if not lines:
                # Only the newest segment can be empty (a rotation cut short); it gets its
                # rotate record with the next append.
                if i != len(segments) - 1:
                    raise AuditError(f"audit segment {segments[i].name} is empty inside the log")
                self._prev_segment = segments[i - 1].name if i > 0 else None
                continue
            try:
                rec = json.loads(lines[-1])
                ok = isinstance(rec, dict) and is_hex64(rec.get("hash")) and record_hash(rec) == rec["hash"]
            except (ValueError, AuditError):
                ok = False
            if not ok or type(rec.get("seq")) is not int:
                raise AuditError(
                    f"last record of {segments[i].name} (line {len(lines)}) does not verify: the log was"
                    " altered; run `edge audit verify` and move the directory aside to start a new log",
                    index=None,
                )
            self._seq, self._head = rec["seq"], rec["hash"]
            return

    def _check_head_file(self) -> None:
        head = read_head(self.directory)
        if head is None:
            return
        if head.seq > self._seq or (head.seq == self._seq and head.hash != self._head):
            raise AuditError(
                f"audit log ends at seq {self._seq} but its head file records seq {head.seq}:"
                " records were deleted or rewritten; run `edge audit verify`",
                index=self._seq + 1,
            )

    # --- appending -------------------------------------------------------------

    @property
    def seq(self) -> int:
        """Seq of the newest record (-1 for an empty log)."""
        return self._seq

    @property
    def head(self) -> str:
        return self._head

    def append(self, kind: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Guard, chain, write and fsync one record; returns it once it is durable."""
        return self._append(kind, lambda: data, now)

    def _append(self, kind: str, build: Callable[[], dict[str, Any]], now: datetime,
                use_reserve: bool = True) -> dict[str, Any]:
        # ``build`` is called again after a rotation record was written, so that data
        # referring to the head (a checkpoint) names the record just before its own.
        ts = iso_ts(now)
        with self._lock:
            if self._fd < 0 and self._lock_fd < 0:
                raise AuditError("audit log is closed")
            if self._stuck is not None:
                raise AuditError(f"audit log refuses appends until reopened: {self._stuck}")
            data = build()
            check_data(data)
            line = encode_line(make_record(self._seq + 1, ts, kind, data, self._head))
            check_size(line)
            if use_reserve:
                self._check_space(len(line))
            before = _Position(self._segment, self._size, self._number, self._seq, self._head,
                               self._prev_segment)
            try:
                if self._segment is None:
                    self._new_segment(ts, rotate=False)
                elif self._size > 0 and self._size + len(line) > self.max_segment_bytes:
                    self._new_segment(ts, rotate=True)
                if self._prev_segment is not None:
                    self._write_rotation(ts)
                    data = build()
                    check_data(data)
                record = make_record(self._seq + 1, ts, kind, data, self._head)
                self._write(encode_line(record), record)
            except OSError as e:
                self._roll_back(before)
                raise AuditError(f"audit append failed in {self.directory}: {e}; nothing was recorded") from e
            with suppress(OSError):  # a lagging head file is accepted (see the module docstring)
                atomic_write(self.directory / HEAD_FILE,
                              json.dumps({"segment": self._segment.name if self._segment else "",
                                          "seq": self._seq, "hash": self._head}).encode())
            return record

    def _check_space(self, needed: int) -> None:
        if self.reserve_bytes <= 0:
            return
        try:
            st = os.statvfs(self.directory)
        except OSError as e:
            raise AuditError(f"cannot read free space of {self.directory}: {e}") from e
        free = st.f_bavail * st.f_frsize
        if free - needed < self.reserve_bytes:
            raise AuditSpaceError(
                f"audit log refused a record: {free} bytes free in {self.directory}, below the"
                f" reserve of {self.reserve_bytes} bytes; free space on that disk")

    def _roll_back(self, before: _Position) -> None:
        """Undo a failed append: cut the bytes it wrote, remove a segment it created."""
        try:
            if self._segment != before.segment:
                assert self._segment is not None
                os.close(self._fd)
                self._fd = -1
                self._segment.unlink()
                fsync_dir(self.directory)
                if before.segment is not None:
                    self._fd = os.open(before.segment, os.O_WRONLY | os.O_APPEND)
            else:
                os.ftruncate(self._fd, before.size)
                os.fsync(self._fd)
        except OSError as e:
            self._stuck = f"a failed write could not be undone ({e})"
            return
        self._segment, self._size = before.segment, before.size
        self._number, self._seq, self._head = before.number, before.seq, before.head
        self._prev_segment = before.prev_segment

    def _new_segment(self, ts: str, rotate: bool) -> None:
        prev = self._segment
        path = self.directory / segment_name(self._number + 1)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
        if self._fd >= 0:
            os.close(self._fd)  # _roll_back reopens the previous segment if this append fails
        self._number += 1
        self._fd, self._segment, self._size = fd, path, 0
        self._prev_segment = prev.name if rotate and prev is not None else None
        fsync_dir(self.directory)

    def _write_rotation(self, ts: str) -> None:
        data = {"previous_segment": self._prev_segment, "previous_hash": self._head,
                "previous_seq": self._seq}
        record = make_record(self._seq + 1, ts, "rotate", data, self._head)
        self._write(encode_line(record), record)
        self._prev_segment = None

    def _write(self, line: bytes, record: dict[str, Any]) -> None:
        write_all(self._fd, line)
        os.fsync(self._fd)
        self._size += len(line)
        self._seq, self._head = record["seq"], record["hash"]

    def checkpoint(self, signing_key: SigningKey, now: datetime) -> dict[str, Any]:
        """Sign (seq, head) of the newest record, append the statement, return it for publishing."""
        ts = iso_ts(now)
        with self._lock:
            if self._seq < 0:
                raise AuditError("nothing to checkpoint: the audit log is empty")
            record = self._append(
                "checkpoint",
                lambda: sign_checkpoint(signing_key, self.device_id, self._seq, self._head, ts),
                now,
            )
            statement: dict[str, Any] = record["data"]
            return statement

    def close(self) -> None:
        with self._lock:
            for fd in (self._fd, self._lock_fd):
                if fd >= 0:
                    os.close(fd)  # closing the lock fd releases the flock
            self._fd = self._lock_fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
