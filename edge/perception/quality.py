"""A face quality figure in 0..1 from size, sharpness and pose.

Used to choose which face of a track to embed and to refuse poor enrolment
photos. Each part is in 0..1 and exposed, so the figure can be explained:

* **size**: inter-ocular distance in frame pixels. dlib's chip puts the eyes
  about 54 px apart; below ``SIZE_MIN`` px there is too little detail to
  recognise anyone, above ``SIZE_FULL`` px more pixels add nothing.
* **sharpness**: variance of the Laplacian of the grey chip (a standard focus
  measure), squashed by ``1 - exp(-v / SHARPNESS_SCALE)``. Motion blur and
  upscaled tiny faces both score low.
* **pose**: from the keypoints alone. Yaw shows as the nose moving off the
  eye midline and as the two ear tragions no longer equidistant from the nose;
  pitch as the nose moving towards the eye line or the mouth.

The overall figure is the weighted geometric mean, so one very bad part
(a profile face, a blur) pulls it down whatever the others say.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.perception.types import Detection, FloatArray, RGBImage

SIZE_MIN = 6.0  # px between the eyes at which size scores 0
SIZE_FULL = 36.0  # px between the eyes at which size scores 1
SHARPNESS_SCALE = 60.0  # Laplacian variance giving 1 - 1/e
# Measured on the test faces: a face turned ~20-25 degrees (obama2/3) puts the nose
# 0.2 eye-distances off the eye midline and its ear distances 0.4 apart; a profile
# 0.55 and 0.6. These divisors make a profile 1 and leave a 20-degree turn near 0.5.
NOSE_OFF_PROFILE = 0.5
EAR_ASYM_PROFILE = 0.8
PITCH_LIMIT = 0.5  # nose off its frontal height, in eye-to-mouth units, scoring 0
FRONTAL_NOSE = 0.45  # nose height between eye line (0) and mouth (1) for a frontal face
WEIGHTS = {"size": 1.0, "sharpness": 1.0, "pose": 1.0}


@dataclass(frozen=True)
class QualityParts:
    size: float
    sharpness: float
    pose: float
    overall: float
    eye_distance_px: float
    laplacian_var: float
    yaw: float  # 0 frontal .. 1 profile
    pitch: float  # nose offset from frontal height, eye-to-mouth units

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in vars(self).items()}


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def size_score(keypoints: FloatArray) -> tuple[float, float]:
    iod = float(np.linalg.norm(keypoints[0] - keypoints[1]))
    return _clip01((iod - SIZE_MIN) / (SIZE_FULL - SIZE_MIN)), iod


def sharpness_score(chip: RGBImage) -> tuple[float, float]:
    grey = cv2.cvtColor(np.ascontiguousarray(chip), cv2.COLOR_RGB2GRAY)
    # Centre of the chip only: the padding band holds background and black borders.
    h, w = grey.shape
    core = grey[h // 5 : h - h // 5, w // 5 : w - w // 5]
    var = float(cv2.Laplacian(core, cv2.CV_64F).var())
    return float(1.0 - np.exp(-var / SHARPNESS_SCALE)), var


def pose_score(keypoints: FloatArray) -> tuple[float, float, float]:
    kp = np.asarray(keypoints, np.float64)
    r_eye, l_eye, nose, mouth, r_ear, l_ear = kp[:6]
    mid = (r_eye + l_eye) / 2.0
    iod = max(float(np.linalg.norm(l_eye - r_eye)), 1e-6)
    axis = (l_eye - r_eye) / iod  # along the eye line
    down = np.array([-axis[1], axis[0]])  # perpendicular, towards the mouth
    nose_off = abs(float((nose - mid) @ axis)) / iod  # 0 when the nose is on the midline
    d_r, d_l = float(np.linalg.norm(nose - r_ear)), float(np.linalg.norm(nose - l_ear))
    ear_asym = abs(d_r - d_l) / max(d_r + d_l, 1e-6)
    yaw = _clip01(max(nose_off / NOSE_OFF_PROFILE, ear_asym / EAR_ASYM_PROFILE))
    eye_mouth = max(float((mouth - mid) @ down), 1e-6)
    pitch = abs(float((nose - mid) @ down) / eye_mouth - FRONTAL_NOSE)
    # Squared: a slight turn costs little, a strong one a lot.
    score = (1.0 - yaw**2) * (1.0 - _clip01(pitch / PITCH_LIMIT) ** 2)
    return _clip01(score), yaw, pitch


def assess(detection: Detection, chip: RGBImage) -> QualityParts:
    """All parts and the overall figure for one detected face and its aligned chip."""
    size, iod = size_score(detection.keypoints)
    sharp, var = sharpness_score(chip)
    pose, yaw, pitch = pose_score(detection.keypoints)
    parts = {"size": size, "sharpness": sharp, "pose": pose}
    total = sum(WEIGHTS.values())
    overall = float(np.prod([max(parts[k], 1e-6) ** (w / total) for k, w in WEIGHTS.items()]))
    if min(parts.values()) == 0.0:
        overall = 0.0
    return QualityParts(size, sharp, pose, overall, iod, var, yaw, pitch)


def face_quality(image: RGBImage, detection: Detection, chip: RGBImage) -> float:
    """The overall figure, in the shape the recognizer's ``QualityFn`` expects."""
    del image  # the chip and keypoints carry everything we measure
    return assess(detection, chip).overall


__all__ = ["QualityParts", "assess", "face_quality", "pose_score", "sharpness_score",
           "size_score"]
