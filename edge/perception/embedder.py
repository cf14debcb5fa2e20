"""A face recogniser as a TFLite ``Embedder``, described by its manifest entry.

Every recogniser family in ``models/manifest.json`` states what it needs:

* ``alignment_template``: the chip (size, landmark positions, which BlazeFace
  keypoints align a detection), read by ``edge.perception.align.ChipTemplate``;
* ``chip_input``: channel order, and the ``mean`` and ``scale`` applied to the
  uint8 chip before it is fed, ``(x - mean) * scale`` (mean 0 and scale 1 when
  the model normalises inside its graph, as all our builds do);
* ``embedding_size``: the length of the output vector.

The output is L2-normalised here, so that the dot product of two embeddings is
their cosine similarity.

The embedding space is identified by the family and the sha256 of the float32
file (``space_id``): int8, Edge TPU and float variants of one family share it,
and a watchlist bundle names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import InferenceError, ModelError
from edge.perception.align import ChipTemplate, TemplateAligner
from edge.perception.manifest import DEFAULT_EMBEDDER, Manifest, ModelEntry, load_manifest
from edge.perception.runtime import (
    DelegateLoader,
    TFLiteModel,
    default_delegate_loader,
    open_model,
)
from edge.perception.types import FloatArray

CHANNEL_ORDERS = ("RGB", "BGR")


def l2_normalise(x: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """Rows scaled to unit length; an all-zero row stays zero instead of NaN."""
    v = np.asarray(x, np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    out: FloatArray = (v / np.maximum(n, np.float32(1e-12))).astype(np.float32)
    return out


@dataclass(frozen=True)
class ChipInput:
    """How a uint8 RGB chip becomes the model's float input: ``(x - mean) * scale``."""

    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    def prepare(self, chips: npt.NDArray[np.uint8]) -> FloatArray:
        x = chips.astype(np.float32)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        if self.mean != (0.0, 0.0, 0.0) or self.scale != 1.0:
            x = (x - np.asarray(self.mean, np.float32)) * np.float32(self.scale)
        return np.ascontiguousarray(x, dtype=np.float32)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ChipInput:
        order = str(raw.get("channel_order", ""))
        if order not in CHANNEL_ORDERS:
            raise ValueError(f"chip_input.channel_order {order!r} is not one of {CHANNEL_ORDERS}")
        mean = raw.get("mean")
        if not isinstance(mean, list) or len(mean) != 3:
            raise ValueError("chip_input.mean must be a list of three numbers")
        scale = float(raw["scale"])
        if not scale > 0:
            raise ValueError("chip_input.scale must be > 0")
        return cls(order, (float(mean[0]), float(mean[1]), float(mean[2])), scale)


@dataclass(frozen=True)
class EmbedderSpec:
    """What the manifest says about one recogniser family."""

    family: str
    template: ChipTemplate
    chip_input: ChipInput
    embedding_size: int

    @property
    def chip_size(self) -> int:
        return self.template.size

    @classmethod
    def from_entry(cls, entry: ModelEntry) -> EmbedderSpec:
        if entry.role != "embedder":
            raise ModelError(f"model '{entry.model_id}' is a {entry.role}, not an embedder")
        try:
            template = ChipTemplate.from_json(entry.extra["alignment_template"])
            chip_input = ChipInput.from_json(entry.extra["chip_input"])
            size = int(entry.extra["embedding_size"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"model '{entry.model_id}': embedder entry needs alignment_template, "
                             f"chip_input and embedding_size ({e})") from e
        shape = entry.inputs[0].shape
        if len(shape) != 4 or tuple(shape[1:]) != (template.size, template.size, 3):
            raise ModelError(f"model '{entry.model_id}': input {shape} does not fit its "
                             f"{template.size}x{template.size} alignment template")
        return cls(entry.family, template, chip_input, size)


def space_id(manifest: Manifest, family: str) -> str:
    """``family:sha256-of-its-float32-file``: the embedding space a bundle names."""
    return f"{family}:{manifest.variant(family, 'float32').sha256}"


class ManifestEmbedder:
    """``Embedder`` over one recogniser's TFLite model chosen by the runtime."""

    def __init__(self, model: TFLiteModel, spec: EmbedderSpec | None = None,
                 space: str | None = None) -> None:
        if spec is None:
            if model.entry is None:
                raise ModelError(f"{model.model_id}: no manifest entry to describe the embedder")
            spec = EmbedderSpec.from_entry(model.entry)
        shape = model.input_shape
        size = spec.chip_size
        if len(shape) != 4 or tuple(shape[1:]) != (size, size, 3):
            raise ModelError(f"{model.model_id}: input {shape} is not (N, {size}, {size}, 3)")
        self.model = model
        self.spec = spec
        self.family = spec.family
        self.backend = model.backend
        self.model_id = model.model_id
        # The manifest variant that runs ("float32", "int8"; an Edge TPU file is its int8 entry's).
        self.variant = model.entry.variant if model.entry is not None else "float32"
        self.space_id = space or spec.family
        self.dim = spec.embedding_size

    @classmethod
    def from_models_dir(
        cls,
        models_dir: Path | str | None = None,
        variant: str | None = None,
        *,
        family: str = DEFAULT_EMBEDDER,
        delegate_loader: DelegateLoader = default_delegate_loader,
        num_threads: int = 2,
    ) -> ManifestEmbedder:
        """Open ``family``; ``variant`` pins "float32" or "int8", None lets the runtime pick."""
        manifest = load_manifest(models_dir)
        model = open_model(manifest, family, variant=variant, delegate_loader=delegate_loader,
                           num_threads=num_threads)
        return cls(model, space=space_id(manifest, family))

    def aligner(self) -> TemplateAligner:
        """The aligner that cuts this model's chips."""
        return TemplateAligner(template=self.spec.template)

    def embed(self, chips: npt.NDArray[np.uint8]) -> FloatArray:
        """(N, S, S, 3) RGB uint8 chips -> (N, dim) L2-normalised float32."""
        size = self.spec.chip_size
        batch = np.asarray(chips)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[1:] != (size, size, 3):
            raise InferenceError(f"chips must be (N, {size}, {size}, 3), got {batch.shape}")
        if batch.dtype != np.uint8:
            raise InferenceError(f"chips must be uint8 RGB, got {batch.dtype}")
        if batch.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        raw = self.model.run(self.spec.chip_input.prepare(batch))[0]
        out = raw.reshape(batch.shape[0], -1)
        if out.shape[1] != self.dim:
            raise InferenceError(f"{self.model_id}: output has {out.shape[1]} values, "
                                 f"the manifest says {self.dim}")
        return l2_normalise(out)


__all__ = [
    "ChipInput",
    "EmbedderSpec",
    "ManifestEmbedder",
    "l2_normalise",
    "space_id",
]
