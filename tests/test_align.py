"""Alignment: the similarity maths, and our chips against dlib's on real faces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edge.perception.align import (
    ARCFACE_112,
    DEFAULT_KEYPOINT_SET,
    KEYPOINT_SETS,
    TEMPLATE,
    ChipTemplate,
    TemplateAligner,
    arcface_template_json,
    chip_transform,
    similarity_transform,
)
from edge.perception.analyzer import detect_with_close_up
from edge.perception.cli import load_image
from edge.perception.detector import BlazeFaceDetector
from edge.perception.types import KEYPOINT_NAMES

REFS = Path(__file__).parent / "data" / "dlib_refs.json"


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    out: np.ndarray = pts @ m[:, :2].T + m[:, 2]
    return out


def test_recovers_an_exact_similarity() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        src = rng.uniform(0, 500, (int(rng.integers(2, 7)), 2))
        angle, scale = rng.uniform(-math.pi, math.pi), rng.uniform(0.05, 5)
        rot = scale * np.array([[math.cos(angle), -math.sin(angle)],
                                [math.sin(angle), math.cos(angle)]])
        t = rng.uniform(-300, 300, 2)
        dst = src @ rot.T + t
        m = similarity_transform(src, dst)
        np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
        np.testing.assert_allclose(_apply(m, src), dst, atol=1e-6)


def test_least_squares_beats_any_perturbed_similarity() -> None:
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 100, (6, 2))
    dst = src * 1.3 + 5 + rng.normal(0, 2, (6, 2))
    m = similarity_transform(src, dst)
    best = float(((_apply(m, src) - dst) ** 2).sum())
    for _ in range(200):
        a, b = m[0, 0] + rng.normal(0, 0.01), m[1, 0] + rng.normal(0, 0.01)
        other = np.array([[a, -b, m[0, 2] + rng.normal(0, 0.5)],
                          [b, a, m[1, 2] + rng.normal(0, 0.5)]])
        assert float(((_apply(other, src) - dst) ** 2).sum()) >= best - 1e-9


def test_no_reflection_and_degenerate_input() -> None:
    src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    m = similarity_transform(src, src * [-1, 1])  # a mirror image cannot be matched
    assert np.linalg.det(m[:, :2]) > 0
    with pytest.raises(ValueError):
        similarity_transform([[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]])


def test_template_maps_onto_itself() -> None:
    for name in KEYPOINT_SETS:
        m = chip_transform(TEMPLATE, name)
        np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-6)
    # The fitted template is a face: eyes level-ish, nose below and between them.
    r_eye, l_eye, nose, mouth = TEMPLATE[:4]
    assert r_eye[0] < nose[0] < l_eye[0] and abs(r_eye[1] - l_eye[1]) < 5
    assert r_eye[1] < nose[1] < mouth[1]


def test_our_chips_land_on_dlibs_chips(testdata: Path, models_dir: Path) -> None:
    """Our chip (BlazeFace keypoints) sits near dlib's 5-point chip of the same face.

    Measured in dlib chip pixels: where our chip's centre and corners fall. Faces
    turned away (in t1.jpg) differ most, so the bound is on the median.
    """
    det = BlazeFaceDetector.from_models_dir(models_dir, variant="float32")
    aligner = TemplateAligner()
    refs = [f for f in json.loads(REFS.read_text())["faces"] if f["alignment"] == "dlib_5point"]
    corners = np.array([[0, 0], [149, 0], [149, 149], [0, 149]], np.float64)
    centre = np.array([[74.5, 74.5]])
    corner_err, centre_err = [], []
    images = {name: load_image(testdata / name) for name in {f["image"] for f in refs}}
    for ref in refs:
        faces = detect_with_close_up(det, images[ref["image"]])
        match = min(faces, key=lambda d: float(np.linalg.norm(
            d.keypoints[:4].mean(0) - np.array(ref["center"]))))
        dlib_m = np.vstack([np.array(ref["matrix"]), [0, 0, 1]])
        ours = np.vstack([aligner.transform(match.keypoints), [0, 0, 1]])
        ours_in_dlib = (dlib_m @ np.linalg.inv(ours))[:2]
        corner_err.append(float(np.linalg.norm(_apply(ours_in_dlib, corners) - corners,
                                               axis=1).mean()))
        centre_err.append(float(np.linalg.norm(_apply(ours_in_dlib, centre) - centre)))
    assert len(refs) >= 14
    assert np.median(centre_err) < 6.0, centre_err
    assert np.median(corner_err) < 15.0, corner_err


def test_aligner_output(testdata: Path, models_dir: Path) -> None:
    det = BlazeFaceDetector.from_models_dir(models_dir, variant="float32")
    image = load_image(testdata / "obama.jpg")
    (face,) = det.detect(image)
    chip = TemplateAligner().align(image, face.keypoints)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    assert DEFAULT_KEYPOINT_SET in KEYPOINT_SETS
    with pytest.raises(ValueError):
        TemplateAligner("nose_only")


def test_arcface_template_is_the_standard_one() -> None:
    tpl = ChipTemplate.from_json(arcface_template_json())
    assert tpl.size == 112 and tpl.keypoint_set == "eyes_nose_mouth"
    # insightface's arcface_dst, image-left eye first; the mouth centre is the corners' mean.
    np.testing.assert_allclose(
        [tpl.points[n] for n in ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")],
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
         [41.5493, 92.3655], [70.7299, 92.2041]])
    np.testing.assert_allclose(tpl.points["mouth_center"], [56.1396, 92.2848], atol=1e-4)
    with pytest.raises(ValueError, match="keypoints_used"):
        ChipTemplate.from_json({**arcface_template_json(), "keypoints_used": ["nose_tip"]})


def test_arcface_chip_puts_the_keypoints_on_the_template(testdata: Path, models_dir: Path) -> None:
    det = BlazeFaceDetector.from_models_dir(models_dir, variant="float32")
    image = load_image(testdata / "obama.jpg")
    (face,) = det.detect(image)
    aligner = TemplateAligner(template=ARCFACE_112)
    chip = aligner.align(image, face.keypoints)
    assert chip.shape == (112, 112, 3)
    mapped = _apply(aligner.transform(face.keypoints), face.keypoints[:4].astype(np.float64))
    # Four points, four degrees of freedom short of exact: within a few chip pixels.
    err = np.linalg.norm(mapped - ARCFACE_112.detector_points(), axis=1)
    assert err.max() < 6.0, err
    # Named landmarks (an eval harness's path) cut the same chip from the same points.
    named = {n: face.keypoints[i] for i, n in enumerate(KEYPOINT_NAMES[:4])}
    np.testing.assert_array_equal(aligner.align_points(image, named), chip)
    with pytest.raises(ValueError, match="two or more"):
        aligner.align_points(image, {"right_ear_tragion": face.keypoints[4]})
