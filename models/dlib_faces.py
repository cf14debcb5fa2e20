"""dlib's own face pipeline, used only by the model-build scripts.

Finds faces with dlib's HOG detector, places its 5 landmarks with
``shape_predictor_5_face_landmarks.dat`` and turns ``get_face_chip_details``
into a plain 2x3 affine (frame pixels to chip pixels), so that anyone can
re-cut the exact chip with ``cv2.warpAffine`` without dlib.

dlib's ``get_mapping_to_chip`` is not exposed in Python; it maps the three
corners (top-left, top-right, bottom-right) of the chip rectangle, rotated by
the chip angle about the rectangle centre, onto chip pixels (0,0), (cols-1,0)
and (cols-1,rows-1). We do the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / ".cache" / "model-sources"
TESTDATA = ROOT / ".cache" / "testdata"

# Every test image with faces; identity label per image (None: several people).
FACE_IMAGES: dict[str, str | None] = {
    "obama.jpg": "obama", "obama2.jpg": "obama", "obama3.jpg": "obama",
    "obama_partial_face.jpg": "obama", "obama_partial_face2.jpg": "obama",
    "biden.jpg": "biden", "astronaut.png": "astronaut", "Tom_Hanks_54745.png": "tom_hanks",
    "t1.jpg": None, "camera.png": "cameraman", "32bit.png": "32bit",
    "mask_black.jpg": "mask_black", "mask_blue.jpg": "mask_blue",
    "mask_green.jpg": "mask_green", "mask_white.jpg": "mask_white",
}


@dataclass
class DlibFace:
    image: str
    index: int  # order of the face in the image (left to right)
    box: tuple[float, float, float, float]
    landmarks: np.ndarray  # (5, 2)
    matrix: np.ndarray  # (2, 3) frame -> chip


def load_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def chip_matrix(details: Any) -> np.ndarray:
    r = details.rect
    cx, cy = (r.left() + r.right()) / 2.0, (r.top() + r.bottom()) / 2.0
    c, s = math.cos(details.angle), math.sin(details.angle)

    def rot(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return (c * dx - s * dy + cx, s * dx + c * dy + cy)

    src = np.array([rot(r.left(), r.top()), rot(r.right(), r.top()),
                    rot(r.right(), r.bottom())], np.float32)
    dst = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]],
                   np.float32)
    m: np.ndarray = np.asarray(cv2.getAffineTransform(src, dst), np.float64)
    return m


class DlibPipeline:
    def __init__(self) -> None:
        import dlib

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(SOURCES / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(
            str(SOURCES / "dlib_face_recognition_resnet_model_v1.dat"))

    def faces(self, name: str, rgb: np.ndarray) -> list[DlibFace]:
        dets = self.detector(rgb, 1)
        if len(dets) == 0:
            dets = self.detector(rgb, 2)
        out: list[DlibFace] = []
        for d in sorted(dets, key=lambda r: r.left()):
            shape = self.shape(rgb, d)
            details = self.dlib.get_face_chip_details(shape, 150, 0.25)
            pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
            out.append(DlibFace(name, len(out),
                                (d.left(), d.top(), d.right(), d.bottom()), pts,
                                chip_matrix(details)))
        return out

    def descriptor(self, chip: np.ndarray) -> np.ndarray:
        return np.asarray(self.net.compute_face_descriptor(np.ascontiguousarray(chip)),
                          np.float64)


def warp(rgb: np.ndarray, m: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(rgb, m, (150, 150), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
