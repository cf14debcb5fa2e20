"""``edge report``: a finished deployment reads like something a force could publish, with no biometrics."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from edge.accountability.adjudication import Adjudicator, Review
from edge.accountability.evidence import EvidenceStore
from edge.accountability.monitor import FalseAlertMonitor
from edge.accountability.transparency import Transparency
from edge.audit import records
from edge.cli import main
from tests.accountability_world import ORDER, T0, assert_no_image_bytes, face_crop_jpeg, open_audit

SUBJECTS = ("WL-7731", "WL-0042")
H = "ab" * 32


def finished_deployment(state: Path, testdata: Path) -> tuple[list[bytes], list[str], str]:
    """Two recognition periods, 5 alerts, reviews, a retention purge; returns crops, event ids, head."""
    crops = [face_crop_jpeg(testdata, n) for n in ("obama.jpg", "biden.jpg")]
    t = Transparency(state / "transparency.json", "cam-north")
    evidence = EvidenceStore(state / "evidence")
    event_ids = [f"0193a1b2-{i:04d}-7000-8000-00000000000{i}" for i in range(5)]
    with open_audit(state, T0) as audit:
        records.start(audit, T0, device_id="cam-north", software_version="0.1.0")
        records.order_accepted(audit, T0, order_id=ORDER.order_id, sha256=H, site=ORDER.site,
                               camera_ids=ORDER.camera_ids, not_before=ORDER.valid_from,
                               not_after=ORDER.valid_until, purpose=ORDER.purpose,
                               authority_ref=ORDER.authorising_ref, signer_key_ids=["k1"],
                               retention_days=ORDER.retention_days)
        records.bundle_loaded(audit, T0, bundle_id="wl-market", version=3, sha256=H, signer_key_ids=["k2"],
                              entry_count=2, threshold=0.94, model_id="dlib_resnet_v1",
                              expires_at=T0 + timedelta(days=3))
        t.begin(ORDER, T0)
        t.set_watchlist_size(2)
        monitor = FalseAlertMonitor(ORDER.false_alert_budget, audit=audit)
        adj = Adjudicator(evidence, audit, t, ORDER.require_two_verifiers, monitor=monitor)
        now = T0 + timedelta(hours=1)
        records.recognition(audit, now, active=True, reason="order DO-2026-041 active")
        t.tick(now, True)
        for i, event_id in enumerate(event_ids):
            for _ in range(40):  # the runner ticks every few seconds; here every 30 s
                now += timedelta(seconds=30)
                t.tick(now, True)
            t.add_faces(4_000)
            t.add_embeddings(9_000)
            evidence.put(event_id, crops[i % 2], now, ORDER.retention_days)
            records.alert(audit, now, event_id=event_id, seq=i, subject_ref=SUBJECTS[i % 2],
                          bundle_id="wl-market", bundle_version=3)
            t.alert()
            adj.alert_raised(event_id, now)
        for _ in range(10):
            now += timedelta(seconds=30)
            t.tick(now, True)
        t.tick(now, False)
        records.recognition(audit, now, active=False, reason="operator stop")
        reviews = [(0, "confirmed", "officer-1"), (0, "confirmed", "officer-2"),
                   (1, "false_alert", "officer-1"), (2, "not_engaged", "officer-3"),
                   (3, "confirmed", "officer-1")]
        for k, (i, outcome, verifier) in enumerate(reviews):
            adj.apply(Review(event_ids[i], outcome, verifier, now + timedelta(minutes=k)), now)
        records.stop(audit, now + timedelta(hours=1), reason="end of shift")
        later = T0 + timedelta(hours=26)
        records.start(audit, later, device_id="cam-north", software_version="0.1.0")
        records.recognition(audit, later, active=True, reason="order DO-2026-041 active")
        t.tick(later, True)
        t.add_faces(1_000)
        t.tick(later + timedelta(seconds=30), True)
        t.tick(later + timedelta(minutes=1), False)
        records.recognition(audit, later + timedelta(minutes=1), active=False, reason="order ended")
        evidence.purge_expired(T0 + timedelta(days=15), ORDER.retention_days, audit)
        t.save(later)
        head = audit.head
    return crops, event_ids, head


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(["report", *args])
    return rc, capsys.readouterr().out


def test_report_json_adds_up_and_names_the_audit_head(tmp_path: Path, testdata: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, _, head = finished_deployment(tmp_path, testdata)
    rc, out = run(capsys, "--state", str(tmp_path), "--format", "json")
    assert rc == 0
    rep = json.loads(out)
    assert rep["schema"] == "edge.report/1" and rep["device_id"] == "cam-north"
    assert rep["audit_log"]["ok"] and rep["audit_log"]["head"] == head
    (d,) = rep["deployments"]
    assert d["order_id"] == "DO-2026-041" and d["dpia_ref"] == "DPIA-19" and d["order_accepted_in_audit"]
    c = d["counters"]
    assert (c["faces_processed"], c["alerts"], c["confirmed"], c["false_alerts"], c["not_engaged"],
            c["awaiting_review"]) == (21_000, 5, 1, 1, 1, 2)  # event 3 has one verifier of two
    assert d["false_alerts_per_10000_faces"] == pytest.approx(10_000 / 21_000, abs=1e-3)
    assert d["counters_match_audit"] and d["audit"]["alerts"] == 5
    assert [p["from"] for p in d["active_periods"]] == ["2026-11-02T09:00:00.000Z",
                                                        "2026-11-03T10:00:00.000Z"]
    assert d["active_seconds_audit"] == 105 * 60 + 60
    assert d["active_seconds_counted"] == 105 * 60 + 60
    assert d["audit"]["evidence_deleted_after_review"] == 1
    assert d["audit"]["evidence_purged_at_retention"] == 4
    assert d["watchlist"] == {"bundles_loaded": 1, "largest_entry_count": 2, "thresholds": [0.94],
                              "predicted": []}


def test_report_markdown_reads_like_a_publishable_account(tmp_path: Path, testdata: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, _, head = finished_deployment(tmp_path, testdata)
    out_file = tmp_path / "report.md"
    rc, _ = run(capsys, "--state", str(tmp_path), "--output", str(out_file))
    assert rc == 0
    md = out_file.read_text()
    assert md.startswith("# Live facial recognition: deployment report")
    for expected in ("## Deployment DO-2026-041 at boulevard-north-gate",
                     "| Purpose | locate persons wanted on court warrants during the market |",
                     "| Data protection impact assessment | DPIA-19 |",
                     "| Faces processed | 21,000 |", "| Alerts | 5 |", "| False alerts | 1 |",
                     "| Confirmation rule | two distinct verifiers |",
                     "| False alert rate | 0.476 per 10,000 faces processed (1 in 21,000 faces) |",
                     "| Evidence retention | 14 days |", "| Recognition active | 1 h 46 min in 2 period(s) |",
                     "Alert counters and audit log agree", f"head hash `{head}`"):
        assert expected in md, expected


def test_report_holds_no_biometric_or_identifying_content(tmp_path: Path, testdata: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    crops, event_ids, _ = finished_deployment(tmp_path, testdata)
    outputs = [run(capsys, "--state", str(tmp_path), "--format", f)[1] for f in ("json", "markdown")]
    for text in outputs:
        blob = text.encode()
        assert_no_image_bytes(blob, crops)
        for secret in (*SUBJECTS, *event_ids, "officer-1"):
            assert secret not in text
        # no vector written out: never more than 16 decimal numbers in one line
        for line in text.splitlines():
            assert len(re.findall(r"-?\d+\.\d+", line)) <= 16, line


def test_a_tampered_audit_log_is_reported_broken_and_fails(tmp_path: Path, testdata: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    finished_deployment(tmp_path, testdata)
    seg = sorted((tmp_path / "audit").glob("audit-*.jsonl"))[0]
    seg.write_bytes(seg.read_bytes().replace(b'"count":4', b'"count":0'))
    rc, md = run(capsys, "--state", str(tmp_path))
    assert rc == 1
    assert "**BROKEN**" in md and "cannot be relied on" in md


def test_a_device_without_deployments_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, md = run(capsys, "--state", str(tmp_path))
    assert rc == 0
    assert "No deployment has been recorded" in md and "No audit log was found" in md
