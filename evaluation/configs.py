"""The recogniser configurations the eval measures: (family, variant, aligner).

A configuration is an embedder family from ``models/manifest.json`` and an
aligner, both built by the firmware's own classes (``ManifestEmbedder`` and
the aligner its manifest entry names), so that what is measured is what the
device runs. Each is measured with every variant the manifest has among
``VARIANTS``. Every embedder family in the manifest is measured with its own
alignment ("manifest"); other aligners plug in through ``ALIGNERS`` and an
entry in ``EXTRA``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.perception.embedder import ManifestEmbedder
from edge.perception.manifest import DEFAULT_EMBEDDER, Manifest
from edge.perception.types import Embedder

VARIANTS = ("float32", "int8")

RGB = npt.NDArray[np.uint8]
Box = npt.NDArray[np.float32]  # x0, y0, x1, y1
# Cuts one chip from an image given the detection's keypoints (6, 2) and box.
ChipCutter = Callable[[RGB, npt.NDArray[np.float32], Box], RGB]
AlignerFactory = Callable[[ManifestEmbedder], tuple[ChipCutter, str]]


def manifest_aligner(embedder: ManifestEmbedder) -> tuple[ChipCutter, str]:
    """The alignment the model's manifest entry names (what the device does); key includes its points."""
    aligner = embedder.aligner()
    tpl = aligner.chip_template.to_json()
    digest = hashlib.sha256(json.dumps(tpl, sort_keys=True).encode()).hexdigest()[:8]

    def cut(image: RGB, keypoints: npt.NDArray[np.float32], box: Box) -> RGB:
        return aligner.align(image, keypoints)

    return cut, f"{tpl['name']}-{aligner.keypoint_set}-{digest}"


ALIGNERS: dict[str, AlignerFactory] = {
    "manifest": manifest_aligner,
}

# What the manifest does not say about a family: its training data and their terms.
TRAINING_DATA: dict[str, str] = {
    "dlib_resnet_v1": "about 3 million faces (FaceScrub, VGG Face and images collected from the web, "
                      "per dlib's model notes); the data's own terms are not stated by dlib",
}


@dataclass(frozen=True)
class Recogniser:
    family: str
    aligner: str
    label: str
    today: bool = False  # the configuration the firmware ships today (the reference row)
    opt_in: bool = False  # selectable only where a deployment order names it
    device: bool = True  # the alignment the device runs for this family: its figures go to the manifest

    @property
    def key(self) -> str:
        return f"{self.family}+{self.aligner}"

    def variants(self, manifest: Manifest) -> list[str]:
        have = {e.variant for e in manifest.family(self.family)}
        return [v for v in VARIANTS if v in have]

    def model_sha(self, manifest: Manifest, variant: str) -> str:
        return manifest.variant(self.family, variant).sha256

    def open(self, models_dir: Path, variant: str) -> tuple[Embedder, ChipCutter, str]:
        """The embedder of ``variant``, the chip cutter, and the cutter's cache key."""
        emb = ManifestEmbedder.from_models_dir(models_dir, variant, family=self.family, num_threads=2)
        cut, key = ALIGNERS[self.aligner](emb)
        return emb, cut, f"{self.aligner}-{key}"


# Configurations beyond "each family with its own alignment" (e.g. another landmark source).
EXTRA: tuple[Recogniser, ...] = ()


def registry(manifest: Manifest) -> list[Recogniser]:
    """Every embedder family of the manifest with its own alignment, then ``EXTRA``; today's first."""
    families = sorted({e.family for e in manifest.models.values() if e.role == "embedder"})
    out = []
    for fam in families:
        entry = manifest.variant(fam, "float32")
        out.append(Recogniser(
            fam, "manifest", str(entry.extra.get("display_name", fam)),
            today=fam == DEFAULT_EMBEDDER,
            opt_in=bool(entry.extra.get("opt_in", False)),
        ))
    out += [r for r in EXTRA if r.family in families]
    return sorted(out, key=lambda r: (not r.today, r.key))


def available(manifest: Manifest, wanted: list[str] | None = None) -> list[Recogniser]:
    """The configurations to measure (``wanted`` by key or family; all by default)."""
    return [r for r in registry(manifest) if not wanted or r.key in wanted or r.family in wanted]
