"""Degraded copies of a face photo, standing in for faces at a distance on a street.

Each degradation takes an RGB uint8 image and the face's keypoints (frame
pixels) and returns the degraded image and the keypoints in its frame. Only
the face-width one changes the geometry; the others keep the image size.
The keypoints are the clean image's detections, scaled: the eval measures
recognition of a degraded face, not whether the detector still finds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

RGB = npt.NDArray[np.uint8]
Points = npt.NDArray[np.float32]
Transform = Callable[[RGB, Points, float, int], tuple[RGB, Points]]


def to_face_width(image: RGB, keypoints: Points, face_width: float, target: int) -> tuple[RGB, Points]:
    """Rescale the whole image so that the face (clean detection box width) is ``target`` px wide.

    Down with area averaging (a camera integrates light over the pixel), up
    bilinear. The aligner then cuts its chip from this small image, as on the
    device.
    """
    scale = target / max(face_width, 1.0)
    h, w = image.shape[:2]
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    small = np.ascontiguousarray(cv2.resize(image, (nw, nh), interpolation=interp), np.uint8)
    sx, sy = nw / w, nh / h
    pts = (keypoints * np.array([sx, sy], np.float32)).astype(np.float32)
    return small, pts


def jpeg(image: RGB, quality: int) -> RGB:
    """Encode and decode at the given JPEG quality (1-100)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("JPEG decoding failed")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)


def blur(image: RGB, sigma_fraction: float, face_width: float) -> RGB:
    """Gaussian blur with sigma a fraction of the face width (defocus or motion smear)."""
    sigma = max(0.1, sigma_fraction * face_width)
    out = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return np.ascontiguousarray(out, np.uint8)


def low_light(image: RGB, gain: float, noise_sigma: float, seed: int) -> RGB:
    """Darker exposure with sensor noise: ``gain * x + N(0, noise_sigma)``, clipped to 0..255."""
    rng = np.random.default_rng(seed)
    dark = image.astype(np.float32) * np.float32(gain)
    noisy = dark + rng.normal(0.0, noise_sigma, image.shape).astype(np.float32)
    out: RGB = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out


@dataclass(frozen=True)
class Condition:
    """One named capture condition: what it does, in words and as a function."""

    name: str
    kind: str  # "clean", "width" or "degradation"
    describe: str
    apply: Transform


def _clean(image: RGB, kp: Points, face_width: float, seed: int) -> tuple[RGB, Points]:
    return image, kp


def _width(px: int) -> Transform:
    def f(image: RGB, kp: Points, face_width: float, seed: int) -> tuple[RGB, Points]:
        return to_face_width(image, kp, face_width, px)
    return f


def _jpeg(q: int) -> Transform:
    def f(image: RGB, kp: Points, face_width: float, seed: int) -> tuple[RGB, Points]:
        return jpeg(image, q), kp
    return f


def _blur(frac: float) -> Transform:
    def f(image: RGB, kp: Points, face_width: float, seed: int) -> tuple[RGB, Points]:
        return blur(image, frac, face_width), kp
    return f


def _dark(gain: float, noise: float) -> Transform:
    def f(image: RGB, kp: Points, face_width: float, seed: int) -> tuple[RGB, Points]:
        return low_light(image, gain, noise, seed), kp
    return f


WIDTHS = (24, 32, 48, 64, 112)
JPEG_QUALITIES = (30, 50, 70, 90)
BLUR_FRACTION = 0.02  # sigma of 2% of the face width: ~2.2 px on a 110 px LFW face
LOW_LIGHT = (0.25, 4.0)  # a quarter of the light, noise sigma 4 grey levels

CONDITIONS: tuple[Condition, ...] = (
    Condition("clean", "clean", "the photo as it is (same probe subset as the others)", _clean),
    *(Condition(f"width{px}", "width", f"whole photo rescaled so the face is {px} px wide "
                f"(area down-sampling), chip cut from the small image", _width(px))
      for px in WIDTHS),
    *(Condition(f"jpeg{q}", "degradation", f"JPEG re-encoded at quality {q}", _jpeg(q))
      for q in JPEG_QUALITIES),
    Condition("blur", "degradation", f"Gaussian blur, sigma {BLUR_FRACTION:.0%} of the face width",
              _blur(BLUR_FRACTION)),
    Condition("lowlight", "degradation", f"{LOW_LIGHT[0]:.0%} of the light plus Gaussian noise "
              f"sigma {LOW_LIGHT[1]:g} grey levels", _dark(*LOW_LIGHT)),
)
BY_NAME = {c.name: c for c in CONDITIONS}
