"""Detector + aligner + quality + embedder: an image in, faces with embeddings out.

This is the one path from pixels to embeddings used by ``edge embed``,
``edge verify`` and enrolment, so a watchlist template and a live face are
computed the same way.

Close-ups: BlazeFace full-range is trained for faces up to about half the
frame. A tightly cropped face (an ID photo, a 112 px crop) fills the whole
input and is missed, so when nothing is found the image is placed, at the same
scale, in the middle of a canvas twice its size and searched once more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import ModelError
from edge.perception.align import TemplateAligner
from edge.perception.embedder import DlibEmbedder
from edge.perception.quality import QualityParts, assess
from edge.perception.runtime import DelegateLoader, default_delegate_loader
from edge.perception.types import Aligner, Detection, Detector, Embedder, Face, RGBImage

# CLI-friendly names for the manifest's variants.
VARIANTS: dict[str, str] = {"float": "float32", "float32": "float32", "int8": "int8"}
CLOSE_UP_CANVAS = 2.0


@dataclass(frozen=True)
class AnalyzedFace:
    """A face with what it was computed from: the chip and the quality parts."""

    face: Face
    chip: RGBImage
    quality: QualityParts


class FaceAnalyzer:
    def __init__(self, detector: Detector, embedder: Embedder,
                 aligner: Aligner | None = None, *, close_up_retry: bool = True) -> None:
        self.detector = detector
        self.embedder = embedder
        self.aligner: Aligner = aligner if aligner is not None else TemplateAligner()
        self.close_up_retry = close_up_retry

    @classmethod
    def from_models_dir(
        cls,
        models_dir: Path | str | None = None,
        variant: str | None = None,
        *,
        detector_family: str = "blazeface_full_range",
        delegate_loader: DelegateLoader = default_delegate_loader,
        num_threads: int = 2,
        aligner: str = "keypoints",
    ) -> FaceAnalyzer:
        """Both models from the manifest; ``variant`` ("float" or "int8") pins both;
        ``aligner`` is one of ``edge.perception.align5.ALIGNERS``."""
        from edge.perception.align5 import make_aligner
        from edge.perception.detector import BlazeFaceDetector

        pinned = None
        if variant is not None:
            if variant not in VARIANTS:
                raise ModelError(f"unknown variant '{variant}'; use one of {', '.join(VARIANTS)}")
            pinned = VARIANTS[variant]
        detector = BlazeFaceDetector.from_models_dir(
            models_dir, family=detector_family, variant=pinned,
            delegate_loader=delegate_loader, num_threads=num_threads)
        embedder = DlibEmbedder.from_models_dir(
            models_dir, variant=pinned, delegate_loader=delegate_loader,
            num_threads=num_threads)
        return cls(detector, embedder, make_aligner(aligner, models_dir))

    def detect(self, image: RGBImage) -> list[Detection]:
        if not self.close_up_retry:
            return self.detector.detect(image)
        return detect_with_close_up(self.detector, image)

    def analyze_detailed(self, image: RGBImage) -> list[AnalyzedFace]:
        dets = self.detect(image)
        if not dets:
            return []
        chips = np.stack([self.aligner.align(image, d.keypoints) for d in dets])
        parts = [assess(d, c) for d, c in zip(dets, chips, strict=True)]
        embeddings = self.embedder.embed(chips)
        return [AnalyzedFace(Face(d, q.overall, e), c, q)
                for d, c, q, e in zip(dets, chips, parts, embeddings, strict=True)]

    def analyze(self, image: RGBImage) -> list[Face]:
        """Every face, best detection score first, each with quality and embedding."""
        return [a.face for a in self.analyze_detailed(image)]

    def best_face(self, image: RGBImage) -> Face | None:
        """The face to use for one person's photo: highest quality, then the largest."""
        faces = self.analyze(image)
        if not faces:
            return None
        return max(faces, key=lambda f: (round(f.quality, 3), f.detection.width))


def detect_with_close_up(detector: Detector, image: RGBImage) -> list[Detection]:
    """Detect; if nothing is found, retry with the image centred on a larger black canvas."""
    found = detector.detect(image)
    if found:
        return found
    h, w = image.shape[:2]
    ch, cw = int(h * CLOSE_UP_CANVAS), int(w * CLOSE_UP_CANVAS)
    oy, ox = (ch - h) // 2, (cw - w) // 2
    canvas = np.zeros((ch, cw, 3), np.uint8)
    canvas[oy : oy + h, ox : ox + w] = image
    shift = np.array([ox, oy], np.float32)
    out = []
    for d in detector.detect(canvas):
        x0, y0, x1, y1 = d.box
        box = (max(0.0, x0 - ox), max(0.0, y0 - oy), min(float(w), x1 - ox),
               min(float(h), y1 - oy))
        if box[2] > box[0] and box[3] > box[1]:
            out.append(Detection(box=box, keypoints=(d.keypoints - shift).astype(np.float32),
                                 score=d.score))
    return out


__all__ = ["VARIANTS", "AnalyzedFace", "FaceAnalyzer", "detect_with_close_up"]
