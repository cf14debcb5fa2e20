"""dlib's 5-point face landmarks (``shape_predictor_5_face_landmarks.dat``) in numpy.

The model is a cascade of regression-tree ensembles (Kazemi & Sullivan 2014).
Shapes live in a unit frame where (0, 0) and (1, 1) are the top-left and
bottom-right corners of the face rectangle. Starting from the mean shape, each
cascade level

1. finds the similarity (rotation and scale only) that takes the mean shape
   to the current shape, and with it moves the level's feature pixels, each
   stored as an offset from one anchor landmark of the mean shape;
2. reads the grey value under each moved pixel (nearest pixel; 0 outside the
   image);
3. walks every tree of the level (node i splits on "pixel a minus pixel b
   greater than t", children 2i+1 and 2i+2) and adds the vectors of the
   leaves it reaches to the shape.

Every split of a level is evaluated at once, then all its trees are walked
together one depth step at a time, so a face costs a few hundred numpy calls
whatever the number of trees. The arrays
come from ``models/build_landmarks.py``; the manifest entry pins their sha256.

Points, in dlib's order (the subject's left eye is on the image's right):
0, 1: outer and inner corner of the eye on the image's right; 2, 3: outer and
inner corner of the eye on the image's left; 4: the base of the nose (top of
the philtrum).

Rectangles follow dlib: (left, top, right, bottom) with right and bottom
inclusive, the unit frame's (1, 1) at (right, bottom). The model was trained
on the boxes of dlib's HOG face detector, which sit tighter and lower on the
face than BlazeFace's; ``dlib_rect`` places that rectangle from BlazeFace's
keypoints with a fixed scale and offset (``KEYPOINTS_TO_DLIB``). Keypoints,
not BlazeFace's box, because the ``Aligner`` port receives the keypoints and
because they placed it better: held out face by face on the pinned test
faces, dlib's points on the placed rectangle were 0.90% of the eye distance
from its points on its own rectangle (BlazeFace's box mapped the same way:
1.03%).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.errors import ImageError, ModelError
from edge.perception.manifest import ModelEntry, load_manifest, verify_entry
from edge.perception.types import RGBImage

FAMILY = "dlib_landmarks5"
GrayImage = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

Rect = tuple[float, float, float, float]  # left, top, right, bottom (dlib convention)


def keypoint_frame(keypoints: npt.ArrayLike) -> tuple[float, float, float]:
    """(cx, cy, size) of a face from BlazeFace's (6, 2) keypoints.

    The centre is midway between the eyes' midpoint and the mouth; the size is
    the eye distance plus the eyes-to-mouth distance, a sum that shrinks less
    under yaw (eye distance) or pitch (eyes to mouth) than either term.
    """
    kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
    eyes = (kp[0] + kp[1]) / 2
    centre = (eyes + kp[3]) / 2
    size = float(np.linalg.norm(kp[0] - kp[1]) + np.linalg.norm(eyes - kp[3]))
    return float(centre[0]), float(centre[1]), size


@dataclass(frozen=True)
class RectMapping:
    """BlazeFace keypoints -> dlib HOG-detector rectangle: a square whose centre is the
    keypoint frame's centre moved by (dx, dy) frame sizes and whose side is ``scale``
    frame sizes (``keypoint_frame``)."""

    dx: float
    dy: float
    scale: float

    def rect(self, keypoints: npt.ArrayLike) -> Rect:
        cx, cy, size = keypoint_frame(keypoints)
        cx += self.dx * size
        cy += self.dy * size
        half = self.scale * size / 2
        return (cx - half, cy - half, cx + half, cy + half)

    def as_dict(self) -> dict[str, float]:
        return {"dx": round(self.dx, 4), "dy": round(self.dy, 4), "scale": round(self.scale, 4)}


def fit_rect_mapping(keypoints: Sequence[npt.ArrayLike], rects: Sequence[Sequence[float]]
                     ) -> RectMapping:
    """Least-squares ``RectMapping`` from BlazeFace keypoints to dlib rectangles of the same
    faces. In frame-size units the three parameters separate: each is the mean of its
    per-face value (centre offsets, side ratio)."""
    r = np.asarray(rects, np.float64).reshape(-1, 4)
    if len(keypoints) != len(r) or len(r) == 0:
        raise ValueError(f"need matching, non-empty keypoints and rectangles "
                         f"({len(keypoints)}, {len(r)})")
    f = np.array([keypoint_frame(k) for k in keypoints])
    side = ((r[:, 2] - r[:, 0]) + (r[:, 3] - r[:, 1])) / 2
    dx = ((r[:, 0] + r[:, 2]) / 2 - f[:, 0]) / f[:, 2]
    dy = ((r[:, 1] + r[:, 3]) / 2 - f[:, 1]) / f[:, 2]
    return RectMapping(float(dx.mean()), float(dy.mean()), float((side / f[:, 2]).mean()))


# Fitted by models/make_landmark_refs.py on the pinned test faces that both detectors
# find (its `fit.rect_mapping`); tests re-fit it from tests/data/landmarks5_refs.json.
KEYPOINTS_TO_DLIB = RectMapping(dx=-0.0207, dy=-0.0495, scale=1.1715)


def dlib_rect(keypoints: npt.ArrayLike) -> Rect:
    """dlib-convention rectangle for a face's BlazeFace keypoints ((6, 2), KEYPOINT_NAMES)."""
    return KEYPOINTS_TO_DLIB.rect(keypoints)


def to_gray(image: RGBImage) -> GrayImage:
    """dlib's intensity of an RGB pixel: the integer mean of the three channels."""
    rgb = np.asarray(image)
    if rgb.ndim == 2:
        return rgb.astype(np.uint8, copy=False)
    total = rgb[..., 0].astype(np.uint16) + rgb[..., 1] + rgb[..., 2]
    gray: GrayImage = (total // 3).astype(np.uint8)
    return gray


@dataclass(frozen=True)
class _Level:
    anchor: npt.NDArray[np.intp]  # (P,) landmark each feature pixel hangs from
    dx: npt.NDArray[np.float32]  # (P,) its offset from that landmark in the mean shape
    dy: npt.NDArray[np.float32]
    idx1: npt.NDArray[np.intp]  # (T * S,) first pixel of each split, tree-major
    idx2: npt.NDArray[np.intp]
    thresh: npt.NDArray[np.float32]  # (T * S,)
    leaves: npt.NDArray[np.float32]  # (T * L, 2 * parts): one row per leaf, tree-major


class ShapePredictor:
    """Image + face rectangle -> (5, 2) landmark positions in image pixels."""

    def __init__(self, arrays: dict[str, npt.NDArray[np.generic]], model_id: str = FAMILY) -> None:
        try:
            self.mean_shape = np.asarray(arrays["initial_shape"], np.float32)
            levels, trees, splits = np.shape(arrays["split_idx1"])
            leaf_values = np.asarray(arrays["leaf_values"], np.float32)
            n_leaves = leaf_values.shape[2]
            deltas = np.asarray(arrays["deltas"], np.float32)
            self.levels = [
                _Level(
                    anchor=np.asarray(arrays["anchor_idx"][c], np.intp),
                    dx=np.ascontiguousarray(deltas[c, :, 0]),
                    dy=np.ascontiguousarray(deltas[c, :, 1]),
                    idx1=np.asarray(arrays["split_idx1"][c], np.intp).reshape(-1),
                    idx2=np.asarray(arrays["split_idx2"][c], np.intp).reshape(-1),
                    thresh=np.asarray(arrays["split_thresh"][c], np.float32).reshape(-1),
                    leaves=np.ascontiguousarray(leaf_values[c].reshape(trees * n_leaves, -1)),
                )
                for c in range(levels)
            ]
        except (KeyError, ValueError, IndexError) as e:
            raise ModelError(f"landmark model '{model_id}' is malformed ({e!r})") from e
        if n_leaves != splits + 1 or self.mean_shape.ndim != 2 or self.mean_shape.shape[1] != 2:
            raise ModelError(f"landmark model '{model_id}': trees are not complete")
        self.model_id = model_id
        self.num_parts = int(self.mean_shape.shape[0])
        self.depth = int(np.log2(n_leaves))
        self._split_base = np.arange(trees, dtype=np.intp) * splits
        self._leaf_base = np.arange(trees, dtype=np.intp) * n_leaves - splits
        self._centred_mean = self.mean_shape.astype(np.float64) - self.mean_shape.mean(axis=0)
        self._mean_var = float((self._centred_mean**2).sum())

    @classmethod
    def from_models_dir(cls, models_dir: Path | str | None = None) -> ShapePredictor:
        manifest = load_manifest(models_dir)
        entry: ModelEntry = manifest.get(FAMILY)
        verify_entry(manifest.models_dir, entry)
        with np.load(manifest.path(entry), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(arrays, entry.model_id)

    def _rotation_scale(self, shape: npt.NDArray[np.float32]) -> tuple[float, float]:
        # Least-squares similarity from the mean shape to `shape` (Umeyama 1991, closed
        # form in 2-D): x' = a x - b y, y' = b x + a y; the translation is not needed.
        if self._mean_var == 0.0:  # a single landmark: dlib uses the identity
            return 1.0, 0.0
        cur = shape.astype(np.float64)
        cur -= cur.mean(axis=0)
        m = self._centred_mean
        a = float((m * cur).sum()) / self._mean_var
        b = float((m[:, 0] * cur[:, 1] - m[:, 1] * cur[:, 0]).sum()) / self._mean_var
        return a, b

    def shape(self, image: GrayImage | RGBImage, rect: Rect) -> F64:
        """(num_parts, 2) points in the unit frame of ``rect``.

        ``image`` is grey (H, W) or RGB (H, W, 3); an RGB pixel reads as dlib reads
        it, the integer mean of its channels (``to_gray``), without converting the
        whole frame.
        """
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ImageError(f"need a grey (H, W) or RGB (H, W, 3) image, got {image.shape}")
        h, w = image.shape[:2]
        channels = 1 if image.ndim == 2 else 3
        flat = np.ascontiguousarray(image).reshape(-1)  # a view unless `image` is one
        left, top, right, bottom = (float(v) for v in rect)
        span_x, span_y = right - left, bottom - top
        shape = self.mean_shape.reshape(-1).copy()  # x0, y0, x1, y1, ...
        for lv in self.levels:
            a, b = self._rotation_scale(shape.reshape(-1, 2))
            a32, b32 = np.float32(a), np.float32(b)
            # float32 and term by term, as dlib computes it: a BLAS product may fuse and
            # reorder, which moves a pixel that sits on a rounding boundary.
            ux = (lv.dx * a32 + lv.dy * -b32) + shape[2 * lv.anchor]
            uy = (lv.dx * b32 + lv.dy * a32) + shape[2 * lv.anchor + 1]
            x = np.floor(ux.astype(np.float64) * span_x + (left + 0.5)).astype(np.intp)
            y = np.floor(uy.astype(np.float64) * span_y + (top + 0.5)).astype(np.intp)
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            at = np.where(inside, (y * w + x) * channels, 0)
            if channels == 1:
                grey = flat[at]
            else:
                grey = (flat[at].astype(np.uint16) + flat[at + 1] + flat[at + 2]) // 3
            values = np.where(inside, grey, 0).astype(np.float32)
            # Every split of every tree at once (cheap gathers), then one step per depth.
            right_child = (values[lv.idx1] - values[lv.idx2]) <= lv.thresh
            node = np.zeros_like(self._split_base)
            for _ in range(self.depth):
                node = 2 * node + 1 + right_child[self._split_base + node]
            # dlib adds the trees' vectors to the shape one after the other in float32.
            # numpy sums along the outer axis of a C-ordered array row after row (its
            # pairwise summation is only for the contiguous axis), so this rounds the same.
            steps = np.concatenate([shape[None, :], lv.leaves[self._leaf_base + node]])
            shape = steps.sum(axis=0)
        return shape.reshape(-1, 2).astype(np.float64)

    def predict(self, image: GrayImage | RGBImage, rect: Rect) -> F64:
        """(num_parts, 2) landmark positions in image pixels, unrounded (dlib rounds them
        to whole pixels: ``np.floor(points + 0.5)`` gives dlib's own numbers)."""
        left, top, right, bottom = (float(v) for v in rect)
        points: F64 = self.shape(image, rect) * np.array([right - left, bottom - top])
        points += np.array([left, top])
        return points


__all__ = [
    "FAMILY",
    "KEYPOINTS_TO_DLIB",
    "Rect",
    "RectMapping",
    "ShapePredictor",
    "dlib_rect",
    "fit_rect_mapping",
    "keypoint_frame",
    "to_gray",
]
