"""Alert evidence: atomic 0600 files, deletion at once, retention purge on an injected clock."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest

from edge.accountability.evidence import EvidenceStore
from edge.errors import StateError
from tests.accountability_world import T0, assert_no_image_bytes, face_crop_jpeg, open_audit, records_of


@pytest.fixture
def crop(testdata: Path) -> bytes:
    return face_crop_jpeg(testdata)


def test_put_keeps_the_crop_in_private_files_and_leaves_no_temporaries(tmp_path: Path, crop: bytes) -> None:
    store = EvidenceStore(tmp_path / "evidence")
    store.put("ev-1", crop, T0, 14)
    assert store.get("ev-1") == crop
    assert "ev-1" in store and "ev-2" not in store
    assert store.event_ids() == ["ev-1"]
    item = store.item("ev-1")
    assert item is not None and item.captured_at == T0 and item.retention_days == 14
    assert stat.S_IMODE((tmp_path / "evidence").stat().st_mode) == 0o700
    names = sorted(p.name for p in (tmp_path / "evidence").iterdir())
    assert names == ["ev-1.jpg", "ev-1.json"]
    for p in (tmp_path / "evidence").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600


@pytest.mark.parametrize("event_id", ["../etc/passwd", "", ".hidden", "a/b", "x" * 200])
def test_event_ids_that_are_not_plain_identifiers_are_refused(tmp_path: Path, crop: bytes,
                                                              event_id: str) -> None:
    with pytest.raises(StateError):
        EvidenceStore(tmp_path).put(event_id, crop, T0)


def test_only_jpeg_crops_with_an_aware_time_and_a_lawful_retention_are_kept(tmp_path: Path,
                                                                           crop: bytes) -> None:
    store = EvidenceStore(tmp_path / "ev")
    with pytest.raises(StateError, match="not a JPEG"):
        store.put("ev-1", b"\x00" * 100, T0)
    with pytest.raises(StateError, match="retention"):
        store.put("ev-1", crop, T0, 32)
    with pytest.raises(StateError, match="timezone"):
        store.put("ev-1", crop, T0.replace(tzinfo=None))
    assert store.event_ids() == []


def test_delete_removes_the_crop_at_once_and_logs_it_without_the_bytes(tmp_path: Path, crop: bytes) -> None:
    store = EvidenceStore(tmp_path / "ev")
    store.put("ev-1", crop, T0)
    store.put("ev-2", crop, T0)
    with open_audit(tmp_path) as audit:
        assert store.delete("ev-1", "adjudicated a false alert", T0 + timedelta(minutes=5), audit)
        assert not store.delete("ev-1", "again", T0 + timedelta(minutes=6), audit)  # nothing held: no record
        assert store.get("ev-1") is None and store.event_ids() == ["ev-2"]
        assert not (tmp_path / "ev" / "ev-1.jpg").exists() and not (tmp_path / "ev" / "ev-1.json").exists()
        assert records_of(audit, "deletion") == [
            {"event_id": "ev-1", "what": "alert_evidence", "reason": "adjudicated a false alert"}]
    log = b"".join(p.read_bytes() for p in (tmp_path / "audit").glob("audit-*.jsonl"))
    assert_no_image_bytes(log, [crop])


def test_retention_purge_follows_the_injected_clock(tmp_path: Path, crop: bytes) -> None:
    store = EvidenceStore(tmp_path / "ev")
    store.put("old", crop, T0, 31)
    store.put("newer", crop, T0 + timedelta(days=10), 31)
    store.put("short", crop, T0 + timedelta(days=10), 3)  # captured under a 3-day order
    with open_audit(tmp_path) as audit:
        assert store.purge_expired(T0 + timedelta(days=12), 31, audit) == 0
        assert store.event_ids() == ["newer", "old", "short"]
        assert records_of(audit, "purge") == []  # nothing purged, nothing claimed

        now = T0 + timedelta(days=13)  # "short" is 3 days old: its own retention is over
        assert store.purge_expired(now, 31, audit) == 1
        assert store.event_ids() == ["newer", "old"]

        now = T0 + timedelta(days=31)
        assert store.purge_expired(now - timedelta(seconds=1), 31, audit) == 0
        assert store.purge_expired(now, 31, audit) == 1
        assert store.event_ids() == ["newer"]

        # A new order with a shorter retention applies to what is already held.
        assert store.purge_expired(T0 + timedelta(days=17), 7, audit) == 1
        assert store.event_ids() == []
        purges = records_of(audit, "purge")
        assert [p["count"] for p in purges] == [1, 1, 1]
        assert all(p["what"] == "alert_evidence" for p in purges)
        assert purges[1]["older_than"] == "2026-11-02T08:00:00.000Z"


def test_a_crop_without_its_metadata_has_no_provable_age_and_is_purged(tmp_path: Path, crop: bytes) -> None:
    store = EvidenceStore(tmp_path / "ev")
    store.put("kept", crop, T0)
    (tmp_path / "ev" / "stray.jpg").write_bytes(crop)
    with open_audit(tmp_path) as audit:
        assert store.purge_expired(T0 + timedelta(hours=1), 31, audit) == 1
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == ["kept.jpg", "kept.json"]


def test_purge_all_empties_the_store_and_logs_one_count(tmp_path: Path, crop: bytes) -> None:
    store = EvidenceStore(tmp_path / "ev")
    for i in range(3):
        store.put(f"ev-{i}", crop, T0)
    with open_audit(tmp_path) as audit:
        assert store.purge_all(T0 + timedelta(days=2), "deployment ended", audit) == 3
        assert store.purge_all(T0 + timedelta(days=2), "deployment ended", audit) == 0
        assert records_of(audit, "purge") == [
            {"what": "alert_evidence", "count": 3, "reason": "deployment ended", "older_than": None}]
    assert list((tmp_path / "ev").iterdir()) == []
