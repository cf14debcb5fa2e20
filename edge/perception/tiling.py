"""Face detection over a region of interest of a large frame, in overlapping tiles.

Boulevard faces are 30-100 px in a 1080p frame; a single 192x192 pass sees a
40 px face as 4 px, below what BlazeFace finds. Measured with the full-range
model on a face pasted into 192x192 grass: found from 10-12 px up to ~96 px
(int8: up to ~96, lost at 128). Tiles of 384 px scale a 30 px face to 15 px
and a 100 px face to 50 px, both well inside that band.

Tiles overlap by more than the largest face (128 > 100 px), so every face lies
whole inside at least one tile. Each tile *owns* a core (its area minus half
the overlap on sides shared with a neighbour); the cores partition the ROI,
and a tile keeps only detections whose centre falls in its core. A face cut
by a tile edge is therefore reported by the tile that sees it whole, not as
a fragment. Weighted NMS over the kept detections then merges the rare pair
that straddles a core boundary.

Strips (``layout="strips"``) cover the same region at the same scale with fewer,
larger model calls: two strips per detector, side by side, as tall as the region
(up to two tiles; a taller region gets rows), each run as one call of the model
resized to the strip (``BlazeFaceDetector.set_input_size``: the CPU only, an Edge
TPU model is compiled for its square). Square tiles read a 540-row walkway twice
(two rows of 384 overlapping by 228) and every column boundary twice; strips read
it once but for one overlap per column boundary. The strip's input is rounded up to
the model's total stride, so a region narrower than one strip is seen up to one
stride larger; everything else about tiles (cores, gating, merging) holds for strips.

Tiles can be skipped: ``tiles_to_run`` (a predicate) or ``motion_mask`` (a
boolean frame-sized mask, or any size: it is scaled) select the tiles worth
running; the pipeline's motion gating plugs in here.

Given several detectors (one interpreter each: an interpreter is not
thread-safe), the tiles of a frame run in parallel, each on whichever detector
is free; the inference releases the GIL. Results are merged in tile order, so
the detections are the same as one detector's.
"""

from __future__ import annotations

import math
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from edge.config import DetectionConfig
from edge.errors import ConfigError
from edge.perception import blazeface
from edge.perception.blazeface import RawDetections
from edge.perception.detector import to_detections
from edge.perception.types import Detection, RGBImage

Box = tuple[int, int, int, int]  # x0, y0, x1, y1, pixels, end exclusive


@dataclass(frozen=True)
class Tile:
    row: int
    col: int
    box: Box  # area read from the frame
    core: Box  # area whose detections this tile reports

    def owns(self, x: float, y: float) -> bool:
        x0, y0, x1, y1 = self.core
        return x0 <= x < x1 and y0 <= y < y1


def _starts(lo: int, hi: int, tile: int, step: int) -> list[int]:
    """Tile origins covering [lo, hi): evenly spread, first at lo, last ending at hi."""
    length = hi - lo
    if length <= tile:
        return [lo]
    n = -(-(length - tile) // step) + 1  # ceil
    # Spread the tiles evenly so every overlap is at least tile - step.
    return [lo + round(i * (length - tile) / (n - 1)) for i in range(n)]


def plan_tiles(roi: Box, tile_size: int | tuple[int, int], overlap: int) -> list[Tile]:
    """Overlapping tiles over ``roi`` and the core each one owns.

    ``tile_size`` is a square's side, or (width, height) in frame pixels.
    """
    x0, y0, x1, y1 = roi
    tw, th = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size
    if x1 <= x0 or y1 <= y0:
        raise ConfigError("detector.roi", f"empty region of interest {roi}")
    if min(tw, th) <= 0 or not 0 <= overlap < min(tw, th):
        raise ConfigError(
            "detector.tile_overlap", f"need 0 <= overlap ({overlap}) < tile size ({tw}x{th})"
        )
    xs = _starts(x0, x1, tw, tw - overlap)
    ys = _starts(y0, y1, th, th - overlap)

    def cores(starts: list[int], lo: int, hi: int, size: int) -> list[tuple[int, int]]:
        ends = [min(s + size, hi) for s in starts]
        # Boundary between neighbours: the middle of their overlap.
        cuts = [lo] + [(ends[i] + starts[i + 1]) // 2 for i in range(len(starts) - 1)] + [hi]
        return list(pairwise(cuts))

    cx, cy = cores(xs, x0, x1, tw), cores(ys, y0, y1, th)
    return [
        Tile(
            row=r, col=c,
            box=(xs[c], ys[r], min(xs[c] + tw, x1), min(ys[r] + th, y1)),
            core=(cx[c][0], cy[r][0], cx[c][1], cy[r][1]),
        )
        for r in range(len(ys)) for c in range(len(xs))
    ]


def plan_strips(roi: Box, tile_size: int, overlap: int, columns: int, native: int,
                multiple: int) -> tuple[list[Tile], tuple[int, int]]:
    """Strips over ``roi`` at the square tiles' scale, and the model input (height, width).

    ``native`` is the model's own square input (a ``tile_size`` tile is resized to it),
    ``multiple`` its total stride; ``columns`` the strips wanted side by side, fewer where
    a strip would be narrower than a tile. Rows are at most two tiles tall. Overlaps are
    as even as the model's stride lets them be.
    """
    x0, y0, x1, y1 = roi
    if x1 <= x0 or y1 <= y0:
        raise ConfigError("detector.roi", f"empty region of interest {roi}")
    scale = native / tile_size  # model pixels per frame pixel

    def split(length: int, count: int) -> int:
        """The side of ``count`` equal pieces covering ``length`` with the overlap."""
        return -(-(length + (count - 1) * overlap) // count)

    def model_pixels(frame_pixels: int) -> int:
        return -(-math.ceil(frame_pixels * scale) // multiple) * multiple

    width, height = x1 - x0, y1 - y0
    across = max(1, min(columns, -(-(width - overlap) // (tile_size - overlap))))
    down = max(1, -(-(height - overlap) // (2 * tile_size - overlap)))
    in_h, in_w = model_pixels(split(height, down)), model_pixels(split(width, across))
    # The frame area a strip may take at that scale (at least what was asked).
    size = (int(in_w / scale), int(in_h / scale))
    return plan_tiles(roi, size, overlap), (in_h, in_w)


def tiles_with_motion(
    tiles: Sequence[Tile], mask: npt.NDArray[np.bool_], frame_shape: tuple[int, int],
    min_fraction: float = 0.0,
) -> list[bool]:
    """For each tile, whether the motion mask has more than ``min_fraction`` set inside it.

    ``mask`` may be smaller than the frame (motion is usually computed on a
    downscaled image); tile boxes are scaled to it.
    """
    fh, fw = frame_shape
    mh, mw = mask.shape[:2]
    sx, sy = mw / fw, mh / fh
    out = []
    for t in tiles:
        x0, y0, x1, y1 = t.box
        m = mask[int(y0 * sy) : max(int(y0 * sy) + 1, int(np.ceil(y1 * sy))),
                 int(x0 * sx) : max(int(x0 * sx) + 1, int(np.ceil(x1 * sx)))]
        out.append(bool(m.size) and float(np.count_nonzero(m)) / m.size > min_fraction)
    return out


class RawDetector(Protocol):
    """What the tiler needs from a detector: suppressed arrays in input pixels."""

    backend: str
    model_id: str

    def detect_raw(self, image: RGBImage) -> RawDetections: ...

    # For strips only: the model's own square input, its total stride, and a resize.
    @property
    def native_size(self) -> int: ...

    @property
    def input_multiple(self) -> int: ...

    def set_input_size(self, height: int, width: int) -> None: ...


@dataclass(frozen=True)
class TilingConfig:
    roi: Box | None = None  # None: the whole frame
    tile_size: int = DetectionConfig.tile  # the [detection] defaults, kept in one place
    overlap: int = DetectionConfig.overlap
    nms_iou: float = 0.3
    max_detections: int = 100
    layout: Literal["tiles", "strips"] = "tiles"  # DetectionConfig.tile_layout decides


class TiledDetector:
    """``Detector`` that runs inner detectors on tiles of a region of interest.

    ``inner`` is one detector, or several of the same model to run tiles in parallel
    (then :meth:`close` stops their threads).
    """

    def __init__(self, inner: RawDetector | Sequence[RawDetector],
                 config: TilingConfig | None = None) -> None:
        inners = list(inner) if isinstance(inner, Sequence) else [inner]
        if not inners:
            raise ValueError("TiledDetector needs at least one detector")
        self.config = config or TilingConfig()
        self.backend = inners[0].backend
        self.model_id = inners[0].model_id
        self._inners = inners
        self._free: queue.SimpleQueue[RawDetector] = queue.SimpleQueue()
        for d in inners:
            self._free.put(d)
        # As many threads as detectors: a running tile always finds one free.
        self._pool = ThreadPoolExecutor(len(inners), thread_name_prefix="tiles") \
            if len(inners) > 1 else None
        self._plan: tuple[tuple[int, int], list[Tile]] | None = None
        self.last_tiles_run = 0  # for the pipeline's counters
        if self.config.layout == "strips" and self.config.roi is not None:
            # Resizing the models takes a few hundred ms: done now, not on the first frame
            # (a live camera would drop frames meanwhile). An ROI inside the frame fixes the
            # plan whatever the frame's size; otherwise the first frame re-plans.
            self._strips(self.config.roi)

    def _strips(self, roi: Box) -> list[Tile]:
        """The strips over ``roi``, every detector resized to their input."""
        first = self._inners[0]
        # Two strips per detector: a frame whose motion is in one part still wakes
        # work for every detector, and still strips stay asleep.
        tiles, (in_h, in_w) = plan_strips(roi, self.config.tile_size, self.config.overlap,
                                          2 * len(self._inners), first.native_size,
                                          first.input_multiple)
        for d in self._inners:  # no tile runs between frames: all of them are free
            d.set_input_size(in_h, in_w)
        return tiles

    def tiles(self, frame_shape: tuple[int, int]) -> list[Tile]:
        """The tile plan for frames of this (height, width); cached."""
        if self._plan is None or self._plan[0] != frame_shape:
            h, w = frame_shape
            cfg = self.config
            roi = cfg.roi or (0, 0, w, h)
            roi = (max(0, roi[0]), max(0, roi[1]), min(w, roi[2]), min(h, roi[3]))
            tiles = self._strips(roi) if cfg.layout == "strips" \
                else plan_tiles(roi, cfg.tile_size, cfg.overlap)
            self._plan = (frame_shape, tiles)
        return self._plan[1]

    def detect(
        self,
        image: RGBImage,
        *,
        tiles_to_run: Callable[[Tile], bool] | None = None,
        motion_mask: npt.NDArray[np.bool_] | None = None,
    ) -> list[Detection]:
        h, w = image.shape[:2]
        tiles = self.tiles((h, w))
        run = [True] * len(tiles)
        if motion_mask is not None:
            run = tiles_with_motion(tiles, motion_mask, (h, w))
        if tiles_to_run is not None:
            run = [r and tiles_to_run(t) for r, t in zip(run, tiles, strict=True)]
        todo = [tile for tile, go in zip(tiles, run, strict=True) if go]
        if self._pool is None or len(todo) < 2:
            parts = [self._detect_tile(image, tile) for tile in todo]
        else:
            parts = list(self._pool.map(lambda tile: self._detect_tile(image, tile), todo))
        self.last_tiles_run = len(parts)
        merged = blazeface.weighted_nms(
            RawDetections.concat(parts), self.config.nms_iou, self.config.max_detections
        )
        return to_detections(merged, w, h)

    def close(self) -> None:
        """Stop the tile threads (waiting for a frame in progress); idempotent."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _detect_tile(self, image: RGBImage, tile: Tile) -> RawDetections:
        x0, y0, x1, y1 = tile.box
        detector = self._free.get()
        try:
            dets = detector.detect_raw(np.ascontiguousarray(image[y0:y1, x0:x1]))
        finally:
            self._free.put(detector)
        if len(dets) == 0:
            return dets
        offset = np.array([x0, y0], np.float32)
        boxes = dets.boxes + np.tile(offset, 2)
        kps = dets.keypoints + offset
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        keep = np.array([tile.owns(float(cx), float(cy)) for cx, cy in centres], bool)
        return RawDetections(boxes[keep], kps[keep], dets.scores[keep])
