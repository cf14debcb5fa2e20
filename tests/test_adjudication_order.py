"""Adjudication ordering (issue 11, items 8 and 12): a crop is deleted only by the review
that settles its event as a false alert, and a review is validated and recorded in the
audit log before the adjudication state changes. Real files, a real audit log."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from edge.accountability.adjudication import Adjudicator, Review
from edge.accountability.evidence import EvidenceStore
from edge.accountability.transparency import Transparency
from edge.audit.log import AuditLog
from edge.errors import AuditSpaceError
from tests.accountability_world import ORDER, T0, face_crop_jpeg, open_audit, records_of


def review(event_id: str, outcome: str, verifier: str, minutes: int = 1) -> Review:
    return Review(event_id, outcome, verifier, T0 + timedelta(minutes=minutes))


def world(tmp: Path, audit: AuditLog) -> tuple[Adjudicator, EvidenceStore, Transparency]:
    evidence = EvidenceStore(tmp / "evidence")
    counters = Transparency(tmp / "transparency.json", "cam-north")
    counters.begin(ORDER, T0)
    return Adjudicator(evidence, audit, counters, state_path=tmp / "adjudication.json"), evidence, counters


def test_a_late_false_alert_keeps_the_crop_of_a_confirmed_alert(tmp_path: Path, testdata: Path) -> None:
    crop = face_crop_jpeg(testdata)
    with open_audit(tmp_path) as audit:
        adj, evidence, _ = world(tmp_path, audit)
        for ev in ("ev-confirmed", "ev-false"):
            evidence.put(ev, crop, T0)
            adj.alert_raised(ev, T0)
        assert adj.apply(review("ev-confirmed", "confirmed", "officer-1"), T0).counted == "confirmed"
        late = adj.apply(review("ev-confirmed", "false_alert", "officer-2", 5), T0)
        assert late.counted is None and not late.evidence_deleted
        assert "ev-confirmed" in evidence  # the confirmed alert keeps its evidence
        settling = adj.apply(review("ev-false", "false_alert", "officer-1"), T0)
        assert settling.counted == "false_alert" and settling.evidence_deleted
        assert "ev-false" not in evidence
        assert [d["event_id"] for d in records_of(audit, "deletion")] == ["ev-false"]


def test_a_review_the_audit_log_refuses_changes_nothing(tmp_path: Path, testdata: Path) -> None:
    crop = face_crop_jpeg(testdata)
    with open_audit(tmp_path) as audit:
        adj, evidence, counters = world(tmp_path, audit)
        evidence.put("ev-1", crop, T0)
        adj.alert_raised("ev-1", T0)
    state = (tmp_path / "adjudication.json").read_bytes()
    # the state disk is (nearly) full: the audit log refuses every record
    free = shutil.disk_usage(tmp_path).free
    full = AuditLog.open(tmp_path / "audit", "cam-north", T0, reserve_bytes=free + (1 << 30))
    adj, evidence, counters = world(tmp_path, full)
    with pytest.raises(AuditSpaceError):
        adj.apply(review("ev-1", "false_alert", "officer-1"), T0)
    full.close()
    assert (tmp_path / "adjudication.json").read_bytes() == state  # not settled without a record
    assert adj.pending() == ["ev-1"] and "ev-1" in evidence
    assert counters.public_payload(T0)["deployment"]["counters"]["false_alerts"] == 0
    # space returns: the same review is applied in full, exactly once
    with open_audit(tmp_path) as audit:
        adj, evidence, _ = world(tmp_path, audit)
        applied = adj.apply(review("ev-1", "false_alert", "officer-1"), T0)
        assert applied.counted == "false_alert" and applied.evidence_deleted and not applied.repeated
        assert len(records_of(audit, "adjudication")) == 1
