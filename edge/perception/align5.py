"""Alignment by dlib's 5 landmarks (``edge.perception.landmarks``) instead of a keypoint template.

``make_aligner`` selects one by name ("keypoints", "dlib5", "dlib5_arcface").
Two chips, both behind the ``Aligner`` port (``align(image, keypoints)``: the
BlazeFace keypoints place the face rectangle the landmark model starts from):

- ``Dlib5Aligner``: dlib's own chip for its ResNet, what
  ``get_face_chip_details(shape, 150, 0.25)`` and ``extract_image_chip`` cut.
  dlib fits a similarity from five template points (in a unit square widened
  by ``padding`` on each side, scaled to the chip) to the landmarks, then maps
  the square's corners to chip pixels (0, 0) and (size-1, size-1); dlib's
  landmarks are whole pixels, so the points are rounded first, as dlib does.
- ``ArcFace5Aligner``: the 112x112 ArcFace chip from a least-squares
  similarity of three points: the two eye centres (mean of each eye's two
  corners) onto the template's eyes, and dlib's point 4 onto
  ``ARCFACE_NOSE_BASE``. dlib's point 4 is the base of the nose (top of the
  philtrum), not the ArcFace template's nose tip, which sits higher in the
  image: mapping one onto the other would squash the face vertically. Its
  place in the ArcFace frame was measured on the pinned test faces
  (``fit_arcface_nose_base``): each face is put in the ArcFace frame by its
  eye centres, BlazeFace's nose tip and BlazeFace's mouth centre (onto the
  template's nose tip and the mean of its mouth corners), and dlib's point 4
  lands, on average, at ``ARCFACE_NOSE_BASE``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import ModelError
from edge.perception.align import TemplateAligner, similarity_transform
from edge.perception.landmarks import RectMapping, ShapePredictor, dlib_rect
from edge.perception.types import Aligner, FloatArray, RGBImage

F64 = npt.NDArray[np.float64]

# dlib's 5-point chip template (dlib/image_transforms/interpolation.h), unit square,
# in the predictor's point order: outer and inner corner of the eye on the image's
# right, the same for the image's left eye, base of the nose.
DLIB5_TEMPLATE: F64 = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
])
DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25

# The standard ArcFace 112x112 five-point template (insightface's arcface_dst), image
# left to right: eye, eye, nose tip, mouth corner, mouth corner.
ARCFACE_SIZE = 112
ARCFACE_EYES: F64 = np.array([[38.2946, 51.6963], [73.5318, 51.5014]])
ARCFACE_NOSE_TIP = (56.0252, 71.7366)
ARCFACE_MOUTH_CENTRE = ((41.5493 + 70.7299) / 2, (92.3655 + 92.2041) / 2)
# Where dlib's point 4 (base of the nose) sits in that frame: fitted by
# models/make_landmark_refs.py (`fit.arcface_nose_base`); tests re-fit it.
ARCFACE_NOSE_BASE = (56.026, 79.812)


def eye_centres(points: npt.ArrayLike) -> F64:
    """(2, 2) eye centres, image left first, from dlib's 5 points."""
    p = np.asarray(points, np.float64).reshape(5, 2)
    return np.array([(p[2] + p[3]) / 2, (p[0] + p[1]) / 2])


def dlib_chip_transform(points: npt.ArrayLike, size: int = DLIB_CHIP_SIZE,
                        padding: float = DLIB_CHIP_PADDING) -> F64:
    """2x3 frame -> chip affine of dlib's ``get_face_chip_details(points, size, padding)``."""
    pts = np.asarray(points, np.float64).reshape(5, 2)
    chip_pts = (padding + DLIB5_TEMPLATE) / (2 * padding + 1) * size
    to_img = similarity_transform(chip_pts, pts)  # chip pixels -> frame, as dlib fits it
    a, b = to_img[0, 0], to_img[1, 0]
    angle, scale = math.atan2(b, a), math.hypot(a, b)
    centre = to_img[:, :2] @ np.array([size / 2, size / 2]) + to_img[:, 2]
    # dlib's chip rectangle is size*scale pixels wide around `centre` (a drectangle counts
    # both edge pixels: right - left = width - 1), rotated by `angle`; its corners go to
    # chip pixels 0 and size-1.
    k = (size - 1) / (size * scale - 1)
    c, s = math.cos(angle), math.sin(angle)
    rot = k * np.array([[c, s], [-s, c]])
    t = np.array([(size - 1) / 2, (size - 1) / 2]) - rot @ centre
    return np.hstack([rot, t[:, None]])


def arcface_transform(points: npt.ArrayLike,
                      nose_base: Sequence[float] = ARCFACE_NOSE_BASE) -> F64:
    """2x3 frame -> ArcFace 112 chip affine from dlib's 5 points (eye centres and nose base)."""
    p = np.asarray(points, np.float64).reshape(5, 2)
    src = np.vstack([eye_centres(p), p[4:5]])
    dst = np.vstack([ARCFACE_EYES, np.asarray(nose_base, np.float64).reshape(1, 2)])
    return similarity_transform(src, dst)


def fit_arcface_nose_base(points: Sequence[npt.ArrayLike],
                          keypoints: Sequence[npt.ArrayLike]) -> F64:
    """Mean position of dlib's point 4 in the ArcFace frame over faces with both dlib's
    5 points and BlazeFace's (6, 2) keypoints (see the module docstring)."""
    if len(points) != len(keypoints) or not points:
        raise ValueError("need matching, non-empty lists of landmarks and keypoints")
    dst = np.vstack([ARCFACE_EYES, [ARCFACE_NOSE_TIP], [ARCFACE_MOUTH_CENTRE]])
    placed = []
    for pts, kp in zip(points, keypoints, strict=True):
        p = np.asarray(pts, np.float64).reshape(5, 2)
        k = np.asarray(kp, np.float64).reshape(-1, 2)
        m = similarity_transform(np.vstack([eye_centres(p), k[2:4]]), dst)
        placed.append(m[:, :2] @ p[4] + m[:, 2])
    mean: F64 = np.mean(placed, axis=0)
    return mean


def dlib_round(points: F64) -> F64:
    """Whole pixels, as dlib stores landmarks (half away from zero upward: floor(x + 0.5))."""
    rounded: F64 = np.floor(points + 0.5)
    return rounded


class _LandmarkAligner:
    def __init__(self, predictor: ShapePredictor, mapping: RectMapping | None = None) -> None:
        self.predictor = predictor
        self.mapping = mapping

    def landmarks(self, image: RGBImage, keypoints: FloatArray) -> F64:
        """dlib's 5 points (unrounded) for the face BlazeFace's keypoints describe."""
        rect = self.mapping.rect(keypoints) if self.mapping else dlib_rect(keypoints)
        # Whole pixels, as a dlib rectangle holds them: dlib's predictor on this very
        # rectangle gives these points (tests/test_landmarks.py).
        left, top, right, bottom = (float(v) for v in dlib_round(np.asarray(rect)))
        return self.predictor.predict(image, (left, top, right, bottom))


class Dlib5Aligner(_LandmarkAligner):
    """``Aligner`` for dlib's ResNet: dlib's own 150x150 5-point chip (padding 0.25)."""

    size = DLIB_CHIP_SIZE

    def transform(self, image: RGBImage, keypoints: FloatArray) -> F64:
        return dlib_chip_transform(dlib_round(self.landmarks(image, keypoints)))

    def align(self, image: RGBImage, keypoints: FloatArray) -> RGBImage:
        return cut_chip(image, self.transform(image, keypoints), self.size)


class ArcFace5Aligner(_LandmarkAligner):
    """``Aligner`` for ArcFace-trained 112x112 recognisers from dlib's 5 points."""

    size = ARCFACE_SIZE

    def transform(self, image: RGBImage, keypoints: FloatArray) -> F64:
        return arcface_transform(self.landmarks(image, keypoints))

    def align(self, image: RGBImage, keypoints: FloatArray) -> RGBImage:
        return cut_chip(image, self.transform(image, keypoints), self.size)


ALIGNERS = ("keypoints", "dlib5", "dlib5_arcface")


def make_aligner(name: str, models_dir: Path | str | None = None) -> Aligner:
    """The aligner called ``name``: "keypoints" (BlazeFace keypoints onto the fitted
    template, ``TemplateAligner``), "dlib5" (dlib's own 150 px chip from our port of its
    landmarks) or "dlib5_arcface" (the ArcFace 112 px chip from the same landmarks)."""
    if name == "keypoints":
        return TemplateAligner()
    if name not in ALIGNERS:
        raise ModelError(f"unknown aligner '{name}'; use one of {', '.join(ALIGNERS)}")
    predictor = ShapePredictor.from_models_dir(models_dir)
    return Dlib5Aligner(predictor) if name == "dlib5" else ArcFace5Aligner(predictor)


def cut_chip(image: RGBImage, matrix: F64, size: int) -> RGBImage:
    """Bilinear chip; when the chip shrinks the face more than twice, the frame is first
    halved (``cv2.pyrDown``) as often as dlib's ``extract_image_chip`` halves it, so
    that a large face is averaged rather than point-sampled."""
    scale = math.hypot(matrix[0, 0], matrix[1, 0])  # chip pixels per frame pixel
    m = matrix.copy()
    img = image
    while scale < 0.5 and min(img.shape[:2]) >= 4:
        img = np.asarray(cv2.pyrDown(img), np.uint8)
        m[:, :2] *= 2.0
        scale *= 2.0
    chip = np.zeros((size, size, 3), np.uint8)
    # Transparent border over black: a chip pixel whose bilinear neighbourhood leaves the
    # frame stays black, as in dlib, instead of being blended with the border.
    cv2.warpAffine(img, m, (size, size), dst=chip, flags=cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_TRANSPARENT)
    return chip


__all__ = [
    "ALIGNERS",
    "ARCFACE_NOSE_BASE",
    "ARCFACE_SIZE",
    "DLIB5_TEMPLATE",
    "DLIB_CHIP_PADDING",
    "DLIB_CHIP_SIZE",
    "ArcFace5Aligner",
    "Dlib5Aligner",
    "arcface_transform",
    "cut_chip",
    "dlib_chip_transform",
    "dlib_round",
    "eye_centres",
    "fit_arcface_nose_base",
    "make_aligner",
]
