"""Which embedding model a bundle is for, read from the models manifest.

A bundle names the embedder family and the sha256 of its float32 reference
file: the int8 and Edge TPU variants are derived from it and checked against
it by the model tests, so one reference covers every backend of one model.
"""

from __future__ import annotations

from edge.perception.manifest import Manifest
from edge.watchlist.bundle import ModelRef

EMBEDDER_FAMILY = "dlib_resnet_v1"
# Cosine floor for L2-normalised dlib descriptors: dlib's published same-person
# cut of 0.6 Euclidean is cos = 1 - 0.6**2 / 2 = 0.82; a bundle may be stricter,
# never laxer than 0.80. A model card value in the manifest overrides it.
DEFAULT_THRESHOLD_FLOOR = 0.80


def embedder_ref(manifest: Manifest) -> ModelRef:
    entry = manifest.variant(EMBEDDER_FAMILY, "float32")
    return ModelRef(entry.family, entry.sha256)


def threshold_floor(manifest: Manifest) -> float:
    entry = manifest.variant(EMBEDDER_FAMILY, "float32")
    value = entry.extra.get("threshold_floor", DEFAULT_THRESHOLD_FLOOR)
    return float(value)
