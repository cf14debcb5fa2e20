"""The adjudication loop: review messages, false-alert crops deleted at once, the two-verifier rule."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from edge.accountability.adjudication import Adjudicator, Review, parse_review
from edge.accountability.evidence import EvidenceStore
from edge.accountability.monitor import FalseAlertMonitor
from edge.accountability.transparency import Transparency
from edge.audit.log import AuditLog, iter_records
from edge.errors import ReviewError
from tests.accountability_world import ORDER, T0, face_crop_jpeg, open_audit, records_of


def review(event_id: str, outcome: str, verifier: str, minutes: int = 1, note: str = "") -> Review:
    return Review(event_id, outcome, verifier, T0 + timedelta(minutes=minutes), note)


class World:
    def __init__(self, tmp: Path, testdata: Path, two: bool) -> None:
        self.tmp, self.two = tmp, two
        self.crop = face_crop_jpeg(testdata)
        self.audit: AuditLog = open_audit(tmp)
        self.evidence = EvidenceStore(tmp / "evidence")
        self.counters = Transparency(tmp / "transparency.json", "cam-north")
        self.counters.begin(ORDER, T0)
        self.monitor = FalseAlertMonitor(3, audit=self.audit)
        self.adj = self.adjudicator()

    def adjudicator(self) -> Adjudicator:
        return Adjudicator(self.evidence, self.audit, self.counters, self.two,
                           state_path=self.tmp / "adjudication.json", monitor=self.monitor)

    def alert(self, event_id: str) -> None:
        self.evidence.put(event_id, self.crop, T0)
        self.counters.alert()
        self.adj.alert_raised(event_id, T0)


@pytest.fixture
def one(tmp_path: Path, testdata: Path) -> World:
    return World(tmp_path, testdata, two=False)


@pytest.fixture
def two(tmp_path: Path, testdata: Path) -> World:
    return World(tmp_path, testdata, two=True)


def test_review_message_round_trips() -> None:
    r = review("0193-ev", "not_engaged", "officer-17", note="crowd too dense to approach")
    assert parse_review(r.to_bytes()) == r
    minimal = b'{"schema":"edge.review/1","event_id":"e1","outcome":"confirmed",' \
              b'"verifier_id":"v1","decided_at":"2026-11-02T08:01:00Z"}'
    assert parse_review(minimal).note == ""


@pytest.mark.parametrize("change, match", [
    ({"schema": "edge.review/2"}, "schema"),
    ({"outcome": "arrested"}, "outcome"),
    ({"verifier_id": ""}, "verifier_id"),
    ({"event_id": "../../x y"}, "event_id"),
    ({"decided_at": "yesterday"}, "decided_at"),
    ({"decided_at": "2026-11-02T08:01:00"}, "UTC offset"),
    ({"note": "x" * 201}, "note"),
    ({"note": "two\nlines"}, "note"),
    ({"crop": "/9j/4AAQ"}, "unknown field"),
    ({"outcome": 3}, "outcome"),
])
def test_malformed_reviews_are_refused_with_a_reason(change: dict[str, object], match: str) -> None:
    obj = review("e1", "confirmed", "v1").to_json() | change
    with pytest.raises(ReviewError, match=match):
        parse_review(json.dumps(obj).encode())


@pytest.mark.parametrize("data", [b"", b"[]", b"\xff\xfe", b"{" + b" " * 5000 + b"}"])
def test_non_json_or_oversized_reviews_are_refused(data: bytes) -> None:
    with pytest.raises(ReviewError):
        parse_review(data)


def test_a_false_alert_deletes_its_crop_at_once(one: World) -> None:
    one.alert("ev-1")
    one.alert("ev-2")
    now = T0 + timedelta(minutes=3)
    applied = one.adj.apply(review("ev-1", "false_alert", "officer-3", note="not the subject"), now)
    assert applied.evidence_deleted and applied.counted == "false_alert" and applied.known
    assert one.evidence.get("ev-1") is None and not (one.tmp / "evidence" / "ev-1.jpg").exists()
    assert one.evidence.event_ids() == ["ev-2"]  # the other alert's crop stays for its review
    adj = records_of(one.audit, "adjudication")
    assert adj == [{"event_id": "ev-1", "outcome": "false_alert", "verifier_ids": ["officer-3"],
                    "decided_at": "2026-11-02T08:01:00.000Z", "note": "not the subject"}]
    assert records_of(one.audit, "deletion") == [
        {"event_id": "ev-1", "what": "alert_evidence", "reason": "adjudicated a false alert"}]
    dep = one.counters.current
    assert dep is not None and dep.false_alerts == 1 and dep.confirmed == 0
    assert one.monitor.state().false_alerts == 1


def test_one_verifier_confirms_when_the_order_asks_for_one(one: World) -> None:
    one.alert("ev-1")
    applied = one.adj.apply(review("ev-1", "confirmed", "officer-1"), T0)
    assert applied.counted == "confirmed" and applied.settled == "confirmed"
    assert one.evidence.get("ev-1") == one.crop  # confirmed evidence is kept until retention ends
    dep = one.counters.current
    assert dep is not None and dep.confirmed == 1


def test_two_distinct_verifiers_are_needed_and_the_same_one_twice_does_not_count(two: World) -> None:
    two.alert("ev-1")
    a1 = two.adj.apply(review("ev-1", "confirmed", "officer-1", 1), T0)
    a2 = two.adj.apply(review("ev-1", "confirmed", "officer-1", 2), T0)  # same verifier, new message
    assert (a1.counted, a2.counted) == (None, None)
    assert a2.confirmations == ("officer-1",) and a2.settled is None
    dep = two.counters.current
    assert dep is not None and dep.confirmed == 0
    assert two.adj.pending() == ["ev-1"]

    a3 = two.adj.apply(review("ev-1", "confirmed", "officer-2", 3), T0)
    assert a3.counted == "confirmed" and a3.confirmations == ("officer-1", "officer-2")
    a4 = two.adj.apply(review("ev-1", "confirmed", "officer-3", 4), T0)
    assert a4.counted is None and a4.settled == "confirmed"
    assert dep.confirmed == 1 and two.adj.pending() == []

    recs = records_of(two.audit, "adjudication")
    assert [r["verifier_ids"] for r in recs] == [
        ["officer-1"], ["officer-1"], ["officer-1", "officer-2"], ["officer-1", "officer-2", "officer-3"]]
    assert recs[0]["note"].startswith("[device: confirmation 1 of 2 distinct verifiers]")
    assert "already settled as confirmed" in recs[3]["note"]


def test_the_two_verifier_rule_survives_a_restart(two: World) -> None:
    two.alert("ev-1")
    two.adj.apply(review("ev-1", "confirmed", "officer-1"), T0)
    restarted = two.adjudicator()
    assert restarted.apply(review("ev-1", "confirmed", "officer-1", 5), T0).counted is None
    assert restarted.apply(review("ev-1", "confirmed", "officer-2", 6), T0).counted == "confirmed"
    dep = two.counters.current
    assert dep is not None and dep.confirmed == 1


def test_a_redelivered_message_is_recorded_once(one: World) -> None:
    one.alert("ev-1")
    r = review("ev-1", "not_engaged", "officer-1")
    assert one.adj.apply(r, T0).counted == "not_engaged"
    again = one.adj.apply(parse_review(r.to_bytes()), T0 + timedelta(seconds=5))
    assert again.repeated and again.counted is None
    assert len(records_of(one.audit, "adjudication")) == 1
    dep = one.counters.current
    assert dep is not None and dep.not_engaged == 1


def test_an_event_is_counted_once_under_its_first_decisive_outcome(one: World) -> None:
    one.alert("ev-1")
    assert one.adj.apply(review("ev-1", "inconclusive", "officer-1", 1), T0).settled is None
    assert one.adj.apply(review("ev-1", "not_engaged", "officer-1", 2), T0).counted == "not_engaged"
    late = one.adj.apply(review("ev-1", "false_alert", "officer-2", 3), T0)
    assert late.counted is None and late.settled == "not_engaged"
    assert not late.evidence_deleted  # only the review that settles it as a false alert deletes
    dep = one.counters.current
    assert dep is not None and (dep.not_engaged, dep.false_alerts, dep.settled) == (1, 0, 1)
    assert len(records_of(one.audit, "adjudication")) == 3


def test_an_unknown_event_is_recorded_and_changes_nothing_else(one: World) -> None:
    one.alert("ev-1")
    one.counters.save(T0)
    before = (one.tmp / "transparency.json").read_bytes()
    applied = one.adj.apply(review("ev-999", "false_alert", "officer-1"), T0 + timedelta(minutes=2))
    assert not applied.known and applied.counted is None and not applied.evidence_deleted
    assert one.evidence.event_ids() == ["ev-1"]
    assert records_of(one.audit, "deletion") == []
    assert records_of(one.audit, "adjudication")[0]["note"] == "[device: unknown event, nothing changed]"
    one.counters.save(T0)
    dep = one.counters.current
    assert dep is not None and dep.false_alerts == 0 and one.monitor.state().false_alerts == 0
    assert json.loads(before)["deployments"] == json.loads((one.tmp / "transparency.json").read_bytes())[
        "deployments"]


def test_old_events_are_forgotten_after_twice_the_longest_retention(one: World) -> None:
    one.adj.alert_raised("ev-old", T0)
    one.adj.alert_raised("ev-new", T0 + timedelta(days=70))
    assert one.adj.pending() == ["ev-new"]
    assert not one.adj.apply(review("ev-old", "confirmed", "v1"), T0 + timedelta(days=70)).known


def test_records_carry_the_callers_time_not_the_clock(one: World) -> None:
    one.alert("ev-1")
    later = T0 + timedelta(days=3, hours=2)
    one.adj.apply(review("ev-1", "false_alert", "v1"), later)
    stamps = {datetime.fromisoformat(r["ts"]) for r in iter_records(one.audit.directory)}
    assert stamps == {later}
