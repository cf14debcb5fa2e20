"""The quality figure ranks real faces the way a reviewer would."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.perception.align import TemplateAligner
from edge.perception.analyzer import detect_with_close_up
from edge.perception.cli import load_image
from edge.perception.detector import BlazeFaceDetector
from edge.perception.quality import assess, face_quality
from edge.perception.types import Detection, RGBImage


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> BlazeFaceDetector:
    return BlazeFaceDetector.from_models_dir(models_dir, variant="float32")


def _face(detector: BlazeFaceDetector, image: RGBImage) -> tuple[Detection, RGBImage]:
    (det,) = detect_with_close_up(detector, image)
    return det, TemplateAligner().align(image, det.keypoints)


def test_blur_lowers_sharpness(detector: BlazeFaceDetector, testdata: Path) -> None:
    image = load_image(testdata / "obama.jpg")
    det, chip = _face(detector, image)
    blurred = np.asarray(cv2.GaussianBlur(chip, (0, 0), 3.0), np.uint8)
    sharp, soft = assess(det, chip), assess(det, blurred)
    assert sharp.sharpness > 0.9 > 0.5 > soft.sharpness
    assert soft.overall < sharp.overall


def test_small_faces_score_lower(detector: BlazeFaceDetector, testdata: Path) -> None:
    image = load_image(testdata / "obama.jpg")
    det, chip = _face(detector, image)
    small = cv2.resize(image, None, fx=0.08, fy=0.08, interpolation=cv2.INTER_AREA)
    canvas = np.zeros((400, 400, 3), np.uint8)
    canvas[100 : 100 + small.shape[0], 100 : 100 + small.shape[1]] = small
    sdet, schip = _face(detector, canvas)
    assert assess(sdet, schip).size < 0.5 < assess(det, chip).size == 1.0


def test_profile_faces_score_lower_on_pose(detector: BlazeFaceDetector, testdata: Path) -> None:
    frontal, _ = _face(detector, load_image(testdata / "astronaut.png"))
    t1 = detector.detect(load_image(testdata / "t1.jpg"))
    poses = sorted(assess(d, np.zeros((150, 150, 3), np.uint8)).pose for d in t1)
    front = assess(frontal, np.zeros((150, 150, 3), np.uint8)).pose
    assert front > 0.8
    assert poses[0] < 0.3  # t1.jpg holds faces in near profile
    assert poses[0] < front


def test_figure_and_parts_in_range(detector: BlazeFaceDetector, testdata: Path) -> None:
    image = load_image(testdata / "biden.jpg")
    det, chip = _face(detector, image)
    q = assess(det, chip)
    for v in (q.size, q.sharpness, q.pose, q.overall):
        assert 0.0 <= v <= 1.0
    assert face_quality(image, det, chip) == q.overall
    assert set(q.as_dict()) >= {"size", "sharpness", "pose", "overall"}
