"""Pure verifier of an audit log: walks every segment in order and names the first
broken record.

Checked, per line and in this order: complete line (ends in a newline), JSON
object in canonical encoding, exactly the record keys, known kind and a UTC
timestamp, the record's own hash, the sequence number (a gap is told apart from
a reordering by looking ahead), ``prev`` against the previous hash, rotation
records at (and only at) segment starts naming the previous segment and hash,
and checkpoint records committing to the record before them.

A hash chain alone cannot show that its newest records were cut off, nor that
somebody re-hashed the whole file. Anchors close that gap: the device's own head
file (written after every fsync'd append) and signed checkpoints held by the
centre each name a ``(seq, hash)`` the log must contain.

A line without its newline at the very end of the last segment is the torn
write of a power cut, not a break: it is reported as a warning (the log quarantines
it on its next open) unless an anchor proves that a complete record was lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.audit.chain import GENESIS, KINDS, RECORD_KEYS, canonical, is_hex64, is_ts, record_hash
from edge.errors import AuditError, EdgeError


@dataclass(frozen=True)
class Segment:
    name: str
    data: bytes


@dataclass(frozen=True)
class Anchor:
    """A ``(seq, hash)`` the log must contain; ``source`` says who vouches for it."""

    seq: int
    hash: str
    source: str


@dataclass(frozen=True)
class Break:
    segment: str
    line: int  # 1-based within the segment
    seq: int  # the seq the record at this position should carry
    index: int  # 0-based position among all records of the log
    reason: str

    def __str__(self) -> str:
        return f"{self.segment}:{self.line} (seq {self.seq}): {self.reason}"


@dataclass(frozen=True)
class VerifyReport:
    records: int
    head: str
    last_seq: int
    segments: tuple[str, ...]
    broken: Break | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.broken is None

    @property
    def error(self) -> AuditError | None:
        if self.broken is None:
            return None
        return AuditError(f"audit log broken at {self.broken}", index=self.broken.index)

    def raise_if_broken(self) -> None:
        err = self.error
        if err is not None:
            raise err


class _BrokenError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _BrokenError(f"bad JSON ({e})") from e
    if not isinstance(obj, dict):
        raise _BrokenError("bad JSON (not an object)")
    return obj


def _peek_seq(raw: bytes) -> int | None:
    try:
        seq = json.loads(raw.decode("utf-8")).get("seq")
    except (UnicodeDecodeError, ValueError, AttributeError):
        return None
    return seq if isinstance(seq, int) else None


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines and the torn remainder (empty when the data ends in a newline)."""
    parts = data.split(b"\n")
    return parts[:-1], parts[-1]


class _Walker:
    def __init__(self, anchors: Sequence[Anchor], pubkey: bytes | None) -> None:
        self.expected_seq = 0
        self.prev = GENESIS
        self.index = 0
        self.prev_segment: str | None = None
        self.anchors: dict[int, list[Anchor]] = {}
        for a in anchors:
            self.anchors.setdefault(a.seq, []).append(a)
        self.pubkey = pubkey

    def record(self, lines: list[bytes], i: int) -> None:
        """Check ``lines[i]``; later lines are looked at only to name a reordering."""
        raw, first_in_segment = lines[i], i == 0
        if not raw:
            raise _BrokenError("bad JSON (empty line)")
        rec = _parse(raw)
        if set(rec) != RECORD_KEYS:
            raise _BrokenError(f"malformed record (keys {sorted(rec)})")
        if canonical(rec) != raw:
            raise _BrokenError("line is not in canonical encoding (edited)")
        seq, kind, data = rec["seq"], rec["kind"], rec["data"]
        if type(seq) is not int or kind not in KINDS or not isinstance(data, dict) or not is_ts(rec["ts"]):
            raise _BrokenError("malformed record (seq, kind, ts or data)")
        if not is_hex64(rec["hash"]) or not is_hex64(rec["prev"]):
            raise _BrokenError("malformed record (hash or prev)")
        if record_hash(rec) != rec["hash"]:
            raise _BrokenError("hash mismatch (record edited)")
        if seq != self.expected_seq:
            raise _BrokenError(self._seq_reason(seq, lines, i))
        if rec["prev"] != self.prev:
            raise _BrokenError("prev mismatch (chain broken: a record before it was replaced)")
        self._check_rotation(rec, first_in_segment)
        if kind == "checkpoint":
            self._check_checkpoint(rec)
        for anchor in self.anchors.pop(seq, []):
            if anchor.hash != rec["hash"]:
                raise _BrokenError(f"hash differs from the {anchor.source} ({anchor.hash[:16]}...):"
                                   " log rewritten")
        self.expected_seq += 1
        self.prev = rec["hash"]
        self.index += 1

    def _seq_reason(self, seq: int, lines: list[bytes], i: int) -> str:
        want = self.expected_seq
        if seq < want:
            return f"seq out of order: expected {want}, found {seq} (records reordered or duplicated)"
        for offset in range(1, len(lines) - i):
            if _peek_seq(lines[i + offset]) == want:
                return f"seq out of order: expected {want}, found {seq}; seq {want} is {offset} line(s) later"
        return f"seq gap: expected {want}, found {seq} (record(s) deleted)"

    def _check_rotation(self, rec: dict[str, Any], first_in_segment: bool) -> None:
        is_rotation = rec["kind"] == "rotate"
        if not first_in_segment:
            if is_rotation:
                raise _BrokenError("rotation record inside a segment")
            return
        if self.prev_segment is None:
            if is_rotation:
                raise _BrokenError("log starts with a rotation record: earlier segments are missing")
            return
        if not is_rotation:
            raise _BrokenError("segment does not begin with a rotation record")
        want = {"previous_segment": self.prev_segment, "previous_hash": self.prev,
                "previous_seq": self.expected_seq - 1}
        if rec["data"] != want:
            raise _BrokenError(f"rotation record names {rec['data']}, expected {want}")

    def _check_checkpoint(self, rec: dict[str, Any]) -> None:
        data = rec["data"]
        if data.get("seq") != self.expected_seq - 1 or data.get("head") != self.prev:
            raise _BrokenError("checkpoint does not commit to the record before it")
        if self.pubkey is not None:
            from edge.audit.checkpoint import verify_checkpoint

            try:
                verify_checkpoint(data, self.pubkey)
            except EdgeError as e:
                raise _BrokenError(f"checkpoint signature: {e}") from e


def verify_segments(segments: Iterable[Segment], anchors: Sequence[Anchor] = (),
                    pubkey: bytes | None = None) -> VerifyReport:
    """Walk ``segments`` (oldest first); stop at the first broken record."""
    w = _Walker(anchors, pubkey)
    names: list[str] = []
    warnings: list[str] = []
    last_line: tuple[str | None, int] = (None, 0)
    pending_torn: tuple[str, int, int] | None = None

    def report(broken: Break | None = None) -> VerifyReport:
        return VerifyReport(w.index, w.prev, w.expected_seq - 1, tuple(names), broken, tuple(warnings))

    for seg in segments:
        if pending_torn is not None:  # a torn line followed by another segment is inside the chain
            name, line, _ = pending_torn
            reason = "torn line (incomplete write) inside the chain"
            return report(Break(name, line, w.expected_seq, w.index, reason))
        names.append(seg.name)
        lines, torn = _lines(seg.data)
        if not lines and not torn:
            warnings.append(f"{seg.name}: empty segment (rotation interrupted)")
        for i in range(len(lines)):
            try:
                w.record(lines, i)
            except _BrokenError as b:
                return report(Break(seg.name, i + 1, w.expected_seq, w.index, b.reason))
        if lines:
            w.prev_segment = seg.name
        last_line = (seg.name, len(lines))
        if torn:
            pending_torn = (seg.name, len(lines) + 1, len(torn))
    if w.anchors:
        anchor = w.anchors[min(w.anchors)][0]
        seg_name, line = last_line
        reason = (f"seq {w.expected_seq}..{anchor.seq} missing at the end of the log (deleted or truncated);"
                  f" the {anchor.source} records seq {anchor.seq}")
        return report(Break(seg_name or "(no segment)", line + 1, w.expected_seq, w.index, reason))
    if pending_torn is not None:
        name, line, size = pending_torn
        warnings.append(f"{name}:{line}: torn final line ({size} bytes, incomplete write, e.g. a power cut);"
                        " not part of the chain, quarantined when the log is next opened")
    return report()


def verify_log(source: Iterable[Path | Segment | tuple[str, bytes] | bytes], anchors: Sequence[Anchor] = (),
               pubkey: bytes | None = None) -> VerifyReport:
    """:func:`verify_segments` over paths (read one at a time), ``(name, bytes)`` pairs or
    bare segment bytes (named ``segment-<n>``), oldest first."""

    def segments() -> Iterable[Segment]:
        for n, item in enumerate(source, start=1):
            if isinstance(item, bytes):
                yield Segment(f"segment-{n}", item)
            elif isinstance(item, Segment):
                yield item
            elif isinstance(item, Path):
                try:
                    yield Segment(item.name, item.read_bytes())
                except OSError as e:
                    raise AuditError(f"cannot read audit segment {item}: {e}") from e
            else:
                yield Segment(item[0], item[1])

    return verify_segments(segments(), anchors, pubkey)
