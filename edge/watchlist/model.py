"""Which embedding model a bundle is for, read from the models manifest.

A bundle names the embedder family and the sha256 of its float32 reference
file: the int8 and Edge TPU variants are derived from it and checked against
it by the model tests, so one reference covers every backend of one model.
"""

from __future__ import annotations

from edge.perception.manifest import DEFAULT_EMBEDDER, Manifest
from edge.watchlist.bundle import ModelRef


def embedder_ref(manifest: Manifest, family: str = DEFAULT_EMBEDDER) -> ModelRef:
    entry = manifest.variant(family, "float32")
    return ModelRef(entry.family, entry.sha256)


def threshold_floor(manifest: Manifest, family: str = DEFAULT_EMBEDDER) -> float:
    """The measured model card's floor: no bundle or config may match below it.

    There is deliberately no default: without a card the device refuses to run.
    """
    from edge.accountability.governance import load_threshold_floor

    return load_threshold_floor(manifest.models_dir, family)
