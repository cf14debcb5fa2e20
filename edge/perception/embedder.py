"""dlib's ResNet face descriptor as a TFLite ``Embedder``.

The model (``models/build_embedder.py``) takes 150x150 RGB chips cut the way
``edge.perception.align`` cuts them, as float pixel values 0..255 (dlib's mean
subtraction and 1/256 scaling are folded into the first convolution; the int8
variant's input quantisation is scale 1, zero point -128, so pixels map
exactly). It returns dlib's raw 128-D descriptor, which we L2-normalise here so
that the dot product of two embeddings is their cosine similarity.

The embedding space is identified by the family and the sha256 of the float32
file (``space_id``): int8, Edge TPU and float variants of one family share it,
and a watchlist bundle names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import InferenceError, ModelError
from edge.perception.manifest import load_manifest
from edge.perception.runtime import (
    DelegateLoader,
    TFLiteModel,
    default_delegate_loader,
    open_model,
)
from edge.perception.types import FloatArray

FAMILY = "dlib_resnet_v1"
CHIP_SIZE = 150
EMBEDDING_SIZE = 128


def l2_normalise(x: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """Rows scaled to unit length; an all-zero row stays zero instead of NaN."""
    v = np.asarray(x, np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    out: FloatArray = (v / np.maximum(n, np.float32(1e-12))).astype(np.float32)
    return out


class DlibEmbedder:
    """``Embedder`` over the dlib ResNet TFLite model chosen by the runtime."""

    def __init__(self, model: TFLiteModel, space_id: str = FAMILY) -> None:
        shape = model.input_shape
        if len(shape) != 4 or tuple(shape[1:]) != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ModelError(f"{model.model_id}: input {shape} is not (N, 150, 150, 3)")
        self.model = model
        self.backend = model.backend
        self.model_id = model.model_id
        self.space_id = space_id
        self.dim = EMBEDDING_SIZE

    @classmethod
    def from_models_dir(
        cls,
        models_dir: Path | str | None = None,
        variant: str | None = None,
        delegate_loader: DelegateLoader = default_delegate_loader,
        num_threads: int = 2,
    ) -> DlibEmbedder:
        """Open the embedder; ``variant`` pins "float32" or "int8", None lets the runtime pick."""
        manifest = load_manifest(models_dir)
        model = open_model(manifest, FAMILY, variant=variant, delegate_loader=delegate_loader,
                           num_threads=num_threads)
        fp32 = manifest.variant(FAMILY, "float32")
        return cls(model, space_id=f"{FAMILY}:{fp32.sha256}")

    def embed(self, chips: npt.NDArray[np.uint8]) -> FloatArray:
        """(N, 150, 150, 3) RGB uint8 chips -> (N, 128) L2-normalised float32."""
        batch = np.asarray(chips)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise InferenceError(f"chips must be (N, 150, 150, 3), got {batch.shape}")
        if batch.dtype != np.uint8:
            raise InferenceError(f"chips must be uint8 RGB, got {batch.dtype}")
        if batch.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        raw = self.model.run(batch.astype(np.float32))[0]
        return l2_normalise(raw.reshape(batch.shape[0], -1))


__all__ = ["CHIP_SIZE", "EMBEDDING_SIZE", "FAMILY", "DlibEmbedder", "l2_normalise"]
