"""Scenario generator: deterministic per seed, ground truth matches what is drawn."""

from __future__ import annotations

import hashlib
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main as edge_main
from edge.errors import ConfigError
from edge.perception.detector import BlazeFaceDetector
from edge.pipeline.track import iou
from edge.scenario.catalogue import IDENTITIES
from edge.scenario.plan import ScenarioSpec
from edge.scenario.render import Scene, build_scene, load_truth
from edge.scenario.sprites import FaceFinder
from edge.sources import VideoFileSource, open_source
from edge.sources.scenario import scenario_source

SPEC = ScenarioSpec(seconds=12, fps=10, size=(1280, 720), seed=3,
                    watchlisted=("obama", "tom_hanks"), others=("t1_1", "t1_4", "astronaut"),
                    face_min=40, face_max=100, speed_min=200, speed_max=320)


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> BlazeFaceDetector:
    return BlazeFaceDetector.from_models_dir(models_dir)


@pytest.fixture(scope="module")
def finder(detector: BlazeFaceDetector) -> FaceFinder:
    return lambda image: [d.box for d in detector.detect(image)]


@pytest.fixture(scope="module")
def scene(testdata: Path, finder: FaceFinder) -> Scene:
    return build_scene(SPEC, testdata, finder)


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


@pytest.mark.slow
def test_same_seed_same_scene_other_seed_other_scene(testdata: Path, finder: FaceFinder,
                                                     scene: Scene) -> None:
    again = build_scene(SPEC, testdata, finder)
    assert json.dumps(again.ground_truth()) == json.dumps(scene.ground_truth())
    for frame in (0, 37, 80):
        assert digest(again.render(frame)) == digest(scene.render(frame))
    other = build_scene(ScenarioSpec(**{**SPEC.__dict__, "seed": 4}), testdata, finder)
    assert [p.enter_frame for p in other.passes] != [p.enter_frame for p in scene.passes]


def test_ground_truth_lists_people_passes_and_watchlist(scene: Scene) -> None:
    truth = scene.ground_truth()
    listed = {p["identity"]: p["watchlisted"] for p in truth["people"]}
    assert listed == {"obama": True, "tom_hanks": True, "t1_1": False, "t1_4": False,
                      "astronaut": False}
    obama = next(p for p in truth["passes"] if p["identity"] == "obama")
    assert obama["source"] in ("obama2.jpg", "obama3.jpg")  # enrolment photo is obama.jpg
    for p in truth["passes"]:
        frames = [b[0] for b in p["boxes"]]
        assert frames == list(range(p["start_frame"], p["end_frame"] + 1))
        assert SPEC.face_min - 1 <= p["face_width"] <= SPEC.face_max + 1
        for _, x0, y0, x1, y1 in p["boxes"]:
            assert 0 <= x0 < x1 <= 1280 and 0 <= y0 < y1 <= 720


def test_faces_never_overlap(scene: Scene) -> None:
    per_frame: dict[int, list[tuple[float, float, float, float]]] = {}
    for p in scene.ground_truth()["passes"]:
        for frame, x0, y0, x1, y1 in p["boxes"]:
            per_frame.setdefault(frame, []).append((x0, y0, x1, y1))
    assert any(len(b) > 1 for b in per_frame.values())  # people do share the frame
    for boxes in per_frame.values():
        for a, b in combinations(boxes, 2):
            assert iou(a, b) == 0.0


def test_detector_finds_each_face_at_its_ground_truth_box(scene: Scene,
                                                          detector: BlazeFaceDetector) -> None:
    truth = scene.ground_truth()
    checked = 0
    for p in truth["passes"]:
        for frame, x0, y0, x1, y1 in p["boxes"][::9]:
            image = scene.render(frame)
            # A crop around the face, as the tiled detector would see it.
            w = x1 - x0
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            X0, Y0 = int(max(cx - 1.5 * w, 0)), int(max(cy - 1.5 * w, 0))
            X1, Y1 = int(min(cx + 1.5 * w, 1280)), int(min(cy + 1.5 * w, 720))
            found = detector.detect(np.ascontiguousarray(image[Y0:Y1, X0:X1]))
            best = max((iou((x0, y0, x1, y1), (d.box[0] + X0, d.box[1] + Y0, d.box[2] + X0,
                                                d.box[3] + Y0)) for d in found), default=0.0)
            assert best >= 0.5, (p["identity"], frame, best)
            checked += 1
    assert checked >= 10


def test_empty_background_has_no_faces(scene: Scene, detector: BlazeFaceDetector) -> None:
    empty = [f for f in range(scene.frames)
             if not any(p.enter_frame <= f < p.exit_frame for p in scene.passes)]
    image = scene.render(empty[0]) if empty else scene._backgrounds[0]
    for y in range(0, 720 - 240, 240):
        for x in range(0, 1280 - 320, 320):
            assert detector.detect(np.ascontiguousarray(image[y:y + 240, x:x + 320])) == []


def test_spec_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"'others'.*unknown identity 'nobody'"):
        ScenarioSpec(others=("nobody",)).validate()
    with pytest.raises(ConfigError, match="'face_min'"):
        ScenarioSpec(face_min=10).validate()
    with pytest.raises(ConfigError, match="'listed_min'"):
        ScenarioSpec(face_min=40, face_max=100, listed_min=120).validate()


def test_listed_people_walk_at_or_above_listed_min() -> None:
    from edge.scenario.plan import plan_passes

    spec = ScenarioSpec(seconds=60, seed=5, watchlisted=("obama", "biden", "tom_hanks"),
                        others=("t1_0", "t1_1", "t1_2", "t1_3", "t1_4"), face_min=40, face_max=120)
    narrow = {p.identity: p.face_width for p in plan_passes(spec, {}) if p.watchlisted}
    assert min(narrow.values()) < 48  # this seed walks listed people narrower than a card's 48 px
    passes = plan_passes(ScenarioSpec(**{**spec.__dict__, "listed_min": 56.0}), {})
    assert min(p.face_width for p in passes if p.watchlisted) >= 56


def test_overfull_scene_is_refused(testdata: Path, finder: FaceFinder) -> None:
    spec = ScenarioSpec(seconds=3, size=(1280, 720), face_max=100)
    with pytest.raises(ConfigError, match="'seconds'"):
        build_scene(spec, testdata, finder)


@pytest.mark.slow
def test_cli_writes_video_and_truth_that_sources_replay(tmp_path: Path, testdata: Path,
                                                        models_dir: Path) -> None:
    rc = edge_main(["scenario", "--out", str(tmp_path), "--seconds", "6", "--fps", "10",
                    "--size", "640x360", "--face-min", "30", "--face-max", "60",
                    "--speed-min", "150", "--speed-max", "200", "--watchlisted", "biden",
                    "--others", "t1_0", "--faces", str(testdata), "--models", str(models_dir)])
    assert rc == 0
    truth = load_truth(tmp_path / "scene.json")
    assert truth["frames"] == 60 and truth["video"] == "scene.mp4"
    from_video = list(VideoFileSource(tmp_path / "scene.mp4"))
    assert len(from_video) == 60 and from_video[0].image.shape == (360, 640, 3)
    rendered = list(scenario_source(tmp_path / "scene.json"))
    assert len(rendered) == 60
    # The codec is lossy but close: same picture.
    diff = np.abs(from_video[30].image.astype(int) - rendered[30].image.astype(int)).mean()
    assert diff < 4.0
    via_factory = open_source("scenario", str(tmp_path / "scene.json"))
    assert digest(next(iter(via_factory)).image) == digest(rendered[0].image)


def test_catalogue_lists_every_identity(capsys: pytest.CaptureFixture[str]) -> None:
    assert edge_main(["scenario", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in IDENTITIES)


def test_mask_covers_nose_and_mouth_not_eyes(testdata: Path, finder: FaceFinder) -> None:
    from edge.scenario.sprites import load_rgb, put_on_mask

    photo = load_rgb(testdata / "astronaut.png")
    x0, y0, x1, y1 = (int(v) for v in finder(photo)[0])
    masked = put_on_mask(photo, (x0, y0, x1, y1), load_rgb(testdata / "mask_blue.jpg"))
    h = y1 - y0
    changed = np.abs(masked.astype(int) - photo.astype(int)).sum(axis=2) > 30
    assert changed[y0 + int(0.6 * h):y1, x0:x1].mean() > 0.5  # nose, mouth, chin
    assert changed[y0:y0 + int(0.4 * h), x0:x1].mean() == 0.0  # eyes and forehead


def test_tracker_follows_each_pass_as_one_track(scene: Scene) -> None:
    from edge.pipeline.track import IoUTracker

    truth = scene.ground_truth()
    per_frame: dict[int, list[tuple[str, tuple[float, float, float, float]]]] = {}
    for p in truth["passes"]:
        for frame, x0, y0, x1, y1 in p["boxes"]:
            per_frame.setdefault(frame, []).append((p["person"], (x0, y0, x1, y1)))
    tracker = IoUTracker()
    ids: dict[str, set[int]] = {}
    for frame in range(scene.frames):
        dets = per_frame.get(frame, [])
        update = tracker.update([b for _, b in dets], frame)
        for (person, _), track in zip(dets, update.matches, strict=True):
            if track is not None:
                ids.setdefault(person, set()).add(track.track_id)
    assert len(ids) == len(truth["passes"])
    assert all(len(v) == 1 for v in ids.values()), ids


def test_the_demo_finds_the_checkout_it_runs_from() -> None:
    """`make run` defaults its work and test-data folders to the checkout's .cache."""
    from edge.scenario.demo import ROOT

    assert (ROOT / "Makefile").is_file() and (ROOT / "edge" / "scenario" / "demo.py").is_file()
