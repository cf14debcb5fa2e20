"""Per-frame recognition: motion gate, tiled detection, tracking, embedding, matching.

``Recognizer.process(frame)`` is the whole hot path of one frame, with no I/O:
it returns the track decisions that should become alerts. Embeddings, chips
and scores of faces that do not match are dropped before the call returns;
evidence (a small crop) is kept in memory only for matching observations, and
only until the track ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np

from edge.perception.tiling import Tile
from edge.perception.types import Aligner, Detection, Embedder, FloatArray, Frame, RGBImage
from edge.pipeline.decision import Decision, TrackDecider
from edge.pipeline.matcher import Matcher
from edge.pipeline.motion import MotionGate, MotionMap
from edge.pipeline.track import FaceSelector, IoUTracker

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


class FaceFinder(Protocol):
    """The tiled detector as the recognizer sees it."""

    last_tiles_run: int

    def detect(self, image: RGBImage, *, tiles_to_run: Callable[[Tile], bool] | None = None
               ) -> list[Detection]: ...


QualityFn = Callable[[RGBImage, Detection, RGBImage], float]


@dataclass(frozen=True)
class Evidence:
    """What an alert needs about one matching face; only ever built for a match."""

    captured_at: datetime
    box: Box
    quality: float
    detection_score: float
    margin: float
    category: str
    crop_source: RGBImage  # the face with a margin, copied out of the frame


@dataclass
class Counters:
    """Non-biometric aggregate counters (published on the stats topic)."""

    frames: int = 0
    frames_gated: int = 0  # no valid deployment order / matching suspended: nothing ran
    frames_still: int = 0  # motion gate found nothing to look at
    tiles_run: int = 0
    detections: int = 0
    tracks: int = 0
    embeddings: int = 0
    too_small: int = 0  # faces narrower than the card's reliable width: counted, never matched
    matches: int = 0  # embeddings above threshold (before the track decision)
    decisions: int = 0
    suppressed: int = 0
    expired_matches: int = 0  # above threshold, but the entry's expires_at <= captured_at: dropped

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class RecognizerParts:
    finder: FaceFinder
    aligner: Aligner
    embedder: Embedder
    quality: QualityFn
    tracker: IoUTracker
    selector: FaceSelector
    decider: TrackDecider[Evidence | None]
    # Built on the first frame, whose size the gate needs; None disables gating.
    motion_factory: Callable[[tuple[int, int]], MotionGate] | None = None
    # The model card's reliable face width (px): narrower faces are counted, not matched.
    min_width: float = 0.0
    counters: Counters = field(default_factory=Counters)


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _crop_with_margin(image: RGBImage, box: Box, others: Sequence[Box] = (),
                      margin: float = 0.4) -> RGBImage:
    """The face with a margin, every other detected face inside it blanked (a bystander
    must not ride in the alert); the face's own box is kept whole."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    xa, ya = max(0, int(x0 - mx)), max(0, int(y0 - my))
    xb, yb = min(w, int(x1 + mx) + 1), min(h, int(y1 + my) + 1)
    crop = np.array(image[ya:yb, xa:xb], copy=True)
    for o in others:
        bx0, by0 = max(xa, int(o[0])), max(ya, int(o[1]))
        bx1, by1 = min(xb, int(np.ceil(o[2])) + 1), min(yb, int(np.ceil(o[3])) + 1)
        if bx1 > bx0 and by1 > by0:
            crop[by0 - ya:by1 - ya, bx0 - xa:bx1 - xa] = 0
    fx0, fy0 = max(xa, int(x0)), max(ya, int(y0))
    fx1, fy1 = min(xb, int(np.ceil(x1))), min(yb, int(np.ceil(y1)))
    if fx1 > fx0 and fy1 > fy0:
        crop[fy0 - ya:fy1 - ya, fx0 - xa:fx1 - xa] = image[fy0:fy1, fx0:fx1]
    return np.ascontiguousarray(crop)


class Recognizer:
    def __init__(self, parts: RecognizerParts) -> None:
        self.p = parts
        self.counters = parts.counters
        self._motion: MotionGate | None = None
        self._matcher: Matcher | None = None

    def set_matcher(self, matcher: Matcher | None) -> None:
        """Swap the watchlist. One reference assignment: ``process`` reads it once per
        frame, so a swap from another thread takes effect at the next frame."""
        self._matcher = matcher

    @property
    def matcher(self) -> Matcher | None:
        return self._matcher

    def idle(self, frame: Frame) -> None:
        """Frame seen while recognition is not allowed: count it, look at nothing."""
        self.counters.frames += 1
        self.counters.frames_gated += 1
        # Tracks must not survive a gap in which we did not look.
        for t in self.p.tracker.flush():
            self._end_track(t.track_id)
        if self._motion is not None:
            self._motion.reset()

    def process(self, frame: Frame) -> list[Decision[Evidence]]:
        c = self.counters
        c.frames += 1
        matcher = self._matcher
        active: Callable[[Tile], bool] | None = None
        if self.p.motion_factory is not None:
            if self._motion is None:
                h, w = frame.image.shape[:2]
                self._motion = self.p.motion_factory((w, h))
            grey = frame.lores if frame.lores is not None else frame.image
            mmap: MotionMap = self._motion.update(grey)
            live = [t.box for t in self.p.tracker.tracks]
            if not mmap.forced and not mmap.any_motion and not live:
                c.frames_still += 1
                return []
            if not mmap.forced:
                # A tile runs if something moved in it or a live track is in it, so a
                # person who stops walking is not lost by the gate.
                def active(tile: Tile) -> bool:
                    return mmap.active(tile.box) or any(_overlaps(tile.box, b) for b in live)
        dets = self.p.finder.detect(frame.image, tiles_to_run=active)
        c.tiles_run += self.p.finder.last_tiles_run
        c.detections += len(dets)
        update = self.p.tracker.update([d.box for d in dets], frame.index)
        c.tracks += len(update.started)
        decisions: list[Decision[Evidence]] = []
        todo: list[tuple[int, Detection, float, RGBImage]] = []
        for det, track in zip(dets, update.matches, strict=True):
            if track is None or not track.confirmed or self.p.decider.decided(track.track_id):
                continue
            if det.width < self.p.min_width:
                c.too_small += 1
                continue
            chip = self.p.aligner.align(frame.image, det.keypoints)
            q = self.p.quality(frame.image, det, chip)
            if self.p.selector.offer(track.track_id, frame.index, q):
                todo.append((track.track_id, det, q, chip))
        if todo and matcher is not None:
            embeddings = self.p.embedder.embed(np.stack([t[3] for t in todo]))
            c.embeddings += len(todo)
            decisions = self._match(frame, todo, embeddings, matcher, [d.box for d in dets])
        for t in update.ended:
            self._end_track(t.track_id)
        return decisions

    def _match(self, frame: Frame, todo: Sequence[tuple[int, Detection, float, RGBImage]],
               embeddings: FloatArray, matcher: Matcher, boxes: Sequence[Box]
               ) -> list[Decision[Evidence]]:
        out: list[Decision[Evidence]] = []
        for (track_id, det, q, _chip), result in zip(todo, matcher.match_many(embeddings), strict=True):
            subject: str | None = None
            evidence: Evidence | None = None
            score = 0.0
            if result is not None and result.matched and result.entry.expires_at <= frame.captured_at:
                # The entry expired before this frame (the matcher is rebuilt only now and then).
                self.counters.expired_matches += 1
            elif result is not None and result.matched:  # score >= the effective threshold
                subject, score = result.entry.subject_ref, result.score
                self.counters.matches += 1
                others = [b for b in boxes if b is not det.box]
                evidence = Evidence(frame.captured_at, det.box, q, det.score, result.margin,
                                    result.entry.category,
                                    _crop_with_margin(frame.image, det.box, others))
            decision = self.p.decider.observe(track_id, subject, score, frame.ts, evidence)
            if decision is not None:
                self.counters.decisions += 1
                self.p.selector.close(track_id)
                out.append(decision)  # type: ignore[arg-type]  # evidence is set for every match
        self.counters.suppressed = self.p.decider.suppressed
        return out

    def _end_track(self, track_id: int) -> None:
        self.p.selector.forget(track_id)
        self.p.decider.end_track(track_id)

    def finish(self) -> None:
        """End of stream: drop every track and its evidence."""
        for t in self.p.tracker.flush():
            self._end_track(t.track_id)
