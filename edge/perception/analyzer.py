"""Detector + aligner + quality + embedder: an image in, faces with embeddings out.

This is the one path from pixels to embeddings used by ``edge embed``,
``edge verify`` and enrolment, so a watchlist template and a live face are
computed the same way. The recogniser (``family``) and its chip come from the
model manifest; ``ChipEmbedder`` is the same path without the detector, for
faces whose landmarks are already known (an evaluation harness).

Close-ups: BlazeFace full-range is trained for faces up to about half the
frame. A tightly cropped face (an ID photo, a 112 px crop) fills the whole
input and is missed, so when nothing is found the image is placed, at the same
scale, in the middle of a canvas twice its size and searched once more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.errors import ModelError
from edge.perception.align import TemplateAligner
from edge.perception.embedder import ManifestEmbedder
from edge.perception.manifest import DEFAULT_EMBEDDER
from edge.perception.pick import main_index
from edge.perception.quality import QualityParts, assess
from edge.perception.runtime import DelegateLoader, default_delegate_loader
from edge.perception.types import (
    Aligner,
    Detection,
    Detector,
    Embedder,
    Face,
    FloatArray,
    RGBImage,
)

# CLI-friendly names for the manifest's variants.
VARIANTS: dict[str, str] = {"float": "float32", "float32": "float32", "int8": "int8"}
CLOSE_UP_CANVAS = 2.0


@dataclass(frozen=True)
class AnalyzedFace:
    """A face with what it was computed from: the chip and the quality parts."""

    face: Face
    chip: RGBImage
    quality: QualityParts


def pin_variant(variant: str | None) -> str | None:
    """The manifest variant for a CLI name ("float", "int8"); None leaves the runtime to pick."""
    if variant is None:
        return None
    if variant not in VARIANTS:
        raise ModelError(f"unknown variant '{variant}'; use one of {', '.join(VARIANTS)}")
    return VARIANTS[variant]


class ChipEmbedder:
    """Landmarks -> chip -> embedding with one recogniser's aligner and model; no detector."""

    def __init__(self, embedder: Embedder, aligner: TemplateAligner) -> None:
        self.embedder = embedder
        self.aligner = aligner

    @classmethod
    def from_models_dir(
        cls,
        models_dir: Path | str | None = None,
        variant: str | None = None,
        *,
        family: str = DEFAULT_EMBEDDER,
        delegate_loader: DelegateLoader = default_delegate_loader,
        num_threads: int = 2,
    ) -> ChipEmbedder:
        """The recogniser ``family`` from the manifest; ``variant`` "float" or "int8" pins it."""
        embedder = ManifestEmbedder.from_models_dir(
            models_dir, variant=pin_variant(variant), family=family,
            delegate_loader=delegate_loader, num_threads=num_threads)
        return cls(embedder, embedder.aligner())

    def from_keypoints(self, image: RGBImage, keypoints: Sequence[npt.ArrayLike]
                       ) -> tuple[RGBImage, FloatArray]:
        """Chips and embeddings for BlazeFace keypoints ((6, 2) each): the device's own path."""
        return self._embed([self.aligner.align(image, np.asarray(k, np.float32))
                            for k in keypoints])

    def from_landmarks(self, image: RGBImage, landmarks: Sequence[Mapping[str, npt.ArrayLike]]
                       ) -> tuple[RGBImage, FloatArray]:
        """Chips and embeddings for named landmarks (the template's names, e.g. five points:
        right_eye, left_eye, nose_tip, mouth_right, mouth_left; subject's left and right)."""
        return self._embed([self.aligner.align_points(image, m) for m in landmarks])

    def _embed(self, chips: list[RGBImage]) -> tuple[RGBImage, FloatArray]:
        size = self.aligner.size
        batch = np.stack(chips) if chips else np.zeros((0, size, size, 3), np.uint8)
        return batch, self.embedder.embed(batch)


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
        family: str = DEFAULT_EMBEDDER,
        detector_family: str = "blazeface_full_range",
        delegate_loader: DelegateLoader = default_delegate_loader,
        num_threads: int = 2,
        aligner: str | None = None,
    ) -> FaceAnalyzer:
        """Detector and recogniser ``family`` from the manifest; ``variant`` ("float" or
        "int8") pins both. The aligner is the one the recogniser's entry names, unless
        ``aligner`` (one of ``edge.perception.align5.ALIGNERS``) overrides it."""
        from edge.perception.align5 import make_aligner
        from edge.perception.detector import BlazeFaceDetector

        detector = BlazeFaceDetector.from_models_dir(
            models_dir, family=detector_family, variant=pin_variant(variant),
            delegate_loader=delegate_loader, num_threads=num_threads)
        chips = ChipEmbedder.from_models_dir(
            models_dir, variant, family=family, delegate_loader=delegate_loader,
            num_threads=num_threads)
        chosen = chips.aligner if aligner is None else make_aligner(aligner, models_dir)
        return cls(detector, chips.embedder, chosen)

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

    def main_face(self, image: RGBImage) -> Face | None:
        """The face a photo of one person is about: the largest (``edge.perception.pick``)."""
        faces = self.analyze(image)
        i = main_index([f.detection for f in faces], (image.shape[0], image.shape[1]))
        return None if i is None else faces[i]


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


__all__ = ["VARIANTS", "AnalyzedFace", "ChipEmbedder", "FaceAnalyzer", "detect_with_close_up",
           "pin_variant"]
