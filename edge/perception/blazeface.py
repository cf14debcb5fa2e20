"""BlazeFace output decoding, as MediaPipe's face-detection graphs do it.

Pure numpy, no I/O. Three steps, each after a MediaPipe calculator:

* ``generate_anchors``: ``SsdAnchorsCalculator`` with ``fixed_anchor_size``
  (every anchor is 1x1 in normalised units, only the centres vary). Layers
  that share a stride share one feature map; each layer adds one anchor per
  aspect ratio per cell, plus one when ``interpolated_scale_aspect_ratio`` is
  non-zero.
* ``decode``: ``TensorsToDetectionsCalculator`` with ``reverse_output_order``
  (x before y), coordinates divided by the input size (MediaPipe's x_scale =
  y_scale = w_scale = h_scale = the square input's side), offsets added to the
  anchor centre; scores clipped to +-100 and passed through a sigmoid.
* ``weighted_nms``: ``NonMaxSuppressionCalculator`` with the WEIGHTED
  algorithm and IoU overlap: every box overlapping the best remaining one by
  more than the threshold is merged into it, coordinates and keypoints
  averaged with the scores as weights; the merged detection keeps the best
  score. This steadies boxes and keypoints more than plain suppression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class AnchorOptions:
    """The subset of MediaPipe's ``SsdAnchorsCalculatorOptions`` BlazeFace uses."""

    input_size: int
    strides: tuple[int, ...]
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    anchor_offset_x: float = 0.5
    anchor_offset_y: float = 0.5


@dataclass(frozen=True)
class DecodeOptions:
    anchors: AnchorOptions
    num_keypoints: int = 6
    score_clipping_thresh: float = 100.0
    min_score_thresh: float = 0.5
    min_suppression_threshold: float = 0.3
    max_detections: int = 100
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        a = self.anchors
        return {
            "anchors": {
                "input_size": a.input_size,
                "strides": list(a.strides),
                "aspect_ratios": list(a.aspect_ratios),
                "interpolated_scale_aspect_ratio": a.interpolated_scale_aspect_ratio,
                "anchor_offset_x": a.anchor_offset_x,
                "anchor_offset_y": a.anchor_offset_y,
                "fixed_anchor_size": True,
            },
            "num_keypoints": self.num_keypoints,
            "box_format": "x_center,y_center,w,h then keypoints x,y (reverse_output_order)",
            "coordinate_scale": self.anchors.input_size,
            "score_clipping_thresh": self.score_clipping_thresh,
            "min_score_thresh": self.min_score_thresh,
            "nms": {
                "algorithm": "WEIGHTED",
                "overlap_type": "INTERSECTION_OVER_UNION",
                "min_suppression_threshold": self.min_suppression_threshold,
            },
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DecodeOptions:
        a = raw["anchors"]
        nms = raw.get("nms", {})
        return cls(
            anchors=AnchorOptions(
                input_size=int(a["input_size"]),
                strides=tuple(int(s) for s in a["strides"]),
                aspect_ratios=tuple(float(r) for r in a.get("aspect_ratios", [1.0])),
                interpolated_scale_aspect_ratio=float(a["interpolated_scale_aspect_ratio"]),
                anchor_offset_x=float(a.get("anchor_offset_x", 0.5)),
                anchor_offset_y=float(a.get("anchor_offset_y", 0.5)),
            ),
            num_keypoints=int(raw.get("num_keypoints", 6)),
            score_clipping_thresh=float(raw.get("score_clipping_thresh", 100.0)),
            min_score_thresh=float(raw.get("min_score_thresh", 0.5)),
            min_suppression_threshold=float(nms.get("min_suppression_threshold", 0.3)),
        )


# MediaPipe face_detection_full_range_common / short_range_common graph options.
FULL_RANGE = DecodeOptions(
    anchors=AnchorOptions(input_size=192, strides=(4,), interpolated_scale_aspect_ratio=0.0),
)
SHORT_RANGE = DecodeOptions(
    anchors=AnchorOptions(input_size=128, strides=(8, 16, 16, 16)),
)
FAMILIES: dict[str, DecodeOptions] = {
    "blazeface_full_range": FULL_RANGE,
    "blazeface_short_range": SHORT_RANGE,
}


def generate_anchors(opts: AnchorOptions, input_hw: tuple[int, int] | None = None) -> F32:
    """Anchor centres ``(N, 2)`` as (x, y) in [0, 1], in the model's output order.

    ``input_hw`` is the input's (height, width) when the model runs at another size
    than its own square one (``input_size``): the feature maps follow it.
    """
    height, width = input_hw or (opts.input_size, opts.input_size)
    out: list[F32] = []
    layer = 0
    n_layers = len(opts.strides)
    per_layer = len(opts.aspect_ratios) + (1 if opts.interpolated_scale_aspect_ratio > 0 else 0)
    while layer < n_layers:
        stride = opts.strides[layer]
        # Consecutive layers with the same stride are one feature map.
        last = layer
        while last < n_layers and opts.strides[last] == stride:
            last += 1
        repeats = per_layer * (last - layer)
        fm_h, fm_w = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(fm_h), np.arange(fm_w), indexing="ij")
        centres = np.stack(
            [(xs + opts.anchor_offset_x) / fm_w, (ys + opts.anchor_offset_y) / fm_h], axis=-1
        ).reshape(-1, 2)
        out.append(np.repeat(centres, repeats, axis=0).astype(np.float32))
        layer = last
    return np.concatenate(out, axis=0)


@dataclass(frozen=True)
class RawDetections:
    """Detections as arrays: boxes (N, 4) x0, y0, x1, y1; keypoints (N, K, 2); scores (N,)."""

    boxes: F32
    keypoints: F32
    scores: F32

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @staticmethod
    def empty(num_keypoints: int = 6) -> RawDetections:
        return RawDetections(
            np.zeros((0, 4), np.float32),
            np.zeros((0, num_keypoints, 2), np.float32),
            np.zeros((0,), np.float32),
        )

    @staticmethod
    def concat(parts: list[RawDetections]) -> RawDetections:
        if not parts:
            return RawDetections.empty()
        return RawDetections(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.keypoints for p in parts]),
            np.concatenate([p.scores for p in parts]),
        )


def sigmoid_scores(raw: F32, clip: float) -> F32:
    x = np.clip(raw.astype(np.float64), -clip, clip)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def decode(regressors: F32, raw_scores: F32, anchors: F32, opts: DecodeOptions,
           input_hw: tuple[int, int] | None = None) -> RawDetections:
    """Decode one image's outputs (``(N, 4+2K)`` and ``(N,)`` or ``(N, 1)``).

    Returns every box scoring at least ``min_score_thresh``, in normalised
    model-input coordinates, not yet suppressed. The regressors are in input pixels:
    x is divided by the input's width and y by its height (``input_hw``, default the
    model's square ``input_size``).
    """
    reg = regressors.reshape(anchors.shape[0], -1).astype(np.float32)
    scores = sigmoid_scores(raw_scores.reshape(-1), opts.score_clipping_thresh)
    keep = scores >= opts.min_score_thresh
    reg, anc, scores = reg[keep], anchors[keep], scores[keep]
    height, width = input_hw or (opts.anchors.input_size, opts.anchors.input_size)
    s = np.array([width, height], np.float32)
    centre = reg[:, 0:2] / s + anc
    half = reg[:, 2:4] / s / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    k = opts.num_keypoints
    kps = reg[:, 4 : 4 + 2 * k].reshape(-1, k, 2) / s + anc[:, None, :]
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return RawDetections(boxes[valid], kps[valid].astype(np.float32), scores[valid])


def iou(box: F32, boxes: F32) -> npt.NDArray[np.float64]:
    """IoU of one box against many (x0, y0, x1, y1)."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0).astype(np.float64)


def weighted_nms(
    dets: RawDetections, iou_threshold: float, max_detections: int = 100
) -> RawDetections:
    """MediaPipe's WEIGHTED non-maximum suppression (see module docstring)."""
    if len(dets) == 0:
        return dets
    order = np.argsort(-dets.scores, kind="stable")
    boxes, kps, scores = dets.boxes[order], dets.keypoints[order], dets.scores[order]
    remaining = np.arange(len(scores))
    out_b: list[F32] = []
    out_k: list[F32] = []
    out_s: list[np.float32] = []
    while remaining.size and len(out_s) < max_detections:
        top = remaining[0]
        overlap = iou(boxes[top], boxes[remaining])
        members = remaining[overlap > iou_threshold]
        members = members if members.size else remaining[:1]
        w = scores[members].astype(np.float64)
        w = w / w.sum()
        out_b.append((boxes[members] * w[:, None]).sum(axis=0))
        out_k.append((kps[members] * w[:, None, None]).sum(axis=0))
        out_s.append(scores[top])
        remaining = remaining[overlap <= iou_threshold]
        if remaining.size and remaining[0] == top:  # degenerate box: never loop forever
            remaining = remaining[1:]
    return RawDetections(
        np.asarray(out_b, np.float32).reshape(-1, 4),
        np.asarray(out_k, np.float32).reshape(-1, kps.shape[1], 2),
        np.asarray(out_s, np.float32),
    )
