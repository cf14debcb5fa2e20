"""BlazeFace face detector: image in, ``Detection`` list out (frame pixels).

The image is letterboxed into the model input (the model's square, or the size
``set_input_size`` gave: aspect kept, zero border, as MediaPipe's
ImageToTensorCalculator does), scaled to [-1, 1], run
through the runtime, decoded with ``blazeface`` and mapped back to the frame.
Anchor options and thresholds come from the manifest's ``decode`` block, so
the file and the way it is read travel together; ``DetectorConfig`` may
override the thresholds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import ImageError, ModelError
from edge.perception import blazeface
from edge.perception.blazeface import DecodeOptions, RawDetections
from edge.perception.manifest import load_manifest
from edge.perception.runtime import DelegateLoader, TFLiteModel, default_delegate_loader, open_model
from edge.perception.types import Detection, RGBImage


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds; ``None`` keeps the manifest's (MediaPipe's) value."""

    score_threshold: float | None = None
    nms_iou: float | None = None
    max_detections: int = 100
    # Zero border around the image, as a fraction of its longer side, before
    # it is fitted to the model input. The full-range model misses faces that
    # fill the whole picture (a 112x112 aligned crop gives nothing; with 0.25
    # it scores 0.77): enrolment photos and tight crops want ~0.25, camera
    # frames and tiles want 0.
    pad_fraction: float = 0.0


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed into the model input."""

    scale: float  # model pixels per frame pixel
    pad_x: float
    pad_y: float
    width: int  # of the model input
    height: int

    def to_frame(self, xy: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Normalised model-input coordinates (..., 2) to frame pixels."""
        out = xy.astype(np.float32) * np.array([self.width, self.height], np.float32)
        out[..., 0] = (out[..., 0] - self.pad_x) / self.scale
        out[..., 1] = (out[..., 1] - self.pad_y) / self.scale
        return out


def letterbox(
    image: RGBImage, size: int | tuple[int, int], pad_fraction: float = 0.0
) -> tuple[npt.NDArray[Any], Letterbox]:
    """Resize keeping aspect into ``size`` (a square side, or (height, width)), centred,
    zero border; float [-1, 1].

    ``pad_fraction`` shrinks the image further so that a border of that
    fraction of its longer side surrounds it on every side.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ImageError("empty image")
    out_h, out_w = (size, size) if isinstance(size, int) else size
    pad = 1.0 + 2.0 * pad_fraction
    scale = min(out_w / (w * pad), out_h / (h * pad))
    nw, nh = min(out_w, max(1, round(w * scale))), min(out_h, max(1, round(h * scale)))
    resized = _resize(image, nw, nh)
    px, py = (out_w - nw) // 2, (out_h - nh) // 2
    canvas = np.full((out_h, out_w, 3), -1.0, np.float32)  # black after scaling to [-1, 1]
    canvas[py : py + nh, px : px + nw] = resized.astype(np.float32) / 127.5 - 1.0
    return canvas, Letterbox(scale=nw / w, pad_x=float(px), pad_y=float(py), width=out_w,
                             height=out_h)


def _resize(image: RGBImage, width: int, height: int) -> RGBImage:
    """Area resampling down, bilinear up.

    Area averaging is what the int8 calibration and threshold were built
    with, and it keeps t1.jpg's faintest face (score 0.55) above threshold,
    where a Gaussian pyramid (2x faster) loses it. It costs ~4 ms on a
    1280 px photo in OpenCV 5; 384 px tiles take ~0.15 ms.
    """
    interp = cv2.INTER_AREA if width < image.shape[1] else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(image, (width, height), interpolation=interp), np.uint8)


class BlazeFaceDetector:
    """``Detector`` over one BlazeFace model (full- or short-range)."""

    def __init__(
        self, model: TFLiteModel, decode: DecodeOptions, config: DetectorConfig | None = None
    ) -> None:
        cfg = config or DetectorConfig()
        self.config = cfg
        self.decode_options = DecodeOptions(
            anchors=decode.anchors,
            num_keypoints=decode.num_keypoints,
            score_clipping_thresh=decode.score_clipping_thresh,
            min_score_thresh=(
                cfg.score_threshold if cfg.score_threshold is not None
                else decode.min_score_thresh
            ),
            min_suppression_threshold=(
                cfg.nms_iou if cfg.nms_iou is not None else decode.min_suppression_threshold
            ),
            max_detections=cfg.max_detections,
        )
        self.model = model
        self.backend = model.backend
        self.model_id = model.model_id
        size = decode.anchors.input_size
        if model.input_shape[1:3] != (size, size):
            raise ModelError(
                f"{model.model_id}: input {model.input_shape} does not match the decode "
                f"options' input size {size}"
            )
        self.anchors = blazeface.generate_anchors(decode.anchors)

    @property
    def input_hw(self) -> tuple[int, int]:
        """The model input's (height, width): its own square, or what ``set_input_size`` set."""
        return self.model.input_shape[1], self.model.input_shape[2]

    @property
    def native_size(self) -> int:
        """The model's own square input side (what the decode options were made for)."""
        return self.decode_options.anchors.input_size

    @functools.cached_property
    def input_multiple(self) -> int:
        """The model's total stride: ``set_input_size`` takes multiples of it."""
        return self.model.input_multiple()

    def set_input_size(self, height: int, width: int) -> None:
        """Run at a (height, width) input from now on (CPU only: ``TFLiteModel.resized``).

        Frame pixels per model pixel stay whatever the caller's crops make them; the
        tiler uses this to cover a wide region in one call at the square tiles' scale.
        """
        if (height, width) == self.input_hw:
            return
        self.model = self.model.resized(height, width)
        self.anchors = blazeface.generate_anchors(self.decode_options.anchors, self.input_hw)

    @classmethod
    def from_models_dir(
        cls,
        models_dir: Path | str | None = None,
        family: str = "blazeface_full_range",
        variant: str | None = None,
        delegate_loader: DelegateLoader = default_delegate_loader,
        config: DetectorConfig | None = None,
        num_threads: int = 2,
    ) -> BlazeFaceDetector:
        manifest = load_manifest(models_dir)
        model = open_model(
            manifest, family, variant=variant, delegate_loader=delegate_loader,
            num_threads=num_threads,
        )
        raw = model.entry.extra.get("decode") if model.entry is not None else None
        if isinstance(raw, dict):
            decode = DecodeOptions.from_json(raw)
        elif family in blazeface.FAMILIES:
            decode = blazeface.FAMILIES[family]
        else:
            raise ModelError(f"{model.model_id}: the manifest has no 'decode' block")
        return cls(model, decode, config)

    def detect_raw(self, image: RGBImage) -> RawDetections:
        """Suppressed detections as arrays in frame pixels (used by tiling)."""
        tensor, lb = letterbox(image, self.input_hw, self.config.pad_fraction)
        regressors, scores = self._outputs(tensor)
        dets = blazeface.decode(regressors, scores, self.anchors, self.decode_options, self.input_hw)
        dets = blazeface.weighted_nms(
            dets, self.decode_options.min_suppression_threshold, self.config.max_detections
        )
        boxes = lb.to_frame(dets.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        return RawDetections(boxes, lb.to_frame(dets.keypoints), dets.scores)

    def detect(self, image: RGBImage) -> list[Detection]:
        return to_detections(self.detect_raw(image), image.shape[1], image.shape[0])

    def _outputs(self, tensor: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        outs = self.model.run(tensor[None])
        # Regressors carry 4 + 2K values per anchor, scores one.
        regs = [o for o in outs if o.shape[-1] > 1]
        scores = [o for o in outs if o.shape[-1] == 1]
        if len(regs) != 1 or len(scores) != 1:
            raise ModelError(
                f"{self.model_id}: unexpected outputs {[o.shape for o in outs]}"
            )
        return regs[0][0], scores[0][0]


def to_detections(dets: RawDetections, width: int, height: int) -> list[Detection]:
    """Arrays to ``Detection`` values, boxes clipped to the frame, best first."""
    out = []
    for i in np.argsort(-dets.scores, kind="stable"):
        x0, y0, x1, y1 = (float(v) for v in dets.boxes[i])
        box = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        out.append(Detection(box=box, keypoints=dets.keypoints[i].copy(),
                             score=float(dets.scores[i])))
    return out
