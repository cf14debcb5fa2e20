"""Recognizer, fast: the real tracker, selector, k-of-n decider and matcher behind fake models.

The fakes stand in for the two neural networks only (detector, aligner+embedder):
the fake detector really looks at the frame (each painted rectangle is a face,
its grey level says who it is), so tracking, selection, matching against a real
verified bundle and the track decision all run as on the device, in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pytest

from edge.perception.tiling import Tile
from edge.perception.types import Detection, FloatArray, Frame, RGBImage
from edge.pipeline.decision import TrackDecider
from edge.pipeline.matcher import Matcher
from edge.pipeline.recognizer import Evidence, Recognizer, RecognizerParts
from edge.pipeline.track import FaceSelector, IoUTracker
from tests.watchlist_world import World, entry

W, H = 320, 240
WANTED, STRANGER = 200, 90  # grey levels of the two people


class FakeFinder:
    """Each distinct non-zero grey level is one face: its bounding box, six keypoints."""

    last_tiles_run = 0

    def detect(self, image: RGBImage, *, tiles_to_run: Callable[[Tile], bool] | None = None
               ) -> list[Detection]:
        self.last_tiles_run = 1
        out = []
        grey = image[:, :, 0]
        for level in sorted(set(np.unique(grey).tolist()) - {0}):
            ys, xs = np.nonzero(grey == level)
            x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
            w, h = x1 - x0, y1 - y0
            kp = np.array([[x0 + 0.3 * w, y0 + 0.4 * h], [x0 + 0.7 * w, y0 + 0.4 * h],
                           [x0 + 0.5 * w, y0 + 0.6 * h], [x0 + 0.5 * w, y0 + 0.8 * h],
                           [x0, y0 + 0.5 * h], [x1, y0 + 0.5 * h]], dtype=np.float32)
            out.append(Detection((x0, y0, x1, y1), kp, 0.9))
        return out


class FakeAligner:
    def align(self, image: RGBImage, keypoints: FloatArray) -> RGBImage:
        x, y = keypoints[2]  # the nose is inside the face: its grey level says who it is
        return np.full((8, 8, 3), image[int(y), int(x), 0], dtype=np.uint8)


class FakeEmbedder:
    backend, model_id, dim = "fake", "fake-embedder", 128

    def __init__(self, by_level: dict[int, FloatArray]) -> None:
        self.by_level = by_level
        self.calls = 0

    def embed(self, chips: RGBImage) -> FloatArray:
        self.calls += 1
        return np.stack([self.by_level[int(c[0, 0, 0])] for c in chips]).astype(np.float32)


def unit(v: FloatArray) -> FloatArray:
    out: FloatArray = (v / np.linalg.norm(v)).astype(np.float32)
    return out


@pytest.fixture
def world() -> tuple[World, Matcher]:
    w = World()
    rng = np.random.default_rng(11)
    specs = [entry(rng, i, n_templates=1) for i in range(4)]
    vb = w.ctx().verify_bundle(w.unsigned(entries=specs).sign(w.watch).encode(), w.now(), None)
    return w, Matcher.from_bundle(vb, w.now())


def recognizer(embedder: FakeEmbedder, min_width: float = 0.0) -> Recognizer:
    return Recognizer(RecognizerParts(
        finder=FakeFinder(), aligner=FakeAligner(), embedder=embedder,
        quality=lambda _img, _det, _chip: 0.9,
        tracker=IoUTracker(), selector=FaceSelector(), decider=TrackDecider(), min_width=min_width,
    ))


def walk(w: World, n: int, people: dict[int, int]) -> list[Frame]:
    """``n`` frames; each person (grey level -> start x) walks right 4 px per frame."""
    frames = []
    for i in range(n):
        img = np.zeros((H, W, 3), dtype=np.uint8)
        for level, x in people.items():
            img[80:140, x + 4 * i: x + 4 * i + 48] = level
        frames.append(Frame(index=i, captured_at=w.now() + timedelta(seconds=i / 15), ts=i / 15,
                            image=img))
    return frames


def embeddings(matcher: Matcher, near: float = 1.0) -> dict[int, FloatArray]:
    wanted = matcher.templates[0]
    rng = np.random.default_rng(3)
    off = unit(rng.standard_normal(128).astype(np.float32))
    off = unit(off - (off @ wanted) * wanted)
    return {WANTED: unit(near * wanted + np.sqrt(max(0.0, 1 - near**2)) * off),
            STRANGER: unit(rng.standard_normal(128).astype(np.float32))}


def test_a_watchlisted_passer_by_gives_one_decision_a_stranger_none(world: tuple[World, Matcher]) -> None:
    w, matcher = world
    emb = FakeEmbedder(embeddings(matcher))
    rec = recognizer(emb)
    rec.set_matcher(matcher)
    decisions = [d for f in walk(w, 40, {WANTED: 10, STRANGER: 150}) for d in rec.process(f)]
    assert len(decisions) == 1
    d = decisions[0]
    assert d.subject == matcher.entries[0].subject_ref and d.hits >= 2 and d.window <= 4
    ev = d.best.evidence
    assert isinstance(ev, Evidence) and ev.category == "wanted" and ev.crop_source.size > 0
    assert np.all(ev.crop_source[..., 0] <= WANTED)  # the crop is of the wanted face, not the stranger
    c = rec.counters
    assert c.frames == 40 and c.tracks == 2 and c.decisions == 1 and c.matches >= 2
    assert c.embeddings > c.matches  # the stranger was embedded, and nothing of it kept
    rec.finish()


def test_without_a_watchlist_nothing_is_embedded(world: tuple[World, Matcher]) -> None:
    w, matcher = world
    emb = FakeEmbedder(embeddings(matcher))
    rec = recognizer(emb)
    assert all(rec.process(f) == [] for f in walk(w, 30, {WANTED: 10}))
    assert emb.calls == 0 and rec.counters.embeddings == 0 and rec.counters.detections == 30


def test_the_matchers_effective_threshold_is_the_one_applied(world: tuple[World, Matcher]) -> None:
    """A face scoring 0.97: matched under the bundle's 0.95, not under a config raise to 0.99."""
    w, matcher = world
    emb = FakeEmbedder(embeddings(matcher, near=0.97))
    plain, raised = recognizer(emb), recognizer(emb)
    plain.set_matcher(matcher)
    vb_matcher = Matcher(matcher.entries, matcher.templates, matcher.starts, 0.99)
    raised.set_matcher(vb_matcher)
    frames = walk(w, 30, {WANTED: 10})
    assert len([d for f in frames for d in plain.process(f)]) == 1
    assert [d for f in frames for d in raised.process(f)] == []
    assert raised.counters.embeddings > 0 and raised.counters.matches == 0


def test_idle_frames_look_at_nothing_and_end_tracks(world: tuple[World, Matcher]) -> None:
    w, matcher = world
    emb = FakeEmbedder(embeddings(matcher))
    rec = recognizer(emb)
    rec.set_matcher(matcher)
    frames = walk(w, 20, {STRANGER: 10})
    for f in frames[:5]:
        rec.process(f)
    assert rec.p.tracker.tracks
    for f in frames[5:10]:
        rec.idle(f)  # the gate is off: counted, nothing run, no track survives the gap
    assert rec.p.tracker.tracks == []
    assert rec.counters.frames == 10 and rec.counters.frames_gated == 5
    assert rec.counters.detections == 5


def test_a_face_under_the_reliable_width_is_counted_and_not_matched(world: tuple[World, Matcher]) -> None:
    """The walking faces are 48 px wide: a card whose reliable width is 49 px matches none of them."""
    w, matcher = world
    frames = walk(w, 40, {WANTED: 10})
    for min_width, decided in ((48.0, 1), (49.0, 0)):
        emb = FakeEmbedder(embeddings(matcher))
        rec = recognizer(emb, min_width=min_width)
        rec.set_matcher(matcher)
        assert sum(len(rec.process(f)) for f in frames) == decided
        c = rec.counters
        if decided:
            assert c.too_small == 0 and c.embeddings > 0
        else:
            assert c.too_small > 30 and c.embeddings == 0 and emb.calls == 0 and c.matches == 0
