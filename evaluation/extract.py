"""Faces to embeddings through the device path, cached on disk.

Detection: the manifest's BlazeFace full-range model as ``FaceAnalyzer``
runs it (with its close-up retry), once per clean image; the largest face is
kept (ties broken by closeness to the image centre). Alignment and embedding:
the configuration's aligner and embedder, on the clean or degraded image
with the clean detection's keypoints scaled into it.

Caches (``.cache/eval/``): detections keyed by the detector's sha256 and the
image list; embeddings keyed by the embedder file's sha256, the aligner, the
condition and the image subset.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge.perception.analyzer import detect_with_close_up
from edge.perception.detector import BlazeFaceDetector
from edge.perception.manifest import Manifest
from edge.perception.types import Detection, Embedder
from evaluation.configs import ChipCutter
from evaluation.data import Dataset
from evaluation.degrade import Condition

log = logging.getLogger("evaluation")

DETECTOR_FAMILY = "blazeface_full_range"
BATCH = 64


@dataclass(frozen=True)
class Detections:
    found: npt.NDArray[np.bool_]
    boxes: npt.NDArray[np.float32]  # (N, 4)
    keypoints: npt.NDArray[np.float32]  # (N, 6, 2)
    faces_found: npt.NDArray[np.int64]  # how many faces the detector returned per image
    detector_id: str
    detector_sha: str

    @property
    def widths(self) -> npt.NDArray[np.float32]:
        return (self.boxes[:, 2] - self.boxes[:, 0]).astype(np.float32)


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read image {path}")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)


def pick_face(dets: list[Detection], width: int, height: int) -> Detection | None:
    """The largest face; among equally wide ones (to 0.5 px) the one nearest the centre."""
    if not dets:
        return None
    cx, cy = width / 2.0, height / 2.0

    def key(d: Detection) -> tuple[float, float]:
        mx, my = (d.box[0] + d.box[2]) / 2.0, (d.box[1] + d.box[3]) / 2.0
        return (-round(d.width * 2.0) / 2.0, math.hypot(mx - cx, my - cy))

    return min(dets, key=key)


def detect_all(ds: Dataset, models_dir: Path, manifest: Manifest, cache: Path) -> Detections:
    detector = BlazeFaceDetector.from_models_dir(models_dir, family=DETECTOR_FAMILY, num_threads=2)
    entry = detector.model.entry
    sha = entry.sha256 if entry is not None else "unknown"
    path = cache / f"detect-{sha[:16]}-{ds.digest()}.npz"
    if path.is_file():
        z = np.load(path)
        return Detections(z["found"], z["boxes"], z["keypoints"], z["faces_found"],
                          detector.model_id, sha)
    n = ds.images
    found = np.zeros(n, bool)
    boxes = np.zeros((n, 4), np.float32)
    kps = np.zeros((n, 6, 2), np.float32)
    counts = np.zeros(n, np.int64)
    t0 = time.monotonic()
    for i in range(n):
        img = read_rgb(ds.path(i))
        dets = detect_with_close_up(detector, img)
        counts[i] = len(dets)
        best = pick_face(dets, img.shape[1], img.shape[0])
        if best is not None:
            found[i] = True
            boxes[i] = best.box
            kps[i] = best.keypoints
        if (i + 1) % 1000 == 0:
            log.info("detected %d/%d images (%.0f s)", i + 1, n, time.monotonic() - t0)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, found=found, boxes=boxes, keypoints=kps, faces_found=counts)
    tmp.replace(path)
    return Detections(found, boxes, kps, counts, detector.model_id, sha)


def subset_digest(indices: npt.NDArray[np.int64]) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(indices).tobytes()).hexdigest()[:12]


def embed_condition(
    ds: Dataset, dets: Detections, indices: npt.NDArray[np.int64], condition: Condition,
    aligner_key: str, cut: ChipCutter, embedders: dict[str, tuple[Embedder, str]], cache: Path,
) -> dict[str, npt.NDArray[np.float32]]:
    """Embeddings of ``indices`` under ``condition`` for each variant (rows of zeros where no face).

    ``embedders`` maps variant -> (embedder, sha256 of its file). The chips
    are cut once and fed to every variant, so variants differ only in the
    embedder.
    """
    key = f"{aligner_key}-{condition.name}-{subset_digest(indices)}"
    paths = {v: cache / f"emb-{sha[:16]}-{key}.npy" for v, (_, sha) in embedders.items()}
    out: dict[str, npt.NDArray[np.float32]] = {}
    todo = {}
    for v, p in paths.items():
        if p.is_file():
            out[v] = np.load(p)
        else:
            todo[v] = embedders[v][0]
    if not todo:
        return out
    dims = {v: e.dim for v, e in todo.items()}
    result = {v: np.zeros((indices.shape[0], d), np.float32) for v, d in dims.items()}
    chips: list[npt.NDArray[np.uint8]] = []
    rows: list[int] = []

    def flush() -> None:
        if not chips:
            return
        batch = np.stack(chips)
        for v, e in todo.items():
            result[v][rows] = e.embed(batch)
        chips.clear()
        rows.clear()

    t0 = time.monotonic()
    for r, i in enumerate(indices.tolist()):
        if not dets.found[i]:
            continue
        img = read_rgb(ds.path(i))
        deg, kp = condition.apply(img, dets.keypoints[i], float(dets.widths[i]), i)
        scale = np.array([deg.shape[1] / img.shape[1], deg.shape[0] / img.shape[0]] * 2, np.float32)
        chips.append(cut(deg, kp, dets.boxes[i] * scale))
        rows.append(r)
        if len(chips) >= BATCH:
            flush()
    flush()
    log.info("embedded %d images, %s, %s (%.0f s)", indices.shape[0], condition.name,
             "/".join(todo), time.monotonic() - t0)
    cache.mkdir(parents=True, exist_ok=True)
    for v, arr in result.items():
        tmp = paths[v].with_suffix(".tmp.npy")
        np.save(tmp, arr)
        tmp.replace(paths[v])
        out[v] = arr
    return out
