"""The recogniser configurations the eval measures: (family, variant, aligner).

A configuration is an embedder family from ``models/manifest.json`` and an
aligner, both built by the firmware's own classes, so that what is measured
is what the device runs. Each is measured with every variant the manifest
has among ``VARIANTS``. New families and aligners plug in by adding a line to
``EMBEDDERS`` / ``ALIGNERS`` and a ``Recogniser`` to ``REGISTRY``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.errors import ModelMissingError
from edge.perception.align import TemplateAligner
from edge.perception.embedder import DlibEmbedder
from edge.perception.manifest import Manifest
from edge.perception.types import Aligner, Embedder

VARIANTS = ("float32", "int8")

EmbedderFactory = Callable[[Path, str], Embedder]
AlignerFactory = Callable[[], Aligner]


def _dlib(models_dir: Path, variant: str) -> Embedder:
    return DlibEmbedder.from_models_dir(models_dir, variant=variant, num_threads=2)


EMBEDDERS: dict[str, EmbedderFactory] = {
    "dlib_resnet_v1": _dlib,
}

# What the manifest does not say about a family: its training data and their terms.
TRAINING_DATA: dict[str, str] = {
    "dlib_resnet_v1": "about 3 million faces (FaceScrub, VGG Face and images collected from the web, "
                      "per dlib's model notes); the data's own terms are not stated by dlib",
}

ALIGNERS: dict[str, AlignerFactory] = {
    # BlazeFace eyes + nose tip onto dlib's 150x150 chip template (edge.perception.align).
    "keypoint": TemplateAligner,
}


@dataclass(frozen=True)
class Recogniser:
    family: str
    aligner: str
    label: str
    today: bool = False  # the configuration the firmware ships today (the reference row)
    opt_in: bool = False  # selectable only where a deployment order names it
    device: bool = True  # the aligner the device runs for this family: its figures go to the manifest

    @property
    def key(self) -> str:
        return f"{self.family}+{self.aligner}"

    def variants(self, manifest: Manifest) -> list[str]:
        have = {e.variant for e in manifest.family(self.family)}
        return [v for v in VARIANTS if v in have]

    def model_sha(self, manifest: Manifest, variant: str) -> str:
        return manifest.variant(self.family, variant).sha256

    def open(self, models_dir: Path, variant: str) -> tuple[Embedder, Aligner]:
        return EMBEDDERS[self.family](models_dir, variant), ALIGNERS[self.aligner]()


REGISTRY: tuple[Recogniser, ...] = (
    Recogniser("dlib_resnet_v1", "keypoint", "dlib ResNet v1, BlazeFace keypoint alignment",
               today=True),
)


def available(manifest: Manifest, wanted: list[str] | None = None) -> list[Recogniser]:
    """The registered configurations whose family is in the manifest (``wanted`` by key or family)."""
    out = []
    for r in REGISTRY:
        if wanted and r.key not in wanted and r.family not in wanted:
            continue
        try:
            manifest.family(r.family)
        except ModelMissingError:
            continue
        out.append(r)
    return out
