"""Audit log: chain integrity, tamper detection at the right record, torn tails,
the biometric guard, signed checkpoints and the ``edge audit`` CLI. Real files."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from nacl.signing import SigningKey

from edge.audit import (
    GENESIS,
    KINDS,
    Anchor,
    AuditLog,
    Segment,
    list_segments,
    read_head,
    record_hash,
    verify_checkpoint,
    verify_dir,
    verify_log,
)
from edge.audit import records as ar
from edge.audit.chain import canonical
from edge.cli import main as edge_main
from edge.errors import (
    AuditError,
    AuditGuardError,
    MalformedError,
    SignatureError,
    UnknownKeyError,
)

T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)
H = "ab" * 32  # a stand-in SHA-256 (bundle, order, config file hashes)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def write_small_log(directory: Path, n_alerts: int = 6, max_bytes: int = 8 * 1024 * 1024) -> AuditLog:
    log = AuditLog.open(directory, "dev-01", T0, max_segment_bytes=max_bytes)
    ar.start(log, at(0), device_id="dev-01", software_version="0.1.0", config_sha256=H)
    for i in range(n_alerts):
        ar.alert(log, at(1 + i), event_id=f"evt-{i}", seq=i, subject_ref=f"S-{i % 3}", bundle_id="wl-7",
                bundle_version=3)
    return log


def segments_of(directory: Path) -> list[tuple[str, list[bytes]]]:
    return [(p.name, p.read_bytes().split(b"\n")[:-1]) for p in list_segments(directory)]


def as_segments(segs: list[tuple[str, list[bytes]]]) -> list[Segment]:
    return [Segment(name, b"".join(line + b"\n" for line in lines)) for name, lines in segs]


def position(segs: list[tuple[str, list[bytes]]], index: int) -> tuple[int, int]:
    """(segment number, line number in it) of the index-th record."""
    for s, (_, lines) in enumerate(segs):
        if index < len(lines):
            return s, index
        index -= len(lines)
    raise IndexError(index)


# --- a clean log ---------------------------------------------------------------------


def test_clean_log_verifies_across_rotations_and_reopen(tmp_path: Path) -> None:
    d = tmp_path / "audit"
    log = write_small_log(d, n_alerts=8, max_bytes=900)
    first_head = log.head
    log.close()
    assert len(list_segments(d)) >= 3  # at least two rotations

    log = AuditLog.open(d, "dev-01", at(30), max_segment_bytes=900)
    assert log.quarantined is None
    assert log.head == first_head  # the chain resumes where it stopped
    ar.stop(log, at(31), reason="test", clean=True)
    ar.start(log, at(32), device_id="dev-01", software_version="0.1.0")
    for i in range(4):
        ar.alert(log, at(33 + i), event_id=f"evt-b{i}", seq=100 + i, subject_ref="S-9", bundle_id="wl-7",
                bundle_version=3)
    head, seq = log.head, log.seq
    log.close()

    report = verify_dir(d)
    assert report.ok, report.broken
    assert report.warnings == ()
    assert (report.records, report.last_seq, report.head) == (seq + 1, seq, head)
    segs = segments_of(d)
    assert len(segs) >= 5
    for k, (_, lines) in enumerate(segs):
        first = json.loads(lines[0])
        if k == 0:
            assert first["prev"] == GENESIS and first["seq"] == 0
        else:  # the rotation record names the previous segment and its final hash
            prev_name, prev_lines = segs[k - 1]
            last = json.loads(prev_lines[-1])
            assert first["kind"] == "rotate"
            assert first["data"] == {"previous_segment": prev_name, "previous_hash": last["hash"],
                                     "previous_seq": last["seq"]}
            assert first["prev"] == last["hash"]
        for raw in lines:
            rec = json.loads(raw)
            assert canonical(rec) == raw and record_hash(rec) == rec["hash"]


def test_second_writer_is_refused_and_threads_share_one_chain(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path, "dev-01", T0, max_segment_bytes=4000)
    with pytest.raises(AuditError, match="in use"):
        AuditLog.open(tmp_path, "dev-01", T0)

    def worker(k: int) -> None:
        for i in range(10):
            ar.deletion(log, at(i), event_id=f"evt-{k}-{i}", what="alert_evidence", reason="false alert")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    report = verify_dir(tmp_path)
    assert report.ok and report.records == 40 + len(list_segments(tmp_path)) - 1


def test_naive_time_and_unknown_kind_are_refused(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path, "dev-01", T0) as log:
        with pytest.raises(AuditError, match="timezone"):
            ar.stop(log, datetime(2026, 1, 1), reason="x")
        with pytest.raises(AuditError, match="unknown audit record kind"):
            log.append("whatever", {}, T0)
        assert log.seq == -1


# --- tampering: every position of a small multi-segment log ----------------------------

N_RECORDS = 12  # start + 8 alerts + 3 rotation records, across 4 segments


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[str, list[bytes]]], Anchor]:
    d = tmp_path_factory.mktemp("small")
    write_small_log(d, n_alerts=8, max_bytes=1000).close()
    segs = segments_of(d)
    assert sum(len(lines) for _, lines in segs) == N_RECORDS and len(segs) == 4
    head = read_head(d)
    assert head is not None and head.seq == N_RECORDS - 1
    assert verify_log(as_segments(segs), [head]).ok
    return segs, head


def _mutated(small_log: tuple[list[tuple[str, list[bytes]]], Anchor],
             change: Callable[[list[tuple[str, list[bytes]]]], None]) -> tuple[Any, list[Any]]:
    """Verify a changed copy; also return the changed layout, where positions are counted."""
    segs = [(name, list(lines)) for name, lines in small_log[0]]
    change(segs)
    return verify_log(as_segments(segs), [small_log[1]]), segs


def _assert_broken_at(result: tuple[Any, list[Any]], index: int, reason: str) -> None:
    """Broken at the ``index``-th record of the changed log (one past its end for a cut tail)."""
    report, segs = result
    assert not report.ok
    b = report.broken
    total = sum(len(lines) for _, lines in segs)
    s, line = position(segs, index) if index < total else (len(segs) - 1, len(segs[-1][1]))
    assert (b.index, b.seq, b.segment, b.line) == (index, index, segs[s][0], line + 1), b
    assert re.search(reason, b.reason), b.reason
    assert report.error.index == index
    with pytest.raises(AuditError):
        report.raise_if_broken()


@pytest.mark.parametrize("index", range(N_RECORDS))
def test_editing_any_record_breaks_at_it(small_log: Any, index: int) -> None:
    segs = small_log[0]
    s, k = position(segs, index)

    def edit(segs: list[tuple[str, list[bytes]]]) -> None:
        rec = json.loads(segs[s][1][k])
        rec["ts"] = "2026-11-22T07:00:00.000Z"  # back-date it, re-encoded canonically, hash left alone
        segs[s][1][k] = canonical(rec)

    _assert_broken_at(_mutated(small_log, edit), index, "hash mismatch")

    def edit_bytes(segs: list[tuple[str, list[bytes]]]) -> None:  # same JSON meaning, other bytes
        segs[s][1][k] = segs[s][1][k].replace(b'"seq":', b'"seq": ')

    _assert_broken_at(_mutated(small_log, edit_bytes), index, "canonical")


@pytest.mark.parametrize("index", range(N_RECORDS))
def test_rehashing_an_edited_record_breaks_at_the_next_one(small_log: Any, index: int) -> None:
    """A record edited *and* re-hashed is self-consistent: its successor's ``prev``
    (or, for the newest record, the head file) gives it away."""
    segs = small_log[0]
    s, k = position(segs, index)

    def edit(segs: list[tuple[str, list[bytes]]]) -> None:
        rec = json.loads(segs[s][1][k])
        rec["ts"] = "2026-11-22T07:00:00.000Z"
        rec["hash"] = record_hash(rec)
        segs[s][1][k] = canonical(rec)

    report = _mutated(small_log, edit)
    if index == N_RECORDS - 1:
        _assert_broken_at(report, index, "head file")
    else:
        _assert_broken_at(report, index + 1, "prev mismatch")


@pytest.mark.parametrize("index", range(N_RECORDS))
def test_deleting_any_record_breaks_at_it(small_log: Any, index: int) -> None:
    segs = small_log[0]
    s, k = position(segs, index)

    def delete(segs: list[tuple[str, list[bytes]]]) -> None:
        del segs[s][1][k]
        if not segs[s][1]:
            del segs[s]

    report = _mutated(small_log, delete)
    if index == N_RECORDS - 1:  # nothing after it: the head file says it existed
        _assert_broken_at(report, index, "missing at the end")
    else:
        _assert_broken_at(report, index, "seq gap.*deleted")


@pytest.mark.parametrize("index", range(N_RECORDS))
def test_reordering_any_record_breaks_where_order_is_lost(small_log: Any, index: int) -> None:
    """Swap record ``index`` with its neighbour (the next one; the last swaps with the
    one before): verification fails at the first of the two positions."""
    segs = small_log[0]
    first = index if index < N_RECORDS - 1 else index - 1
    (sa, ka), (sb, kb) = position(segs, first), position(segs, first + 1)

    def swap(segs: list[tuple[str, list[bytes]]]) -> None:
        segs[sa][1][ka], segs[sb][1][kb] = segs[sb][1][kb], segs[sa][1][ka]

    reason = "out of order" if sa == sb else "seq"  # across a segment border a look-ahead cannot tell
    _assert_broken_at(_mutated(small_log, swap), first, reason)


def test_a_missing_first_segment_or_first_record_is_caught(small_log: Any) -> None:
    segs = small_log[0]
    report = verify_log(as_segments(segs[1:]))
    assert report.broken is not None and report.broken.index == 0
    assert "earlier segments are missing" in report.broken.reason or "seq gap" in report.broken.reason


# --- torn final line (power cut) -----------------------------------------------------


def test_torn_final_line_is_reported_then_quarantined_on_open(tmp_path: Path) -> None:
    log = write_small_log(tmp_path, n_alerts=3)
    next_line = json.dumps({"seq": 4, "ts": "2026-11-22T08:10:00.000Z", "kind": "alert", "data": {}})
    log.close()
    seg = list_segments(tmp_path)[-1]
    intact = seg.read_bytes()
    torn = next_line.encode()[:37]  # the write a power cut interrupted: no newline
    seg.write_bytes(intact + torn)

    report = verify_dir(tmp_path)
    assert report.ok and report.records == 4  # the torn bytes are not part of the chain...
    assert len(report.warnings) == 1 and "torn final line" in report.warnings[0]  # ...and are reported
    assert f"{seg.name}:5" in report.warnings[0]
    # had the torn record been complete (the head file names it), it is a loss, not a warning
    lost = verify_log(list_segments(tmp_path), [Anchor(4, "0" * 64, "head file")])
    assert lost.broken is not None and lost.broken.index == 4 and "missing at the end" in lost.broken.reason

    log = AuditLog.open(tmp_path, "dev-01", at(20))
    q = log.quarantined
    assert q is not None and q["offset"] == len(intact) and q["length"] == len(torn)
    assert (tmp_path / q["quarantined_as"]).read_bytes() == torn
    ar.stop(log, at(21), reason="after power cut")
    log.close()
    recs = [json.loads(x) for x in seg.read_bytes().split(b"\n")[:-1]]
    assert [r["kind"] for r in recs[-2:]] == ["torn_tail", "stop"]
    assert recs[-2]["data"]["segment"] == seg.name and recs[-2]["prev"] == recs[-3]["hash"]
    report = verify_dir(tmp_path)
    assert report.ok and report.warnings == () and report.records == 6


@pytest.mark.parametrize("leftover", [b"", b'{"data":{"previous_hash":"'])
def test_rotation_cut_short_by_a_power_cut_is_completed_on_open(tmp_path: Path, leftover: bytes) -> None:
    """The new segment exists but its rotate record is missing (empty file) or torn."""
    write_small_log(tmp_path, n_alerts=2).close()
    (tmp_path / "audit-000002.jsonl").write_bytes(leftover)
    report = verify_dir(tmp_path)
    assert report.ok and len(report.warnings) == 1
    log = AuditLog.open(tmp_path, "dev-01", at(10))
    assert (log.quarantined is not None) == bool(leftover)
    ar.stop(log, at(11), reason="after power cut")
    log.close()
    report = verify_dir(tmp_path)
    assert report.ok and report.warnings == () and len(report.segments) == 2
    kinds = [json.loads(x)["kind"] for x in (tmp_path / "audit-000002.jsonl").read_bytes().splitlines()]
    assert kinds == (["rotate", "torn_tail", "stop"] if leftover else ["rotate", "stop"])


def test_a_second_torn_tail_at_the_same_offset_keeps_both(tmp_path: Path) -> None:
    write_small_log(tmp_path, n_alerts=1).close()
    seg = list_segments(tmp_path)[0]
    intact = seg.read_bytes()
    for torn in (b'{"seq":2,', b'{"seq":2,"ts'):
        seg.write_bytes(intact + torn)
        log = AuditLog.open(tmp_path, "dev-01", at(5))
        assert log.quarantined is not None
        assert (tmp_path / log.quarantined["quarantined_as"]).read_bytes() == torn
        log.close()
        seg.write_bytes(intact)  # as if the torn_tail record itself had been torn, same offset again
        (tmp_path / "head.json").unlink()
    assert len(list(tmp_path.glob(f"{seg.name}.torn-*"))) == 2


def test_torn_line_inside_the_chain_is_a_break(small_log: Any) -> None:
    segs = as_segments(small_log[0])
    cut = Segment(segs[0].name, segs[0].data[:-1])  # the first segment's last newline is gone
    report = verify_log([cut, *segs[1:]])
    assert report.broken is not None and "torn line" in report.broken.reason
    assert report.broken.segment == segs[0].name


def test_open_refuses_a_damaged_or_cut_log(tmp_path: Path) -> None:
    write_small_log(tmp_path, n_alerts=3).close()
    seg = list_segments(tmp_path)[-1]
    good = seg.read_bytes()
    damaged = good.replace(b'"evt-2"', b'"evt-X"') + b'{"seq":4'  # last complete line does not verify
    seg.write_bytes(damaged)
    with pytest.raises(AuditError, match="does not verify"):
        AuditLog.open(tmp_path, "dev-01", at(9))
    assert seg.read_bytes() == damaged and not list(tmp_path.glob("*.torn-*"))  # left as found
    seg.write_bytes(b"".join(line + b"\n" for line in good.split(b"\n")[:-2]))  # last record cut off
    with pytest.raises(AuditError, match="head file") as exc:
        AuditLog.open(tmp_path, "dev-01", at(9))
    assert exc.value.index == 3  # seq 3, the record that was cut off
    for p in list_segments(tmp_path):
        p.unlink()
    with pytest.raises(AuditError, match="head file"):
        AuditLog.open(tmp_path, "dev-01", at(9))


# --- no biometrics in the log ---------------------------------------------------------


@pytest.fixture(scope="module")
def leaks(testdata: Path) -> dict[str, Any]:
    """Real biometric-looking payloads: a face crop JPEG and a 128-D float32 template."""
    img = cv2.imread(str(testdata / "obama.jpg"))
    assert img is not None
    ok, jpeg = cv2.imencode(".jpg", img[100:300, 300:500])
    assert ok
    rng = np.random.default_rng(7)
    template = rng.standard_normal(128).astype(np.float32)
    template /= np.linalg.norm(template)
    return {
        "jpeg_b64": base64.b64encode(jpeg.tobytes()).decode(),
        "jpeg_data_url": "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode(),
        "jpeg_bytes": jpeg.tobytes(),
        "template": template,
        "template_list": template.tolist(),
        "template_scalar": template[0],
        "template_text": ",".join(f"{v:.5f}" for v in template),
        "template_hex": template.tobytes().hex(),
        "template_b64": base64.b64encode(template.tobytes()).decode(),
        "nested": {"scores": [template[:8].tolist(), template[8:16].tolist(), template[16:24].tolist()]},
    }


def test_guard_refuses_templates_crops_and_raw_bytes(tmp_path: Path, leaks: dict[str, Any]) -> None:
    with AuditLog.open(tmp_path, "dev-01", T0) as log:
        for name, value in leaks.items():
            with pytest.raises(AuditGuardError) as exc:
                log.append("alert", {"event_id": "evt-1", "note": value}, T0)
            assert exc.value.path.startswith("data.note"), name
        with pytest.raises(AuditGuardError, match="names biometric"):
            log.append("alert", {"template": "redacted"}, T0)
        assert log.seq == -1
        # ordinary audit values pass: hashes, ids, a handful of numbers, sentences
        log.append("alert", {"event_id": "evt-1", "box": [10.5, 20.0, 40.25, 60.0], "sha256": H,
                             "note": "reviewed by duty officer; 3 of 4 frames matched"}, T0)
        assert log.seq == 0


def _every_helper() -> list[tuple[Callable[..., Any], dict[str, Any]]]:
    evt, wl = "0193a-evt", {"bundle_id": "wl-7", "version": 3, "sha256": H}
    return [
        (ar.start, {"device_id": "dev-01", "software_version": "0.1.0", "config_sha256": H,
                    "reason": "boot"}),
        (ar.config_loaded, {"path": "/etc/edge/edge.toml", "sha256": H, "threshold": 0.62}),
        (ar.threshold_changed, {"old": None, "new": 0.62, "source": "bundle", "floor": 0.55}),
        (ar.order_accepted, {
            "order_id": "ord-12", "sha256": H, "site": "boulevard-n", "camera_ids": ["cam-1"],
            "not_before": at(-60), "not_after": at(600), "purpose": "search for missing person",
            "authority_ref": "warrant 2026/114", "signer_key_ids": ["k1", "k2"], "retention_days": 31}),
        (ar.order_refused, {"reason": "expired", "order_id": "ord-11", "sha256": H}),
        (ar.bundle_loaded, {**wl, "signer_key_ids": ["k1"], "entry_count": 12, "threshold": 0.62,
                            "model_id": "dlib-resnet-int8", "expires_at": at(900)}),
        (ar.bundle_refused, {"sha256": H, "reason": "rollback: version 2 < 3", "bundle_id": "wl-7",
                             "version": 2, "signer_key_ids": ["k1"]}),
        (ar.alert, {"event_id": evt, "seq": 1, "subject_ref": "S-1", "bundle_id": "wl-7",
                    "bundle_version": 3}),
        (ar.adjudication, {"event_id": evt, "outcome": "false_alert", "verifier_ids": ["v-1", "v-2"],
                           "decided_at": at(5), "note": "different person"}),
        (ar.deletion, {"event_id": evt, "what": "alert_evidence", "reason": "false alert"}),
        (ar.purge, {"what": "alert_evidence", "count": 3, "reason": "retention 31 d",
                    "older_than": at(-4e4)}),
        (ar.matching_suspended, {"reason": "false-alert budget exceeded", "false_alerts": 4,
                                 "faces_processed": 900, "budget": 0.002}),
        (ar.matching_resumed, {"reason": "new order"}),
        (ar.recognition, {"active": True, "reason": "order ord-1 active until 2026-11-23"}),
        (ar.outbox_quarantined, {"file": "outbox.sqlite3", "quarantined_as": "outbox.sqlite3.corrupt-x",
                                 "sha256": H, "size": 4112, "reason": "file is not a database"}),
        (ar.order_expired, {"order_id": "ord-12", "not_after": at(600)}),
        (ar.bundle_expired, {**wl, "expires_at": at(900)}),
        (ar.bundle_purged, {**wl, "reason": "order window ended", "entry_count": 12, "file_deleted": True}),
        (ar.entries_expired, {"bundle_id": "wl-7", "version": 3, "expired": 1, "remaining": 11}),
        (ar.trust_refused, {"reason": "RollbackError: trust version 1 is not above 2", "kept_version": 2,
                            "kept_sha256": H}),
        (ar.stop, {"reason": "SIGTERM", "clean": True}),
    ]


def test_log_written_through_every_helper_holds_no_biometric_bytes(tmp_path: Path,
                                                                   leaks: dict[str, Any]) -> None:
    log = AuditLog.open(tmp_path, "dev-01", T0, max_segment_bytes=2500)
    for i, (helper, kwargs) in enumerate(_every_helper()):
        helper(log, at(i), **kwargs)
        # a caller bug: each field in turn receives a crop or a template instead of its value
        for field in kwargs:
            for leak in ("jpeg_b64", "jpeg_bytes", "template", "template_text", "template_b64"):
                with pytest.raises(AuditError):
                    helper(log, at(i), **{**kwargs, field: leaks[leak]})
    log.checkpoint(SigningKey.generate(), at(60))
    log.close()
    (list_segments(tmp_path)[-1]).open("ab").write(b'{"seq":')  # a torn tail, quarantined below
    AuditLog.open(tmp_path, "dev-01", at(61)).close()

    lines = [line for p in list_segments(tmp_path) for line in p.read_bytes().splitlines()]
    kinds = {json.loads(line)["kind"] for line in lines}
    assert kinds == set(KINDS)  # every kind was written, the log's own included
    assert verify_dir(tmp_path).ok
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != ".lock")
    assert blob.count(b"\n") > 20
    assert re.search(rb"[A-Za-z0-9+/=_-]{200,}", blob) is None  # no encoded blob of any kind
    assert b"\xff\xd8\xff" not in blob and b"/9j/" not in blob  # no JPEG, raw or base64
    assert leaks["template_b64"][:40].encode() not in blob
    assert len(re.findall(rb"-?\d\.\d{4,}", blob)) < 16  # nothing like a vector of floats
    for name in (x.name for x in tmp_path.iterdir()):
        assert not name.endswith((".jpg", ".npy"))


# --- checkpoints ------------------------------------------------------------------------


def test_checkpoint_sign_verify_and_tamper(tmp_path: Path) -> None:
    key = SigningKey.generate()
    log = write_small_log(tmp_path, n_alerts=3)
    seq, head = log.seq, log.head
    st = log.checkpoint(key, at(10))
    assert (st["seq"], st["head"], st["device_id"]) == (seq, head, "dev-01")
    assert st["ts"] == "2026-11-22T08:10:00.000Z" and log.seq == seq + 1
    verify_checkpoint(st, bytes(key.verify_key))
    verify_checkpoint(json.loads(json.dumps(st)), key.verify_key)  # as received over MQTT
    for field, value in (("seq", seq - 1), ("head", "0" * 64), ("ts", "2026-11-22T09:00:00.000Z"),
                         ("device_id", "dev-02")):
        with pytest.raises(SignatureError):
            verify_checkpoint({**st, field: value}, bytes(key.verify_key))
    flipped = ("0" if st["signature"][0] != "0" else "1") + st["signature"][1:]
    with pytest.raises(SignatureError):
        verify_checkpoint({**st, "signature": flipped}, bytes(key.verify_key))
    with pytest.raises(UnknownKeyError):
        verify_checkpoint(st, bytes(SigningKey.generate().verify_key))
    with pytest.raises(MalformedError):
        verify_checkpoint({k: v for k, v in st.items() if k != "ts"}, bytes(key.verify_key))
    log.close()
    rec = json.loads(list_segments(tmp_path)[-1].read_bytes().splitlines()[-1])
    assert rec["kind"] == "checkpoint" and rec["data"] == st and rec["prev"] == head
    assert verify_dir(tmp_path, pubkey=bytes(key.verify_key)).ok
    other = verify_dir(tmp_path, pubkey=bytes(SigningKey.generate().verify_key))
    assert other.broken is not None and "checkpoint signature" in other.broken.reason


def test_checkpoint_catches_a_log_rewritten_from_scratch(tmp_path: Path) -> None:
    """Whoever holds the disk can edit a record and re-hash everything after it (and the
    head file): the chain then verifies. A checkpoint held by the centre does not move."""
    key = SigningKey.generate()
    log = write_small_log(tmp_path, n_alerts=4)
    st = log.checkpoint(key, at(10))
    log.close()
    seg = list_segments(tmp_path)[0]
    recs = [json.loads(x) for x in seg.read_bytes().splitlines()][:-1]  # the in-log checkpoint would tell
    recs[2]["data"]["subject_ref"] = "S-hidden"
    prev = recs[1]["hash"]
    for r in recs[2:]:
        r["prev"] = prev
        r["hash"] = prev = record_hash(r)
    seg.write_bytes(b"".join(canonical(r) + b"\n" for r in recs))
    (tmp_path / "head.json").write_text(json.dumps({"seq": recs[-1]["seq"], "hash": recs[-1]["hash"]}))
    assert verify_dir(tmp_path).ok  # the chain alone cannot tell
    anchor = Anchor(st["seq"], st["head"], "checkpoint")
    report = verify_dir(tmp_path, (anchor,))
    assert report.broken is not None and report.broken.seq == st["seq"]
    assert "checkpoint" in report.broken.reason


# --- CLI ------------------------------------------------------------------------------


def test_cli_verify_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = SigningKey.generate()
    log = write_small_log(tmp_path / "a", n_alerts=4)
    st = log.checkpoint(key, at(10))
    log.close()
    (tmp_path / "cp.json").write_text(json.dumps(st))
    (tmp_path / "dev.pub").write_text(bytes(key.verify_key).hex())
    d = str(tmp_path / "a")

    assert edge_main(["audit", "verify", "--dir", d]) == 0
    assert capsys.readouterr().out.strip() == f"OK: 6 records, head {verify_dir(tmp_path / 'a').head}"
    assert edge_main(["audit", "verify", "--dir", d, "--checkpoint", str(tmp_path / "cp.json"),
                      "--pubkey", str(tmp_path / "dev.pub")]) == 0
    capsys.readouterr()
    wrong = bytes(SigningKey.generate().verify_key).hex()
    assert edge_main(["audit", "verify", "--dir", d, "--checkpoint", str(tmp_path / "cp.json"),
                      "--pubkey", wrong]) == 1
    assert "not the given public key" in capsys.readouterr().err
    assert edge_main(["audit", "verify", "--dir", d, "--checkpoint", str(tmp_path / "cp.json")]) == 1
    assert edge_main(["audit", "verify", "--dir", str(tmp_path / "empty")]) == 1
    capsys.readouterr()

    assert edge_main(["audit", "show", "--dir", d, "--kind", "alert", "--json"]) == 0
    shown = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["data"]["event_id"] for r in shown] == [f"evt-{i}" for i in range(4)]
    assert edge_main(["audit", "show", "--dir", d]) == 0
    assert "checkpoint" in capsys.readouterr().out

    seg = list_segments(tmp_path / "a")[0]
    seg.write_bytes(seg.read_bytes().replace(b'"evt-1"', b'"evt-7"'))
    assert edge_main(["audit", "verify", "--dir", d]) == 1
    assert capsys.readouterr().out.strip().startswith(
        f"BROKEN at {seg.name}:3 (seq 2): hash mismatch")
