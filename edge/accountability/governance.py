"""Threshold governance: the model card's floor, and the check every threshold passes.

``models/manifest.json`` carries a top-level ``model_cards`` block keyed by
embedding family (measured by ``make eval``, see ``evaluation/``)::

    "model_cards": {"dlib_resnet_v1": {"threshold": 0.94, "threshold_floor": 0.93,
                                       "operating": {"float32": {"fmr": ..., "fnmr": ...,
                                                                 "one_to_many": [...]}, ...},
                                       "reliable_width_px": ..., "evaluated": {...}, ...}}

The floor is the lowest match threshold any configuration or bundle may set on a
device running that family. A missing card is an error, not a default: the floor
must come from a measurement someone can inspect.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Final

from edge.errors import ModelError, ModelMissingError, ThresholdFloorError

CARDS_KEY: Final = "model_cards"
WHERE: Final = ("config", "bundle")


def model_card(manifest_json: dict[str, Any], family: str) -> dict[str, Any]:
    cards = manifest_json.get(CARDS_KEY)
    card = cards.get(family) if isinstance(cards, dict) else None
    if not isinstance(card, dict):
        raise ModelMissingError(f"the model manifest has no model card for '{family}';"
                                " run `make eval` to measure one")
    return card


def threshold_floor(manifest_json: dict[str, Any], family: str) -> float:
    """The card's ``threshold_floor`` for ``family`` (a cosine similarity in (0, 1))."""
    floor = model_card(manifest_json, family).get("threshold_floor")
    if isinstance(floor, bool) or not isinstance(floor, int | float) or not 0.0 < floor < 1.0:
        raise ModelError(f"model card '{family}': threshold_floor must be a number in (0, 1), got {floor!r}")
    return float(floor)


def load_threshold_floor(models_dir: Path, family: str) -> float:
    """The floor from ``<models_dir>/manifest.json`` (``Manifest`` does not keep top-level blocks)."""
    return threshold_floor({CARDS_KEY: {family: load_model_card(models_dir, family)}}, family)


def load_model_card(models_dir: Path, family: str) -> dict[str, Any]:
    path = Path(models_dir) / "manifest.json"
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"model manifest {path} is unreadable: {e}") from e
    if not isinstance(doc, dict):
        raise ModelError(f"model manifest {path} is not a JSON object")
    return model_card(doc, family)


def check_threshold(value: float, floor: float, where: str) -> float:
    """Refuse a match threshold below the floor; ``where`` names its source (config or bundle)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ThresholdFloorError(f"{where}: match threshold {value!r} is not a number")
    if value < floor:
        raise ThresholdFloorError(
            f"{where}: match threshold {value} is below the model card's floor {floor};"
            " a lower threshold raises false alerts and needs a new, measured model card")
    return float(value)
