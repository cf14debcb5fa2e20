"""IoU tracker, face selection and the track-level decision, on synthetic boxes."""

from __future__ import annotations

from edge.pipeline.decision import TrackDecider
from edge.pipeline.track import Box, FaceSelector, IoUTracker, iou


def walk(x0: float, y0: float, size: float, step: float, n: int) -> list[Box]:
    return [(x0 + i * step, y0, x0 + i * step + size, y0 + size) for i in range(n)]


def test_iou_basics() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 15, 10)) - 50 / 150) < 1e-9


def test_one_walker_keeps_one_id_and_is_confirmed_after_n_hits() -> None:
    tracker = IoUTracker(confirm_hits=3, max_missed=2)
    ids = []
    for f, box in enumerate(walk(0, 100, 40, 12, 30)):
        update = tracker.update([box], f)
        ids.append(update.matches[0].track_id if update.matches[0] else None)
    assert ids[:2] == [None, None]  # not yet confirmed
    assert set(ids[2:]) == {ids[2]}


def test_fast_small_face_followed_by_velocity_prediction() -> None:
    # 30 px face moving 25 px per frame: consecutive boxes barely overlap (IoU ~0.1),
    # the prediction makes it a clean match.
    tracker = IoUTracker(confirm_hits=2, iou=0.3)
    seen = set()
    for f, box in enumerate(walk(0, 0, 30, 25, 20)):
        m = tracker.update([box], f).matches[0]
        if m is not None:
            seen.add(m.track_id)
    assert len(seen) == 1


def test_two_walkers_crossing_lanes_keep_distinct_ids() -> None:
    tracker = IoUTracker(confirm_hits=1)
    a, b = walk(0, 100, 40, 10, 20), walk(400, 300, 40, -10, 20)
    per_track: dict[int, set[float]] = {}
    for f in range(20):
        update = tracker.update([a[f], b[f]], f)
        for det, tr in zip((a[f], b[f]), update.matches, strict=True):
            assert tr is not None
            per_track.setdefault(tr.track_id, set()).add(det[1])
    assert len(per_track) == 2
    assert all(len(ys) == 1 for ys in per_track.values())  # never swapped lanes


def test_track_ends_after_m_misses_and_ids_are_never_reused() -> None:
    tracker = IoUTracker(confirm_hits=1, max_missed=3)
    box = (10.0, 10.0, 50.0, 50.0)
    first = tracker.update([box], 0).matches[0]
    assert first is not None
    ended = []
    for f in range(1, 6):
        ended += tracker.update([], f).ended
    assert [t.track_id for t in ended] == [first.track_id]
    again = tracker.update([box], 6).matches[0]
    assert again is not None and again.track_id != first.track_id


def test_miss_within_budget_keeps_the_track() -> None:
    tracker = IoUTracker(confirm_hits=1, max_missed=3)
    boxes = walk(0, 0, 40, 8, 10)
    ids = set()
    for f, box in enumerate(boxes):
        detections = [] if f in (4, 5) else [box]  # detector missed two frames
        update = tracker.update(detections, f)
        ids |= {m.track_id for m in update.matches if m is not None}
        assert not update.ended
    assert len(ids) == 1


def test_selector_rate_limits_and_prefers_better_faces() -> None:
    sel = FaceSelector(min_quality=0.3, embed_every=3, keep=2, improve=0.1, refresh_gap=100)
    released = [f for f in range(30) if sel.offer(1, f, 0.5)]
    assert released == [0, 3]  # two kept faces, then nothing equal-or-worse
    assert not sel.offer(1, 31, 0.2)  # below the floor
    assert sel.offer(1, 32, 0.9)  # clearly better than the worst kept
    assert not sel.offer(1, 33, 0.95)  # but not within min_gap
    assert sel.released(1) == 3


def test_selector_refreshes_undecided_tracks_slowly_and_stops_when_closed() -> None:
    sel = FaceSelector(embed_every=2, keep=1, refresh_gap=10, max_embeds=4)
    released = [f for f in range(100) if sel.offer(7, f, 0.6)]
    assert released == [0, 10, 20, 30]  # refresh cadence, then the hard cap
    sel.close(8)
    assert not sel.offer(8, 0, 1.0)
    sel.forget(7)
    assert sel.released(7) == 0


def test_k_of_n_one_track_gives_one_decision() -> None:
    decider: TrackDecider[str] = TrackDecider(k=2, n=4, cooldown_s=10.0)
    results = [
        decider.observe(1, s, sc, t, f"crop{t}")
        for t, (s, sc) in enumerate([("obama", 0.7), (None, 0.2), ("obama", 0.8),
                                     ("obama", 0.9), ("obama", 0.9)])
    ]
    decisions = [d for d in results if d is not None]
    assert len(decisions) == 1
    d = decisions[0]
    assert (d.track_id, d.subject, d.hits, d.window) == (1, "obama", 2, 3)
    assert d.best.evidence == "crop2" and d.latest.evidence == "crop2"


def test_inconsistent_matches_give_no_decision() -> None:
    decider: TrackDecider[None] = TrackDecider(k=3, n=4)
    subjects = ["obama", "biden", None, "obama", "biden", None, "obama", "biden"]
    assert all(decider.observe(1, s, 0.6, t, None) is None for t, s in enumerate(subjects))


def test_single_match_below_k_gives_nothing() -> None:
    decider: TrackDecider[None] = TrackDecider(k=2, n=3)
    seq = ["biden", None, None, None, "biden", None, None]
    assert all(decider.observe(1, s, 0.6, t, None) is None for t, s in enumerate(seq))


def test_cooldown_merges_fragmented_tracks_of_one_person() -> None:
    decider: TrackDecider[None] = TrackDecider(k=2, n=3, cooldown_s=5.0)
    first = [decider.observe(1, "obama", 0.8, t, None) for t in (0.0, 0.5, 1.0, 3.0)]
    assert sum(d is not None for d in first) == 1
    decider.end_track(1)
    # Same person re-acquired 4 s after the last match: swallowed by the cooldown.
    second = [decider.observe(2, "obama", 0.8, t, None) for t in (7.0, 7.5)]
    assert second == [None, None] and decider.suppressed == 1
    # Another subject is not affected by obama's cooldown.
    assert decider.observe(3, "biden", 0.8, 7.6, None) is None
    assert decider.observe(3, "biden", 0.8, 7.7, None) is not None
    # A real second pass, well after the cooldown, alerts again.
    third = [decider.observe(4, "obama", 0.8, t, None) for t in (30.0, 30.5)]
    assert third[1] is not None and third[1].track_id == 4
