"""Face alignment: BlazeFace keypoints (or named landmarks) to a recogniser's chip.

Each recogniser names its chip in the model manifest (``alignment_template``):
chip size, the chip-pixel position of each landmark it knows, and which of
BlazeFace's keypoints align a detection. ``ChipTemplate.from_json`` reads
that block and ``TemplateAligner`` cuts the chip; two templates exist today.

ArcFace-trained recognisers (``ARCFACE_112``) use the standard 112x112
five-point template (eyes, nose tip, mouth corners). BlazeFace has no mouth
corners, only the mouth centre: its point is the mean of the two corners.

dlib's descriptor was trained on chips cut by ``get_face_chip_details(shape,
150, padding=0.25)`` from its 5-point landmarks. We do not run a landmark
model on the device; instead the detector's own keypoints are mapped onto a
template *in dlib's chip frame*. The template below was measured, not
guessed: ``models/fit_alignment.py`` cut dlib's own 5-point chips of real
faces, mapped the BlazeFace keypoints of the same faces into those chips and
averaged them. The keypoint subset used by default is the one that lost least
verification margin against dlib's own alignment (``models/ALIGNMENT.md``).

The transform is the least-squares similarity (rotation, uniform scale,
translation; no reflection) from the chosen keypoints to the template, in
closed form (Umeyama 1991). Pure numpy plus one ``cv2.warpAffine``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.perception.types import KEYPOINT_NAMES, FloatArray, RGBImage

CHIP_SIZE = 150
CHIP_PADDING = 0.25

# Mean position of each BlazeFace keypoint in dlib's 150x150 chip (padding 0.25),
# KEYPOINT_NAMES order. Fitted by models/fit_alignment.py; do not edit by hand.
TEMPLATE: FloatArray = np.array(
    [
        [47.884, 45.873],  # right_eye
        [103.050, 47.027],  # left_eye
        [71.896, 78.747],  # nose_tip
        [73.320, 105.752],  # mouth_center
        [23.629, 57.004],  # right_ear_tragion
        [141.753, 58.548],  # left_ear_tragion
    ],
    dtype=np.float32,
)
TEMPLATE_FACES = 14  # how many faces the template was averaged over

# Keypoint subsets compared in models/ALIGNMENT.md (indices into KEYPOINT_NAMES).
KEYPOINT_SETS: dict[str, tuple[int, ...]] = {
    "all6": (0, 1, 2, 3, 4, 5),
    "eyes_nose_mouth": (0, 1, 2, 3),
    "eyes_nose": (0, 1, 2),
}
DEFAULT_KEYPOINT_SET = "eyes_nose"


def similarity_transform(src: npt.ArrayLike, dst: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """2x3 least-squares similarity mapping points ``src`` (N, 2) onto ``dst`` (N, 2)."""
    s = np.asarray(src, np.float64)
    d = np.asarray(dst, np.float64)
    if s.shape != d.shape or s.ndim != 2 or s.shape[1] != 2 or s.shape[0] < 2:
        raise ValueError(f"need matching (N>=2, 2) point sets, got {s.shape} and {d.shape}")
    ms, md = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - ms, d - md
    var = float((sc**2).sum())
    if var <= 1e-12:
        raise ValueError("source points coincide")
    # With z = x + iy the best similarity is a complex scale-rotation a + ib.
    a = float((sc * dc).sum()) / var
    b = float((sc[:, 0] * dc[:, 1] - sc[:, 1] * dc[:, 0]).sum()) / var
    rot = np.array([[a, -b], [b, a]])
    t = md - rot @ ms
    return np.hstack([rot, t[:, None]])


def chip_transform(
    keypoints: npt.ArrayLike,
    keypoint_set: str | Sequence[int] = DEFAULT_KEYPOINT_SET,
    template: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float64]:
    """2x3 affine from frame pixels to chip pixels for one face's (6, 2) keypoints."""
    idx = list(KEYPOINT_SETS[keypoint_set] if isinstance(keypoint_set, str) else keypoint_set)
    kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
    tpl = np.asarray(TEMPLATE if template is None else template, np.float64)
    return similarity_transform(kp[idx], tpl[idx])


def warp_chip(image: RGBImage, matrix: npt.ArrayLike, size: int = CHIP_SIZE) -> RGBImage:
    """Cut the chip a 2x3 frame-to-chip affine describes (bilinear, black outside)."""
    m = np.asarray(matrix, np.float64)
    chip = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return np.ascontiguousarray(chip, dtype=np.uint8)


# The standard ArcFace 112x112 five-point template (insightface's arcface_dst),
# named from the subject's side as BlazeFace names its keypoints: the subject's
# right eye and mouth corner are on the image's left.
ARCFACE_POINTS: dict[str, tuple[float, float]] = {
    "right_eye": (38.2946, 51.6963),
    "left_eye": (73.5318, 51.5014),
    "nose_tip": (56.0252, 71.7366),
    "mouth_right": (41.5493, 92.3655),
    "mouth_left": (70.7299, 92.2041),
}


@dataclass(frozen=True)
class ChipTemplate:
    """Where named landmarks sit in a recogniser's square chip, and which align detections."""

    name: str
    size: int
    points: Mapping[str, tuple[float, float]]  # chip pixels per landmark name
    keypoint_set: str  # KEYPOINT_SETS key: the BlazeFace keypoints used for a detection

    def __post_init__(self) -> None:
        if self.keypoint_set not in KEYPOINT_SETS:
            raise ValueError(f"unknown keypoint set {self.keypoint_set!r}; "
                             f"known: {', '.join(KEYPOINT_SETS)}")
        missing = [n for n in self.keypoint_names(self.keypoint_set) if n not in self.points]
        if missing:
            raise ValueError(f"template {self.name!r} has no point for {', '.join(missing)}")

    @staticmethod
    def keypoint_names(keypoint_set: str) -> list[str]:
        return [KEYPOINT_NAMES[i] for i in KEYPOINT_SETS[keypoint_set]]

    def detector_points(self, keypoint_set: str | None = None) -> FloatArray:
        """(k, 2) chip positions of the BlazeFace keypoints of ``keypoint_set``."""
        names = self.keypoint_names(keypoint_set or self.keypoint_set)
        return np.array([self.points[n] for n in names], np.float32)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ChipTemplate:
        """The manifest's ``alignment_template`` block (``to_json`` writes it)."""
        try:
            names = [str(n) for n in raw["keypoint_names"]]
            pts = [(float(x), float(y)) for x, y in raw["points"]]
            used = [str(n) for n in raw["keypoints_used"]]
            size = int(raw["chip_size"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"alignment_template is incomplete or malformed ({e!r})") from e
        if len(names) != len(pts):
            raise ValueError("alignment_template: keypoint_names and points differ in length")
        sets = [k for k in KEYPOINT_SETS if cls.keypoint_names(k) == used]
        if not sets:
            raise ValueError(f"alignment_template: keypoints_used {used} is not one of the "
                             f"known sets {', '.join(KEYPOINT_SETS)}")
        return cls(str(raw.get("name", "")), size, dict(zip(names, pts, strict=True)), sets[0])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "chip_size": self.size,
            "keypoint_names": list(self.points),
            "points": [[round(float(x), 4), round(float(y), 4)] for x, y in self.points.values()],
            "keypoints_used": self.keypoint_names(self.keypoint_set),
            "transform": "least-squares similarity (closed form), cv2.warpAffine bilinear",
        }


DLIB_150 = ChipTemplate(
    "dlib_150_fitted", CHIP_SIZE,
    {n: (float(x), float(y)) for n, (x, y) in zip(KEYPOINT_NAMES, TEMPLATE, strict=True)},
    DEFAULT_KEYPOINT_SET,
)
ARCFACE_112 = ChipTemplate(
    "arcface_112", 112,
    {**ARCFACE_POINTS, "mouth_center": (
        (ARCFACE_POINTS["mouth_right"][0] + ARCFACE_POINTS["mouth_left"][0]) / 2,
        (ARCFACE_POINTS["mouth_right"][1] + ARCFACE_POINTS["mouth_left"][1]) / 2)},
    "eyes_nose_mouth",
)


class TemplateAligner:
    """``Aligner``: keypoints -> least-squares similarity -> square RGB chip of ``template``.

    ``keypoint_set`` overrides the template's choice of BlazeFace keypoints
    (used by ``models/fit_alignment.py`` to compare subsets).
    """

    def __init__(self, keypoint_set: str | None = None,
                 template: ChipTemplate = DLIB_150) -> None:
        if keypoint_set is not None and keypoint_set not in KEYPOINT_SETS:
            raise ValueError(f"unknown keypoint set {keypoint_set!r}; "
                             f"known: {', '.join(KEYPOINT_SETS)}")
        self.chip_template = template
        self.keypoint_set = keypoint_set or template.keypoint_set
        self.indices = KEYPOINT_SETS[self.keypoint_set]
        self.dst = template.detector_points(self.keypoint_set)
        self.size = template.size

    def transform(self, keypoints: FloatArray) -> npt.NDArray[np.float64]:
        kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
        return similarity_transform(kp[list(self.indices)], self.dst)

    def align(self, image: RGBImage, keypoints: FloatArray) -> RGBImage:
        """Chip of one detection; ``keypoints`` (6, 2) in BlazeFace's KEYPOINT_NAMES order."""
        return warp_chip(image, self.transform(keypoints), self.size)

    def transform_points(self, landmarks: Mapping[str, npt.ArrayLike]) -> npt.NDArray[np.float64]:
        """Similarity from named landmarks (any >= 2 the template knows) to the chip."""
        names = [n for n in landmarks if n in self.chip_template.points]
        if len(names) < 2:
            raise ValueError(f"need two or more of {', '.join(self.chip_template.points)}; "
                             f"got {', '.join(landmarks) or 'none'}")
        src = np.array([np.asarray(landmarks[n], np.float64).reshape(2) for n in names])
        dst = np.array([self.chip_template.points[n] for n in names], np.float32)
        return similarity_transform(src, dst)

    def align_points(self, image: RGBImage, landmarks: Mapping[str, npt.ArrayLike]) -> RGBImage:
        """Chip from named landmarks, e.g. five points from a landmark model (eval harness)."""
        return warp_chip(image, self.transform_points(landmarks), self.size)


def template_json(keypoint_set: str = DEFAULT_KEYPOINT_SET) -> dict[str, Any]:
    """dlib's fitted template as the manifest records it."""
    out = replace(DLIB_150, keypoint_set=keypoint_set).to_json()
    out.update({
        "padding": CHIP_PADDING,
        "frame": "dlib get_face_chip_details(shape_5, 150, 0.25) chip pixels",
        "fitted_on_faces": TEMPLATE_FACES,
        "fitted_by": "models/fit_alignment.py",
    })
    return out


def arcface_template_json() -> dict[str, Any]:
    """The ArcFace 112x112 template as the manifest records it."""
    out = ARCFACE_112.to_json()
    out["frame"] = ("standard ArcFace 112x112 five-point template (insightface arcface_dst); "
                    "mouth_center = mean of the mouth corners, for BlazeFace's mouth keypoint")
    return out


__all__ = [
    "ARCFACE_112",
    "ARCFACE_POINTS",
    "CHIP_PADDING",
    "CHIP_SIZE",
    "DEFAULT_KEYPOINT_SET",
    "DLIB_150",
    "KEYPOINT_SETS",
    "TEMPLATE",
    "ChipTemplate",
    "TemplateAligner",
    "arcface_template_json",
    "chip_transform",
    "similarity_transform",
    "template_json",
    "warp_chip",
]
