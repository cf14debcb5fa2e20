"""The main face of a photo: the largest, ties by centrality; enrolment refuses what is unclear."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.authority.enrol import template_for
from edge.errors import EnrolmentError
from edge.perception.analyzer import FaceAnalyzer
from edge.perception.cli import load_image
from edge.perception.pick import main_index, rival_index
from edge.perception.types import Detection, RGBImage


def _det(x0: float, y0: float, w: float) -> Detection:
    return Detection((x0, y0, x0 + w, y0 + w), np.zeros((6, 2), np.float32), 0.9)


def test_largest_wins_then_the_one_nearer_the_centre() -> None:
    size = (400, 600)
    assert main_index([], size) is None
    dets = [_det(0, 0, 80), _det(250, 150, 60), _det(500, 300, 100)]
    assert main_index(dets, size) == 2
    tied = [_det(0, 0, 100), _det(250, 150, 99), _det(480, 280, 100)]
    assert main_index(tied, size) == 1  # within the tie margin, and centred
    assert rival_index(tied, 1) == 0
    assert rival_index([_det(0, 0, 100), _det(300, 0, 50)], 0) is None


@pytest.fixture(scope="module")
def analyzer(models_dir: Path) -> FaceAnalyzer:
    return FaceAnalyzer.from_models_dir(models_dir, variant="float")


def _side_by_side(left: RGBImage, right: RGBImage, right_scale: float) -> RGBImage:
    right = cv2.resize(right, None, fx=right_scale, fy=right_scale, interpolation=cv2.INTER_AREA)
    h = max(left.shape[0], right.shape[0])
    canvas = np.full((h, left.shape[1] + right.shape[1], 3), 128, np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1]:] = right
    return canvas


def test_verify_and_enrolment_use_the_largest_face(analyzer: FaceAnalyzer, testdata: Path) -> None:
    obama, biden = load_image(testdata / "obama.jpg"), load_image(testdata / "biden.jpg")
    photo = _side_by_side(obama, biden, 0.45)
    main = analyzer.main_face(photo)
    alone, other = analyzer.main_face(obama), analyzer.main_face(biden)
    assert main is not None and alone is not None and other is not None
    assert main.embedding is not None and alone.embedding is not None and other.embedding is not None
    # The same photo of Obama (measured 0.97; other photos of him score under 0.8), not the small Biden.
    assert float(main.embedding @ alone.embedding) > 0.95
    assert float(main.embedding @ other.embedding) < 0.3
    template = template_for(analyzer, photo, min_quality=0.0, min_width=40)
    assert float(template @ alone.embedding) > 0.95


def test_enrolment_refuses_two_faces_of_similar_size(analyzer: FaceAnalyzer, testdata: Path) -> None:
    obama, biden = load_image(testdata / "obama.jpg"), load_image(testdata / "biden.jpg")
    widths = [f.detection.width for im in (obama, biden) for f in analyzer.analyze(im)]
    photo = _side_by_side(obama, biden, 0.95 * widths[0] / widths[1])
    assert len(analyzer.analyze(photo)) == 2
    with pytest.raises(EnrolmentError, match="two of similar size"):
        template_for(analyzer, photo, min_quality=0.0, min_width=40)


def test_enrolment_refuses_a_face_below_the_reliable_width(analyzer: FaceAnalyzer, testdata: Path) -> None:
    obama = load_image(testdata / "obama.jpg")
    face = analyzer.main_face(obama)
    assert face is not None
    width = face.detection.width
    with pytest.raises(EnrolmentError, match="below the model card's reliable width"):
        template_for(analyzer, obama, min_quality=0.0, min_width=width + 10)
    template_for(analyzer, obama, min_quality=0.0, min_width=width - 10)
