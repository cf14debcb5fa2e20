"""BlazeFace detector on real faces, float and int8, and its pure decoding maths."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.perception import blazeface
from edge.perception.blazeface import RawDetections
from edge.perception.detector import BlazeFaceDetector, letterbox
from edge.perception.types import RGBImage

EXPECTED = {
    "t1.jpg": 6, "astronaut.png": 1, "obama.jpg": 1, "obama2.jpg": 1, "obama3.jpg": 1,
    "biden.jpg": 1, "coffee.png": 0, "brick.png": 0,
}


def no_tpu(library: str) -> object:
    raise ValueError(f"{library}: no Edge TPU in the test machine")


def rgb(testdata: Path, name: str) -> RGBImage:
    bgr = cv2.imread(str(testdata / name), cv2.IMREAD_COLOR)
    assert bgr is not None, name
    return np.ascontiguousarray(bgr[:, :, ::-1])


@pytest.fixture(scope="module", params=["float32", "int8"])
def detector(request: pytest.FixtureRequest, models_dir: Path) -> BlazeFaceDetector:
    return BlazeFaceDetector.from_models_dir(models_dir, variant=request.param,
                                             delegate_loader=no_tpu)


@pytest.mark.parametrize(("name", "count"), sorted(EXPECTED.items()))
def test_face_counts(detector: BlazeFaceDetector, testdata: Path, name: str, count: int) -> None:
    found = detector.detect(rgb(testdata, name))
    assert len(found) == count, [round(d.score, 3) for d in found]


def test_detections_are_faces_in_frame_pixels(
    detector: BlazeFaceDetector, testdata: Path
) -> None:
    image = rgb(testdata, "t1.jpg")
    h, w = image.shape[:2]
    dets = detector.detect(image)
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    for d in dets:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert 40 < d.width < 250 and 0.6 < d.height / d.width < 1.6
        kp = d.keypoints
        assert kp.shape == (6, 2)
        # Eyes, nose and mouth inside the box; eyes above the nose above the mouth.
        assert np.all((kp[:4, 0] > x0) & (kp[:4, 0] < x1) & (kp[:4, 1] > y0) & (kp[:4, 1] < y1))
        assert max(kp[0, 1], kp[1, 1]) < kp[2, 1] < kp[3, 1]
        # MediaPipe's "right eye" is the subject's right: on the left in the picture.
        assert kp[0, 0] < kp[1, 0]


def test_int8_agrees_with_float_on_boxes(models_dir: Path, testdata: Path) -> None:
    f32 = BlazeFaceDetector.from_models_dir(models_dir, variant="float32", delegate_loader=no_tpu)
    i8 = BlazeFaceDetector.from_models_dir(models_dir, variant="int8", delegate_loader=no_tpu)
    for name in ("t1.jpg", "obama.jpg", "biden.jpg", "astronaut.png"):
        image = rgb(testdata, name)
        a, b = f32.detect_raw(image), i8.detect_raw(image)
        for box in a.boxes:
            assert blazeface.iou(box, b.boxes).max() > 0.7, name


def test_padding_maps_back_to_the_same_face(models_dir: Path, testdata: Path) -> None:
    det = BlazeFaceDetector.from_models_dir(models_dir, variant="float32", delegate_loader=no_tpu)
    image = rgb(testdata, "obama.jpg")
    padded = cv2.copyMakeBorder(image, 120, 0, 300, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    (a,), (b,) = det.detect(image), det.detect(padded)
    shifted = np.array(b.box) - [300, 120, 300, 120]
    assert np.abs(shifted - np.array(a.box)).max() < 0.04 * a.width
    assert np.abs((b.keypoints - [300, 120]) - a.keypoints).max() < 0.05 * a.width


def test_letterbox_geometry() -> None:
    image = np.full((100, 200, 3), 255, np.uint8)
    tensor, lb = letterbox(image, 192)
    assert tensor.shape == (192, 192, 3) and tensor.dtype == np.float32
    assert lb.pad_x == 0 and lb.pad_y == 48 and lb.scale == pytest.approx(0.96)
    assert tensor[0, 0, 0] == -1.0 and tensor[96, 96, 0] == 1.0
    corners = lb.to_frame(np.array([[48 / 192, 48 / 192], [1.0, 144 / 192]], np.float32))
    assert corners == pytest.approx(np.array([[50, 0], [200, 100]]), abs=1e-3)


# --- pure decoding -----------------------------------------------------------------------


def test_anchor_layouts_match_the_model_outputs() -> None:
    full = blazeface.generate_anchors(blazeface.FULL_RANGE.anchors)
    short = blazeface.generate_anchors(blazeface.SHORT_RANGE.anchors)
    assert full.shape == (2304, 2) and short.shape == (896, 2)
    # Full range: one anchor per cell of a 48x48 map, row-major.
    assert full[0] == pytest.approx([0.5 / 48, 0.5 / 48])
    assert full[1] == pytest.approx([1.5 / 48, 0.5 / 48])
    assert full[48] == pytest.approx([0.5 / 48, 1.5 / 48])
    # Short range: 16x16 cells x2 anchors, then 8x8 cells x6 (three stride-16 layers).
    assert short[0] == pytest.approx(short[1]) and short[0] == pytest.approx([1 / 32, 1 / 32])
    assert short[2] == pytest.approx([3 / 32, 1 / 32])
    assert np.all(short[512:518] == short[512]) and short[512] == pytest.approx([1 / 16, 1 / 16])
    assert short[518] == pytest.approx([3 / 16, 1 / 16])


def test_decode_offsets_scales_and_sigmoid() -> None:
    opts = blazeface.FULL_RANGE
    anchors = blazeface.generate_anchors(opts.anchors)
    regs = np.zeros((2304, 16), np.float32)
    scores = np.full((2304, 1), -1000.0, np.float32)  # clipped to -100: no overflow
    i = 48 * 10 + 20  # anchor at cell (x=20, y=10)
    regs[i, :4] = [9.6, -4.8, 48.0, 24.0]  # dx, dy, w, h in input pixels
    regs[i, 4:6] = [-19.2, 0.0]  # first keypoint 19.2 px left of the anchor
    scores[i] = 2.0
    dets = blazeface.decode(regs, scores, anchors, opts)
    assert len(dets) == 1
    cx, cy = (20.5 + 2.4) / 48, (10.5 - 1.2) / 48
    assert dets.boxes[0] == pytest.approx([cx - 0.125, cy - 0.0625, cx + 0.125, cy + 0.0625])
    assert dets.keypoints[0, 0] == pytest.approx([(20.5 - 4.8) / 48, 10.5 / 48])
    assert dets.keypoints[0, 1] == pytest.approx([20.5 / 48, 10.5 / 48])
    assert dets.scores[0] == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_weighted_nms_averages_overlapping_boxes_and_keeps_the_best_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    kps = np.repeat(boxes[:, None, :2], 6, axis=1)
    dets = RawDetections(boxes, kps, np.array([0.6, 0.9, 0.7], np.float32))
    out = blazeface.weighted_nms(dets, 0.3)
    assert len(out) == 2
    assert out.scores.tolist() == pytest.approx([0.9, 0.7])
    assert out.boxes[0] == pytest.approx([0.6, 0, 10.6, 10])  # (0*.6 + 1*.9) / 1.5
    assert out.keypoints[0, 0] == pytest.approx([0.6, 0])
    assert out.boxes[1] == pytest.approx([50, 50, 60, 60])


def test_weighted_nms_survives_degenerate_boxes() -> None:
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5]], np.float32)
    dets = RawDetections(boxes, np.zeros((2, 6, 2), np.float32), np.array([0.9, 0.8], np.float32))
    assert len(blazeface.weighted_nms(dets, 0.3)) == 2
