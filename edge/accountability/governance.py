"""Threshold governance: the floor read off the model card's curve, and the one check every threshold passes.

``models/manifest.json`` carries a top-level ``model_cards`` block keyed by
embedding family (measured by ``make eval``, see ``evaluation/``)::

    "model_cards": {"mobileface_v2": {"operating": {"float32": {"fmr": [[t, fmr], ...],
                                                               "impostor_pairs": ..., ...}, ...},
                                      "reliable_width_px": ..., "evaluated": {...}, ...}}

The manifest is parsed once (``edge.perception.manifest``) and keeps the cards.
The floor is the lowest match threshold any configuration or bundle may set on a
device running that family: the lowest threshold at which the card's measured
float32 false-match rate is at most ``FLOOR_FMR`` (read by the same curve the
device's operating point uses, ``edge.watchlist.operating``). A missing card is
an error, not a default: the floor must come from a measurement someone can
inspect.

``check_threshold`` is the single place a threshold is judged; ``bundle build``,
the bundle verifier, the device's config and ``edge selftest`` all call it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from edge.errors import ModelError, ModelMissingError, ThresholdFloorError
from edge.perception.manifest import Manifest
from edge.watchlist.operating import OperatingCard

# No bundle or config may match where more than 1 in 1,000 cross-person comparisons match.
FLOOR_FMR = 1e-3


def model_card(manifest: Manifest, family: str) -> Mapping[str, Any]:
    card = manifest.cards.get(family)
    if card is None:
        raise ModelMissingError(f"the model manifest has no model card for '{family}';"
                                " run `make eval` to measure one")
    return card


def threshold_floor(manifest: Manifest, family: str) -> float:
    """The lowest threshold at which the card's float32 FMR is at most ``FLOOR_FMR``.

    Rounded up to 4 decimals, so the floor never sits where the card measures more.
    """
    card = OperatingCard.from_card(model_card(manifest, family), "float32")
    t = card.threshold_for_fmr(FLOOR_FMR)
    if t is None:
        raise ModelError(f"model card '{family}' does not measure a false-match rate of {FLOOR_FMR:g};"
                         " run `make eval`")
    return math.ceil(t * 10_000 - 1e-9) / 10_000


def check_threshold(value: float, floor: float, where: str) -> float:
    """Refuse a match threshold below the floor; ``where`` names its source (config or bundle)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ThresholdFloorError(f"{where}: match threshold {value!r} is not a number")
    if value < floor:
        raise ThresholdFloorError(
            f"{where}: match threshold {value} is below the model card's floor {floor};"
            " a lower threshold raises false alerts and needs a new, measured model card")
    return float(value)
