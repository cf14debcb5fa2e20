"""Which embedding model a bundle is for, and what its card says, read from the models manifest.

A bundle names the embedder family, the sha256 of its float32 reference file
and the embedding size: the int8 and Edge TPU variants are derived from it and
checked against it by the model tests, so one reference covers every backend
of one model.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.accountability.governance import model_card, threshold_floor
from edge.errors import ModelError
from edge.perception.manifest import DEFAULT_EMBEDDER, Manifest
from edge.watchlist.bundle import ModelRef
from edge.watchlist.operating import OperatingCard


def embedder_ref(manifest: Manifest, family: str = DEFAULT_EMBEDDER) -> ModelRef:
    entry = manifest.variant(family, "float32")
    return ModelRef(entry.family, entry.sha256, int(entry.outputs[0].shape[-1]))


def embedder_floor(manifest: Manifest, family: str = DEFAULT_EMBEDDER) -> float:
    """The measured model card's floor: no bundle or config may match below it.

    There is deliberately no default: without a card the device refuses to run.
    """
    return threshold_floor(manifest, family)


def reliable_width(manifest: Manifest, family: str = DEFAULT_EMBEDDER) -> int:
    """The card's smallest face width (px) at which recognition holds up (``make eval``)."""
    width = model_card(manifest, family).get("reliable_width_px")
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
        raise ModelError(f"model card '{family}' has no reliable_width_px; run `make eval`")
    return width


@dataclass(frozen=True)
class Recogniser:
    """The recogniser a device runs: its card's operating figures and its provenance verdict."""

    family: str
    variant: str  # the card's variant: "float32", or "int8" (also for the Edge TPU file)
    card: OperatingCard
    eligible_default: bool  # False: runs only where a signed deployment order names it
    verdict: str

    def to_json(self) -> dict[str, object]:
        return {"family": self.family, "variant": self.variant,
                "eligible_default": self.eligible_default, "provenance": self.verdict,
                "reliable_width_px": self.card.reliable_width_px}


def recogniser(manifest: Manifest, family: str, variant: str) -> Recogniser:
    """``family`` as the device runs it, with the card for ``variant`` (fp16 reads as float32)."""
    card_variant = "int8" if variant == "int8" else "float32"
    prov = manifest.variant(family, "float32").extra.get("provenance")
    if not isinstance(prov, dict) or not isinstance(prov.get("eligible_default"), bool):
        raise ModelError(f"manifest entry of '{family}' has no provenance verdict")
    return Recogniser(family, card_variant,
                      OperatingCard.from_card(model_card(manifest, family), card_variant),
                      prov["eligible_default"], str(prov.get("verdict", "")))
