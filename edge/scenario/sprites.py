"""Head-and-shoulders cut-outs of real faces, with a soft elliptical alpha mask.

The face box in each source photo is found by the firmware's own detector (the
same one the device runs), so a scene's ground-truth boxes are where that
detector puts faces, scaled and moved with the cut-out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import ImageError
from edge.perception.types import RGBImage

Box = tuple[float, float, float, float]
F32 = npt.NDArray[np.float32]
FaceFinder = Callable[[RGBImage], list[Box]]

# Cut-out around a face box of size (fw, fh), in face units: wide enough for the
# shoulders' start, tall enough for hair above and shoulders below.
SIDE = 1.3  # each side of the face centre, so 2.6 face widths in all
ABOVE = 0.6  # above the face box top
BELOW = 1.5  # below the face box bottom


def load_rgb(path: Path) -> RGBImage:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"cannot read image {path}; run `make testdata` or pass --faces DIR")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def detector_finder(models_dir: Path | None = None) -> FaceFinder:
    """Face boxes from the firmware's BlazeFace detector (full range)."""
    from edge.perception.detector import BlazeFaceDetector

    detector = BlazeFaceDetector.from_models_dir(models_dir)

    def find(image: RGBImage) -> list[Box]:
        return [d.box for d in detector.detect(image)]

    return find


def faces_left_to_right(find: FaceFinder, image: RGBImage) -> list[Box]:
    """Faces of a photo, left to right. A face that fills the whole photo (a tight crop)
    is out of the full-range model's scale, so it is looked for again with a border."""
    boxes = find(image)
    if not boxes:
        h, w = image.shape[:2]
        pad = max(h, w)
        padded = np.asarray(cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                               value=(128, 128, 128)), np.uint8)
        boxes = [(x0 - pad, y0 - pad, x1 - pad, y1 - pad) for x0, y0, x1, y1 in find(padded)]
    return sorted(boxes, key=lambda b: (b[0] + b[2]) / 2)


@dataclass(frozen=True)
class Sprite:
    """A cut-out: RGB and alpha in [0, 1], and the face box in cut-out pixels."""

    rgb: F32  # (h, w, 3)
    alpha: F32  # (h, w)
    face: Box

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]

    def scaled(self, face_width: float) -> Sprite:
        """The cut-out resized so that its face box is ``face_width`` pixels wide."""
        k = face_width / (self.face[2] - self.face[0])
        w, h = self.size
        nw, nh = max(1, round(w * k)), max(1, round(h * k))
        kx, ky = nw / w, nh / h
        interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
        rgb = np.asarray(cv2.resize(self.rgb, (nw, nh), interpolation=interp), np.float32)
        alpha = np.asarray(cv2.resize(self.alpha, (nw, nh), interpolation=interp), np.float32)
        f = self.face
        return Sprite(rgb, alpha, (f[0] * kx, f[1] * ky, f[2] * kx, f[3] * ky))


def put_on_mask(image: RGBImage, box: Box, mask: RGBImage) -> RGBImage:
    """A copy of ``image`` with the mask photo over the lower face (nose to chin)."""
    x0, y0, x1, y1 = box
    fw, fh = x1 - x0, y1 - y0
    mx0, mx1 = round(x0 + 0.05 * fw), round(x1 - 0.05 * fw)
    my0, my1 = round(y0 + 0.45 * fh), round(y1 + 0.05 * fh)
    h, w = image.shape[:2]
    cx0, cy0, cx1, cy1 = max(mx0, 0), max(my0, 0), min(mx1, w), min(my1, h)
    out = image.copy()
    if cx1 <= cx0 or cy1 <= cy0:
        return out
    patch = cv2.resize(mask, (mx1 - mx0, my1 - my0), interpolation=cv2.INTER_AREA)
    # Rounded lower corners, like a mask following the jaw.
    yy, xx = np.mgrid[0:my1 - my0, 0:mx1 - mx0].astype(np.float32)
    nx = (xx + 0.5) / (mx1 - mx0) * 2 - 1
    ny = np.clip((yy + 0.5) / (my1 - my0) * 2 - 1, 0, None)
    alpha = np.clip((1.0 - np.sqrt(nx * nx + ny * ny)) / 0.1, 0, 1)[..., None]
    sl = (slice(cy0 - my0, cy1 - my0), slice(cx0 - mx0, cx1 - mx0))
    region = out[cy0:cy1, cx0:cx1].astype(np.float32)
    out[cy0:cy1, cx0:cx1] = (alpha[sl] * patch[sl] + (1 - alpha[sl]) * region).astype(np.uint8)
    return out


def cut_sprite(image: RGBImage, box: Box) -> Sprite:
    """Cut head and shoulders around ``box``; outside the photo is transparent."""
    x0, y0, x1, y1 = box
    fw, fh = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    left, top = round(cx - SIDE * fw), round(y0 - ABOVE * fh)
    width, height = round(2 * SIDE * fw), round((1 + ABOVE + BELOW) * fh)
    h, w = image.shape[:2]
    rgb = np.zeros((height, width, 3), np.float32)
    valid = np.zeros((height, width), np.float32)
    sx0, sy0 = max(left, 0), max(top, 0)
    sx1, sy1 = min(left + width, w), min(top + height, h)
    if sx1 <= sx0 or sy1 <= sy0:
        raise ImageError("face box lies outside its image")
    rgb[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = image[sy0:sy1, sx0:sx1] / 255.0
    valid[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = 1.0
    # Soft ellipse inscribed in the cut-out: opaque over the face, fading at the rim.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    nx = (xx + 0.5 - width / 2) / (width / 2)
    ny = (yy + 0.5 - height / 2) / (height / 2)
    ellipse = np.clip((1.0 - np.sqrt(nx * nx + ny * ny)) / 0.15, 0.0, 1.0)
    # Photo borders (a tight crop) fade over a few pixels instead of a hard seam.
    sigma = max(0.03 * fw, 0.5)
    valid = cv2.GaussianBlur(valid, (0, 0), sigma) * valid
    alpha = (ellipse * valid).astype(np.float32)
    face = (x0 - left, y0 - top, x1 - left, y1 - top)
    return Sprite(rgb, alpha, face)
