"""IoU tracker and per-track face selection. Pure logic: boxes in, decisions out.

Tracking links detections of consecutive frames by box overlap (greedy, highest
IoU first, against each track's constant-velocity prediction, so small fast faces
still overlap their prediction); a near box of the same size is accepted at a lower
rank when nothing overlaps enough (a new track has no velocity yet). A track is
*confirmed* after ``confirm_hits`` detections and *ended* after ``max_misses``
frames without one; ids are unique for the tracker's life (one run).

Selection decides which faces of a track are worth embedding: good enough
(quality floor), not too often (one per ``min_gap`` frames per track), and, once a
track has ``keep`` embedded faces, only a face clearly better than the worst of
them. Embedding cost per person is thus bounded, and spent on the best views.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge.config import TrackingConfig  # holds the one default of each tracking.* key

Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def iou(a: Box, b: Box) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    track_id: int
    box: Box
    first_frame: int
    last_frame: int
    hits: int = 1
    misses: int = 0
    confirmed: bool = False
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre motion, pixels per frame

    def predict(self, frame_index: int) -> Box:
        dt = frame_index - self.last_frame
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


@dataclass(frozen=True)
class TrackUpdate:
    """Result of one frame: ``matches[i]`` is the track of detection i (None if unconfirmed)."""

    matches: list[Track | None]
    started: list[Track]  # tracks confirmed on this frame
    ended: list[Track]  # tracks dropped on this frame (their last state)


class IoUTracker:
    def __init__(self, *, iou: float = TrackingConfig.iou, confirm_hits: int = 2,
                 max_missed: int = TrackingConfig.max_missed, first_id: int = 1, smoothing: float = 0.5,
                 max_jump: float = 1.0) -> None:
        self.iou_threshold = iou
        self.max_jump = max_jump  # in face widths, for the distance fallback
        self.confirm_hits = confirm_hits
        self.max_misses = max_missed
        self.smoothing = smoothing
        self._next_id = first_id
        self.tracks: list[Track] = []

    def update(self, boxes: Sequence[Box], frame_index: int) -> TrackUpdate:
        """Associate this frame's detections with the live tracks.

        Frames the caller skipped (e.g. no motion) simply widen the prediction step;
        misses are counted in calls, so a skipped frame does not age tracks.
        """
        predicted = [t.predict(frame_index) for t in self.tracks]
        pairs = sorted(
            ((self._affinity(p, b), ti, di)
             for ti, p in enumerate(predicted) for di, b in enumerate(boxes)),
            reverse=True,
        )
        track_of: dict[int, int] = {}
        used_tracks: set[int] = set()
        for score, ti, di in pairs:
            if score <= 0.0:
                break
            if ti in used_tracks or di in track_of:
                continue
            used_tracks.add(ti)
            track_of[di] = ti

        assigned: dict[int, Track] = {}
        started: list[Track] = []
        for di, ti in track_of.items():
            track = self.tracks[ti]
            self._follow(track, boxes[di], frame_index)
            assigned[di] = track
            if not track.confirmed and track.hits >= self.confirm_hits:
                track.confirmed = True
                started.append(track)

        ended: list[Track] = []
        alive: list[Track] = []
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.misses += 1
                if track.misses > self.max_misses:
                    ended.append(track)
                    continue
            alive.append(track)
        for di, box in enumerate(boxes):
            if di in assigned:
                continue
            x0, y0, x1, y1 = box
            track = Track(self._next_id, (float(x0), float(y0), float(x1), float(y1)),
                          frame_index, frame_index)
            self._next_id += 1
            if self.confirm_hits <= 1:
                track.confirmed = True
                started.append(track)
            assigned[di] = track
            alive.append(track)
        self.tracks = alive
        matches = [assigned[di] if assigned[di].confirmed else None for di in range(len(boxes))]
        return TrackUpdate(matches=matches, started=started, ended=ended)

    def _affinity(self, predicted: Box, box: Box) -> float:
        """IoU when it passes the threshold; otherwise, for a near box of similar size (a
        small face that moved more than its width allows to overlap, or a new track with
        no velocity yet), a score below any IoU match that falls with the distance."""
        overlap = iou(predicted, box)
        if overlap >= self.iou_threshold:
            return overlap
        pw, bw = predicted[2] - predicted[0], box[2] - box[0]
        if pw <= 0 or not 0.67 <= bw / pw <= 1.5:
            return 0.0
        dx = (box[0] + box[2] - predicted[0] - predicted[2]) / 2
        dy = (box[1] + box[3] - predicted[1] - predicted[3]) / 2
        closeness = 1.0 - math.hypot(dx, dy) / (self.max_jump * pw)
        return max(closeness, 0.0) * self.iou_threshold * 0.99

    def _follow(self, track: Track, box: Box, frame_index: int) -> None:
        dt = max(frame_index - track.last_frame, 1)
        cx = (box[0] + box[2] - track.box[0] - track.box[2]) / 2 / dt
        cy = (box[1] + box[3] - track.box[1] - track.box[3]) / 2 / dt
        if track.hits == 1:
            track.velocity = (cx, cy)
        else:
            a = self.smoothing
            track.velocity = (a * cx + (1 - a) * track.velocity[0],
                              a * cy + (1 - a) * track.velocity[1])
        track.box = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        track.last_frame = frame_index
        track.hits += 1
        track.misses = 0

    def flush(self) -> list[Track]:
        """End every live track (end of stream)."""
        ended, self.tracks = self.tracks, []
        return ended


@dataclass
class _Budget:
    last_release: int | None = None
    kept: list[float] = field(default_factory=list)  # qualities of the faces embedded
    released: int = 0
    closed: bool = False


class FaceSelector:
    """Which faces of a track to embed, at a bounded rate, favouring the best ones.

    ``quality`` is the 0..1 figure from the quality stage (size, sharpness, pose).
    A face is released when it passes ``min_quality``, at least ``min_gap`` frames
    after the track's last release, and, once ``keep`` faces were embedded, either
    beats the worst of them by ``improve`` (relative) or ``refresh_gap`` frames have
    passed (so an undecided track keeps being re-checked, slowly). ``max_per_track``
    caps the total. :meth:`close` stops a decided track from costing anything more.
    """

    def __init__(self, *, min_quality: float = TrackingConfig.min_quality,
                 embed_every: int = TrackingConfig.embed_every,
                 max_embeds: int = TrackingConfig.max_embeds, keep: int = 3, improve: float = 0.1,
                 refresh_gap: int = 10) -> None:
        self.min_quality = min_quality
        self.min_gap = embed_every
        self.keep = keep
        self.improve = improve
        self.refresh_gap = refresh_gap
        self.max_per_track = max_embeds
        self._budgets: dict[int, _Budget] = {}

    def offer(self, track_id: int, frame_index: int, quality: float) -> bool:
        """True if this face should be embedded now (and it is then counted as such)."""
        b = self._budgets.setdefault(track_id, _Budget())
        if b.closed or quality < self.min_quality or b.released >= self.max_per_track:
            return False
        since = None if b.last_release is None else frame_index - b.last_release
        if since is not None and since < self.min_gap:
            return False
        if len(b.kept) >= self.keep:
            worst = min(b.kept)
            better = quality > worst * (1.0 + self.improve)
            stale = since is not None and since >= self.refresh_gap
            if not (better or stale):
                return False
            if better:
                b.kept.remove(worst)
                b.kept.append(quality)
        else:
            b.kept.append(quality)
        b.last_release = frame_index
        b.released += 1
        return True

    def released(self, track_id: int) -> int:
        b = self._budgets.get(track_id)
        return 0 if b is None else b.released

    def close(self, track_id: int) -> None:
        """The track is decided: embed nothing more of it."""
        self._budgets.setdefault(track_id, _Budget()).closed = True

    def forget(self, track_id: int) -> None:
        """The track ended: drop its state (nothing about it is kept)."""
        self._budgets.pop(track_id, None)
