"""Face alignment: BlazeFace keypoints to dlib's 150x150 face chip.

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

from collections.abc import Sequence
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


class TemplateAligner:
    """``Aligner`` for dlib's chip: keypoints -> similarity -> 150x150 RGB chip."""

    def __init__(self, keypoint_set: str = DEFAULT_KEYPOINT_SET,
                 template: npt.ArrayLike | None = None) -> None:
        if keypoint_set not in KEYPOINT_SETS:
            raise ValueError(f"unknown keypoint set {keypoint_set!r}; "
                             f"known: {', '.join(KEYPOINT_SETS)}")
        self.keypoint_set = keypoint_set
        self.template = np.asarray(TEMPLATE if template is None else template, np.float32)
        self.size = CHIP_SIZE

    def transform(self, keypoints: FloatArray) -> npt.NDArray[np.float64]:
        return chip_transform(keypoints, self.keypoint_set, self.template)

    def align(self, image: RGBImage, keypoints: FloatArray) -> RGBImage:
        return warp_chip(image, self.transform(keypoints), self.size)


def template_json(keypoint_set: str = DEFAULT_KEYPOINT_SET) -> dict[str, Any]:
    """The template as the manifest records it."""
    return {
        "chip_size": CHIP_SIZE,
        "padding": CHIP_PADDING,
        "frame": "dlib get_face_chip_details(shape_5, 150, 0.25) chip pixels",
        "keypoint_names": list(KEYPOINT_NAMES),
        "points": [[round(float(v), 3) for v in p] for p in TEMPLATE],
        "keypoints_used": [KEYPOINT_NAMES[i] for i in KEYPOINT_SETS[keypoint_set]],
        "transform": "least-squares similarity (closed form), cv2.warpAffine bilinear",
        "fitted_on_faces": TEMPLATE_FACES,
        "fitted_by": "models/fit_alignment.py",
    }


__all__ = [
    "CHIP_PADDING",
    "CHIP_SIZE",
    "DEFAULT_KEYPOINT_SET",
    "KEYPOINT_SETS",
    "TEMPLATE",
    "TemplateAligner",
    "chip_transform",
    "similarity_transform",
    "template_json",
    "warp_chip",
]
