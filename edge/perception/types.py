"""Value types and ports shared by the perception stages.

Images are RGB ``uint8`` arrays of shape (H, W, 3) everywhere inside the
firmware; conversion from OpenCV's BGR happens at the edges that read files or
cameras. Coordinates are frame pixels as floats, x to the right, y down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

RGBImage = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float32]
GreyImage = npt.NDArray[np.uint8]

# MediaPipe BlazeFace keypoint order.
KEYPOINT_NAMES: tuple[str, ...] = (
    "right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion",
)


@dataclass(frozen=True)
class Detection:
    """One face found by the detector."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
    keypoints: FloatArray  # (6, 2), frame pixels, KEYPOINT_NAMES order
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class Face:
    """A detected face with its quality figure and (once computed) its embedding."""

    detection: Detection
    quality: float  # 0..1, higher is better
    embedding: FloatArray | None = None  # (D,), L2-normalised


class Detector(Protocol):
    backend: str  # "edgetpu" or "cpu"
    model_id: str

    def detect(self, image: RGBImage) -> list[Detection]: ...


class Aligner(Protocol):
    def align(self, image: RGBImage, keypoints: FloatArray) -> RGBImage: ...


class Embedder(Protocol):
    backend: str
    model_id: str
    dim: int

    def embed(self, chips: RGBImage) -> FloatArray:
        """(N, S, S, 3) aligned chips -> (N, dim) L2-normalised embeddings."""
        ...


@dataclass(frozen=True, eq=False)  # images are compared by identity, never by value
class Frame:
    """One captured frame.

    ``captured_at`` is UTC wall time from the source's clock (or the file's timeline
    offset from a configured start); ``ts`` is seconds on a monotonic clock of the
    same source, for intervals. ``lores`` is an optional small grey image for the
    motion gate (the camera's lores stream); when absent the gate derives its own.
    """

    index: int
    captured_at: datetime
    ts: float
    image: RGBImage
    lores: GreyImage | None = None
    # time.monotonic() when the frame reached the pipeline, for latency figures.
    received: float = 0.0
