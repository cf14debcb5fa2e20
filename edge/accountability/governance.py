"""Threshold governance: the model card's floor, and the one check every threshold passes.

``models/manifest.json`` carries a top-level ``model_cards`` block keyed by
embedding family (measured by ``make eval``, see ``evaluation/``)::

    "model_cards": {"dlib_resnet_v1": {"threshold": 0.94, "threshold_floor": 0.93,
                                       "operating": {"float32": {"fmr": ..., "fnmr": ...,
                                                                 "one_to_many": [...]}, ...},
                                       "reliable_width_px": ..., "evaluated": {...}, ...}}

The manifest is parsed once (``edge.perception.manifest``) and keeps the cards.
The floor is the lowest match threshold any configuration or bundle may set on a
device running that family. A missing card is an error, not a default: the floor
must come from a measurement someone can inspect.

``check_threshold`` is the single place a threshold is judged; ``bundle build``,
the bundle verifier, the device's config and ``edge selftest`` all call it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from edge.errors import ModelError, ModelMissingError, ThresholdFloorError
from edge.perception.manifest import Manifest


def model_card(manifest: Manifest, family: str) -> Mapping[str, Any]:
    card = manifest.cards.get(family)
    if card is None:
        raise ModelMissingError(f"the model manifest has no model card for '{family}';"
                                " run `make eval` to measure one")
    return card


def threshold_floor(manifest: Manifest, family: str) -> float:
    """The card's ``threshold_floor`` for ``family`` (a cosine similarity in (0, 1))."""
    floor = model_card(manifest, family).get("threshold_floor")
    if isinstance(floor, bool) or not isinstance(floor, int | float) or not 0.0 < floor < 1.0:
        raise ModelError(f"model card '{family}': threshold_floor must be a number in (0, 1), got {floor!r}")
    return float(floor)


def check_threshold(value: float, floor: float, where: str) -> float:
    """Refuse a match threshold below the floor; ``where`` names its source (config or bundle)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ThresholdFloorError(f"{where}: match threshold {value!r} is not a number")
    if value < floor:
        raise ThresholdFloorError(
            f"{where}: match threshold {value} is below the model card's floor {floor};"
            " a lower threshold raises false alerts and needs a new, measured model card")
    return float(value)
