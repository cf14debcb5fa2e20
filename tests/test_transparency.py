"""Transparency counters: they add up against a scenario's ground truth and survive restarts."""

from __future__ import annotations

import json
import random
import stat
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from edge.accountability.adjudication import Adjudicator, Review
from edge.accountability.evidence import EvidenceStore
from edge.accountability.transparency import MAX_TICK_S, Transparency, lfr_flag
from edge.errors import StateError
from tests.accountability_world import ORDER, T0, face_crop_jpeg, open_audit

OUTCOMES = ("confirmed", "false_alert", "not_engaged", "duplicate", "inconclusive", None)


@pytest.mark.slow
def test_counters_add_up_against_the_scenario_ground_truth(tmp_path: Path, testdata: Path) -> None:
    rng = random.Random(7)
    crop = face_crop_jpeg(testdata)
    path = tmp_path / "transparency.json"
    t = Transparency(path, "cam-north")
    t.begin(ORDER, T0)
    t.set_watchlist_size(37)
    evidence = EvidenceStore(tmp_path / "evidence")
    truth = {"faces": 0, "embeddings": 0, "alerts": 0, "confirmed": 0, "false_alert": 0,
             "not_engaged": 0, "duplicate": 0, "active": 0.0}
    with open_audit(tmp_path) as audit:
        adj = Adjudicator(evidence, audit, t, require_two_verifiers=False, state_path=tmp_path / "adj.json")
        now = T0
        was_active = False
        for step in range(600):
            now += timedelta(seconds=1)
            active = (step // 100) % 2 == 0  # on for 100 s, off for 100 s
            t.tick(now, active)
            if was_active and step != 251:  # the second after the restart is not known to be active
                truth["active"] += 1
            was_active = active
            if not active:
                continue
            faces = rng.randint(0, 3)
            embeddings = faces * rng.randint(1, 3)
            t.add_faces(faces)
            t.add_embeddings(embeddings)
            truth["faces"] += faces
            truth["embeddings"] += embeddings
            if faces and rng.random() < 0.1:
                event_id = f"ev-{step}"
                evidence.put(event_id, crop, now, ORDER.retention_days)
                t.alert()
                adj.alert_raised(event_id, now)
                truth["alerts"] += 1
                outcome = rng.choice(OUTCOMES)
                if outcome is not None:
                    adj.apply(Review(event_id, outcome, "officer-1", now), now)
                    if outcome != "inconclusive":
                        truth[outcome] += 1
            if step == 250:  # a restart in the middle: counters come back from the file
                t.save(now)
                t = Transparency(path, "cam-north")
                adj = Adjudicator(evidence, audit, t, state_path=tmp_path / "adj.json")
        t.save(now)
    assert truth["alerts"] > 10 and truth["false_alert"] > 0 and truth["confirmed"] > 0

    dep = Transparency(path, "cam-north").current
    assert dep is not None
    assert dep.faces_processed == truth["faces"]
    assert dep.embeddings_computed == truth["embeddings"]
    assert dep.alerts == truth["alerts"]
    assert (dep.confirmed, dep.false_alerts, dep.not_engaged, dep.duplicates) == (
        truth["confirmed"], truth["false_alert"], truth["not_engaged"], truth["duplicate"])
    assert dep.watchlist_size == 37
    assert dep.active_seconds == truth["active"] == 299
    c = dep.counters()
    assert c["awaiting_review"] == truth["alerts"] - dep.settled
    assert len(evidence.event_ids()) == truth["alerts"] - truth["false_alert"]  # their crops are gone


def test_active_time_never_counts_a_gap_as_recognition(tmp_path: Path) -> None:
    t = Transparency(tmp_path / "t.json", "cam-north")
    t.tick(T0, True)  # before any deployment: nothing to count
    t.begin(ORDER, T0)
    t.tick(T0, True)
    t.tick(T0 + timedelta(seconds=10), True)
    t.tick(T0 + timedelta(hours=5), True)  # a stall or a suspend: capped
    t.tick(T0 + timedelta(hours=5, seconds=20), False)
    t.tick(T0 + timedelta(hours=6), True)
    dep = t.current
    assert dep is not None
    assert dep.active_seconds == pytest.approx(10 + MAX_TICK_S + 20)
    assert dep.first_active_at == "2026-11-02T08:00:00.000Z"
    assert dep.last_active_at == "2026-11-02T14:00:00.000Z"


def test_each_order_is_its_own_deployment_and_resumes_its_own_counters(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    t = Transparency(path, "cam-north")
    t.begin(ORDER, T0)
    t.add_faces(5)
    second = replace(ORDER, order_id="DO-2026-042", valid_from=T0 + timedelta(days=3),
                     valid_until=T0 + timedelta(days=4))
    t.begin(second, T0 + timedelta(days=3))
    t.add_faces(2)
    t.begin(ORDER, T0 + timedelta(days=3, hours=1))
    t.add_faces(1)
    t.save(T0 + timedelta(days=3, hours=1))
    deps = Transparency(path, "cam-north").deployments()
    assert [(d.order_id, d.faces_processed) for d in deps] == [("DO-2026-041", 6), ("DO-2026-042", 2)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_public_payload_holds_figures_and_public_references_only(tmp_path: Path) -> None:
    t = Transparency(tmp_path / "t.json", "cam-north")
    assert t.public_payload(T0)["deployment"] is None
    t.begin(ORDER, T0)
    t.add_faces(20_000)
    t.add_embeddings(30_000)
    t.alert()
    t.count_outcome("false_alert", T0)
    p = t.public_payload(T0 + timedelta(hours=1))
    assert p["schema"] == "edge.transparency/1" and p["at"] == "2026-11-02T09:00:00.000Z"
    d = p["deployment"]
    assert d["order_id"] == "DO-2026-041" and d["site"] == "boulevard-north-gate"
    assert d["public_contact"] == "lfr@example.org" and d["retention_days"] == 14
    assert d["counters"]["faces_processed"] == 20_000 and d["counters"]["false_alerts"] == 1
    assert d["false_alerts_per_10000_faces"] == 0.5
    json.dumps(p)  # plain JSON, ready for a retained topic


def test_lfr_flag_names_the_site_and_the_public_contact() -> None:
    on = lfr_flag(True, "boulevard-north-gate", "lfr@example.org", T0, "DO-2026-041")
    assert on == {"schema": "edge.lfr/1", "live_facial_recognition": True, "site": "boulevard-north-gate",
                  "public_contact": "lfr@example.org", "order_id": "DO-2026-041",
                  "since": "2026-11-02T08:00:00.000Z"}
    assert lfr_flag(False, "x", None, T0)["live_facial_recognition"] is False


def test_counters_only_grow_and_unknown_outcomes_are_refused(tmp_path: Path) -> None:
    t = Transparency(tmp_path / "t.json", "cam-north")
    t.begin(ORDER, T0)
    with pytest.raises(StateError):
        t.add_faces(-1)
    with pytest.raises(StateError):
        t.count_outcome("inconclusive", T0)
    (tmp_path / "bad.json").write_text('{"schema": "other"}')
    with pytest.raises(StateError):
        Transparency(tmp_path / "bad.json", "cam-north")
