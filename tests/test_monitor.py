"""The false-alert monitor: suspends on a stream with injected false alerts, not before its sample."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from edge.accountability.monitor import UNIT_FACES, FalseAlertMonitor
from edge.errors import StateError
from tests.accountability_world import T0, open_audit, records_of


def oracle(stream: list[tuple[int, int]], budget: float, min_faces: int) -> int | None:
    """Index of the step at which the budget is first exceeded, computed the long way."""
    faces = false = 0
    for i, (n, f) in enumerate(stream):
        faces += n
        false += f
        if false and false / max(faces, min_faces) > budget / UNIT_FACES:
            return i
    return None


def feed(m: FalseAlertMonitor, stream: list[tuple[int, int]]) -> int | None:
    for i, (n, f) in enumerate(stream):
        now = T0 + timedelta(seconds=i)
        m.faces_processed(n, now)
        for _ in range(f):
            m.false_alert(now)
        if m.suspended is not None:
            return i
    return None


def test_not_suspended_before_the_minimum_sample_while_the_outcome_is_open(tmp_path: Path) -> None:
    with open_audit(tmp_path) as audit:
        m = FalseAlertMonitor(2, min_faces=10_000, audit=audit)
        m.faces_processed(500, T0)
        m.false_alert(T0)
        m.false_alert(T0)  # 2 in 500 faces: 40 per 10,000 seen, but the sample is too small to judge
        assert m.suspended is None
        m.faces_processed(9_500, T0)  # 2 in 10,000: at the budget, not above it
        assert m.suspended is None
        m.faces_processed(2_000, T0)
        reason = m.false_alert(T0 + timedelta(hours=1))  # 3 in 12,000 = 2.5 per 10,000
        assert reason is not None and m.suspended == reason
        assert "2.50 per 10,000 faces" in reason and "budget of 2" in reason
        assert records_of(audit, "matching_suspended") == [
            {"reason": reason, "false_alerts": 3, "faces_processed": 12_000, "budget": 2.0}]


def test_a_certain_overrun_suspends_before_the_minimum_sample(tmp_path: Path) -> None:
    m = FalseAlertMonitor(2, min_faces=10_000)
    m.faces_processed(300, T0)
    for _ in range(2):
        assert m.false_alert(T0) is None
    # A third false alert exceeds the budget for the whole first 10,000 faces whatever follows.
    reason = m.false_alert(T0)
    assert reason is not None
    # Issue 11: the message once said a new bundle lifts the suspension; only a signed resume does.
    assert "until a signed resume" in reason and "bundle" not in reason, reason


@pytest.mark.parametrize("seed", range(6))
def test_suspends_exactly_when_the_injected_false_alerts_exceed_the_budget(seed: int) -> None:
    rng = random.Random(seed)
    budget = rng.choice([1, 2, 3, 5])
    min_faces = rng.choice([2_000, 5_000, 10_000])
    p_false = rng.choice([0.00005, 0.0002, 0.0006])  # per face; the last ones overrun most budgets
    stream = []
    for _ in range(800):
        n = rng.randint(0, 120)
        stream.append((n, sum(rng.random() < p_false for _ in range(n))))
    expected = oracle(stream, budget, min_faces)
    assert feed(FalseAlertMonitor(budget, min_faces=min_faces), stream) == expected


def test_a_clean_stream_is_never_suspended() -> None:
    m = FalseAlertMonitor(1)
    for i in range(100):
        m.faces_processed(1_000, T0 + timedelta(minutes=i))
    m.false_alert(T0)  # 1 in 100,000 faces
    assert m.suspended is None and m.state().rate == pytest.approx(0.1)


def test_suspension_is_sticky_and_only_reset_lifts_it(tmp_path: Path) -> None:
    state = tmp_path / "monitor.json"
    with open_audit(tmp_path) as audit:
        m = FalseAlertMonitor(1, min_faces=1_000, audit=audit, state_path=state)
        m.faces_processed(1_000, T0)
        m.false_alert(T0)
        m.false_alert(T0)
        assert m.suspended is not None
        m.faces_processed(1_000_000, T0 + timedelta(days=1))  # the rate falls, the suspension stays
        assert m.suspended is not None and m.state().rate < 1

        # A restart is not a way out.
        m2 = FalseAlertMonitor(1, min_faces=1_000, audit=audit, state_path=state)
        assert m2.suspended == m.suspended

        m2.reset("new deployment order DO-2026-042 installed", T0 + timedelta(days=2))
        assert m2.suspended is None and m2.state().faces == 0 and m2.state().false_alerts == 0
        assert records_of(audit, "matching_resumed") == [
            {"reason": "new deployment order DO-2026-042 installed"}]
        assert len(records_of(audit, "matching_suspended")) == 1
        m2.reset("bundle v8", T0 + timedelta(days=3))  # nothing suspended: nothing to log
        assert len(records_of(audit, "matching_resumed")) == 1
        assert FalseAlertMonitor(1, state_path=state).suspended is None


def test_a_zero_budget_suspends_on_the_first_false_alert() -> None:
    m = FalseAlertMonitor(0)
    m.faces_processed(50_000, T0)
    assert m.false_alert(T0) is not None


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StateError):
        FalseAlertMonitor(-1)
    with pytest.raises(StateError):
        FalseAlertMonitor(1).faces_processed(-5, T0)
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(StateError):
        FalseAlertMonitor(1, state_path=tmp_path / "m.json")
