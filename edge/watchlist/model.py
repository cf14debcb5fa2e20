"""Which embedding model a bundle is for, read from the models manifest.

A bundle names the embedder family and the sha256 of its float32 reference
file: the int8 and Edge TPU variants are derived from it and checked against
it by the model tests, so one reference covers every backend of one model.
"""

from __future__ import annotations

from edge.perception.manifest import Manifest
from edge.watchlist.bundle import ModelRef

EMBEDDER_FAMILY = "dlib_resnet_v1"
# Cosine floor for L2-normalised descriptors. dlib publishes 0.6 Euclidean on its
# raw descriptors as the same-person cut; their norms measure 1.37-1.49 on the
# pinned test faces, so that cut is cos = 1 - 0.36 / (2 * n**2) = 0.90-0.92. Pairs
# of different people there score 0.79-0.88 and the same person 0.95-0.97. A
# bundle may be stricter, never laxer; a model-card value in the manifest
# ("threshold_floor" on the float32 embedder entry) overrides this default.
DEFAULT_THRESHOLD_FLOOR = 0.90


def embedder_ref(manifest: Manifest) -> ModelRef:
    entry = manifest.variant(EMBEDDER_FAMILY, "float32")
    return ModelRef(entry.family, entry.sha256)


def threshold_floor(manifest: Manifest) -> float:
    entry = manifest.variant(EMBEDDER_FAMILY, "float32")
    value = entry.extra.get("threshold_floor", DEFAULT_THRESHOLD_FLOOR)
    return float(value)
