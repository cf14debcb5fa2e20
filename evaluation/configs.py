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
from edge.perception.manifest import Manifest, load_manifest
from edge.perception.types import Embedder

VARIANTS = ("float32", "int8")
# The reference row every ratio is taken against: dlib at its card threshold (0.94), the
# recogniser issue 10 measured (``make eval`` keeps it the baseline after the default changed).
REFERENCE = "dlib_resnet_v1"

RGB = npt.NDArray[np.uint8]
Box = npt.NDArray[np.float32]  # x0, y0, x1, y1
# Cuts one chip from an image given the detection's keypoints (6, 2) and box.
ChipCutter = Callable[[RGB, npt.NDArray[np.float32], Box], RGB]
AlignerFactory = Callable[[ManifestEmbedder, Path], tuple[ChipCutter, str]]


def manifest_aligner(embedder: ManifestEmbedder, models_dir: Path) -> tuple[ChipCutter, str]:
    """The alignment the model's manifest entry names (what the device does); key includes its points."""
    aligner = embedder.aligner()
    tpl = aligner.chip_template.to_json()
    digest = hashlib.sha256(json.dumps(tpl, sort_keys=True).encode()).hexdigest()[:8]

    def cut(image: RGB, keypoints: npt.NDArray[np.float32], box: Box) -> RGB:
        return aligner.align(image, keypoints)

    return cut, f"{tpl['name']}-{aligner.keypoint_set}-{digest}"


def landmark_aligner(name: str) -> AlignerFactory:
    """dlib's 5 landmarks (numpy port) placed from the BlazeFace keypoints, then the named chip."""
    def make(embedder: ManifestEmbedder, models_dir: Path) -> tuple[ChipCutter, str]:
        from edge.perception.align5 import make_aligner

        aligner = make_aligner(name, models_dir)
        sha = load_manifest(models_dir).get(LANDMARKS_MODEL).sha256

        def cut(image: RGB, keypoints: npt.NDArray[np.float32], box: Box) -> RGB:
            return aligner.align(image, keypoints)

        return cut, f"{name}-{sha[:12]}"
    return make


LANDMARKS_MODEL = "dlib_landmarks5"
ALIGNERS: dict[str, AlignerFactory] = {
    "manifest": manifest_aligner,
    "dlib5": landmark_aligner("dlib5"),  # dlib's own 150 px chip
    "dlib5_arcface": landmark_aligner("dlib5_arcface"),  # ArcFace 112 px chip
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
    today: bool = False  # the reference row (``REFERENCE``): the recogniser shipped before the card
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
        cut, key = ALIGNERS[self.aligner](emb, models_dir)
        return emb, cut, f"{self.aligner}-{key}"


# Configurations beyond "each family with its own alignment": landmark alignment (``--extra``;
# the numpy landmark model costs 4-10 ms a face, so these double the run time).
EXTRA: tuple[Recogniser, ...] = (
    Recogniser("dlib_resnet_v1", "dlib5", "dlib ResNet v1, dlib 5-point landmark alignment", device=False),
    Recogniser("mobileface_v2", "dlib5_arcface", "MobileFace V2, ArcFace 112 chip from dlib's 5 landmarks",
               device=False),
    Recogniser("mobilefacenet_expo", "dlib5_arcface",
               "MobileFaceNet (expo), ArcFace 112 chip from dlib's 5 landmarks", opt_in=True, device=False),
)

# Families ``make eval`` leaves out unless named (``--configs``), and why: the card says so.
NOT_BY_DEFAULT: dict[str, str] = {
    "faceplugin_fr": "the weaker of the two opt-in recognisers (issue 10 measured 90% of genuine pairs "
                     "accepted at FMR 1e-5 against mobilefacenet_expo's 92%), its weights and training "
                     "data undocumented, and as slow (about 8 ms a face float, 26 ms int8 on this CPU): "
                     "measuring both would take the cold run past 20 minutes; `make eval "
                     "EVAL_ARGS='--configs faceplugin_fr'` measures it",
}


def registry(manifest: Manifest, extra: bool = False) -> list[Recogniser]:
    """Every embedder family of the manifest with its own alignment (and ``EXTRA``); today's first."""
    families = sorted({e.family for e in manifest.models.values() if e.role == "embedder"})
    out = []
    for fam in families:
        entry = manifest.variant(fam, "float32")
        prov = entry.extra.get("provenance")
        eligible = prov.get("eligible_default", True) if isinstance(prov, dict) else True
        out.append(Recogniser(
            fam, "manifest", f"{fam}, with the alignment its manifest entry names",
            today=fam == REFERENCE, opt_in=not eligible,
        ))
    if extra and LANDMARKS_MODEL in manifest.models:
        out += [r for r in EXTRA if r.family in families]
    return sorted(out, key=lambda r: (not r.today, r.key))


def available(manifest: Manifest, wanted: list[str] | None = None, extra: bool = False
              ) -> list[Recogniser]:
    """The configurations to measure (``wanted`` by key or family; by default every family
    but those in ``NOT_BY_DEFAULT``)."""
    if not wanted:
        return [r for r in registry(manifest, extra) if r.family not in NOT_BY_DEFAULT]
    return [r for r in registry(manifest, extra) if r.key in wanted or r.family in wanted]


def left_out(manifest: Manifest, wanted: list[str] | None = None) -> dict[str, str]:
    """The manifest's families a default run leaves out, with the reason (none when ``wanted``)."""
    families = {e.family for e in manifest.models.values() if e.role == "embedder"}
    return {} if wanted else {f: why for f, why in NOT_BY_DEFAULT.items() if f in families}


def training_data(manifest: Manifest, family: str) -> str:
    """What the manifest (or, for older entries, ``TRAINING_DATA``) says of the training data."""
    extra = manifest.variant(family, "float32").extra
    if "training_data" in extra:
        terms = extra.get("training_data_terms")
        if isinstance(terms, dict) and "quote" in terms:  # quoted, with who says it
            terms = f"\"{terms['quote']}\" ({terms.get('by', 'source not named')})"
        return f"{extra['training_data']}; terms: {terms}" if terms else str(extra["training_data"])
    return TRAINING_DATA.get(family, "not recorded")
