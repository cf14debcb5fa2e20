"""The threshold policy: budget, list size and card in, one threshold or a refusal.

The cards here are measured, like ``make eval`` measures, on synthetic score
distributions drawn in the test, so the policy's predictions can be checked
against searches it has never seen.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edge.errors import ModelError, OperatingPointError
from edge.perception.manifest import DEFAULT_EMBEDDER, load_manifest
from edge.watchlist.model import embedder_floor, recogniser
from edge.watchlist.operating import Curve, OperatingCard, operating_point

IMPOSTORS = 24_000_000  # as many cross-person pairs as half of LFW gives
GENUINES = 20_000


def _tail(t: float, mean: float, sd: float) -> float:
    return 0.5 * math.erfc((t - mean) / (sd * math.sqrt(2.0)))


def _measure(genuine_mean: float) -> dict[str, object]:
    """A card in the manifest's format for impostor scores N(0, 0.1), genuine N(mean, 0.12)."""
    thresholds = [0.2 + 0.0125 * k for k in range(41)]
    fmr = [_tail(t, 0.0, 0.1) for t in thresholds]
    fnmr = [1.0 - _tail(t, genuine_mean, 0.12) for t in thresholds]
    curve = [[t, min(1.0, 100 * f), n] for t, f, n in zip(thresholds, fmr, fnmr, strict=True)]
    return {
        "family": "synthetic",
        "reliable_width_px": 40,
        "operating": {"float32": {
            "fmr": [[t, f] for t, f in zip(thresholds, fmr, strict=True)],
            "fnmr": [[t, n] for t, n in zip(thresholds, fnmr, strict=True)],
            "impostor_pairs": IMPOSTORS,
            "genuine_pairs": GENUINES,
            "one_to_many": [
                {"list_size": 100, "mated_searches": 500, "non_mated_searches": 4000, "curve": curve},
                {"list_size": 1000, "mated_searches": 500, "non_mated_searches": 4000, "curve": curve},
            ],
        }},
    }


@pytest.fixture(scope="module")
def strong() -> OperatingCard:
    return OperatingCard.from_card(_measure(0.6), "float32")


@pytest.fixture(scope="module")
def weak() -> OperatingCard:
    return OperatingCard.from_card(_measure(0.3), "float32")


def test_a_longer_list_gets_a_higher_threshold_under_the_same_budget(strong: OperatingCard) -> None:
    small = operating_point(strong, people=50, templates=50, budget_per_10k=10)
    large = operating_point(strong, people=5000, templates=5000, budget_per_10k=10)
    assert large.threshold > small.threshold + 0.05
    for op in (small, large):
        assert op.predicted_fpir <= 10 / 10_000 * 1.0001
    # The longer list pays for its safety in listed people missed.
    assert large.predicted_fnir > small.predicted_fnir


def test_the_chosen_threshold_keeps_the_budget_on_unseen_searches(strong: OperatingCard) -> None:
    """2,000 fresh non-mated searches of a 200-template list: false alerts within the budget's bound."""
    op = operating_point(strong, people=200, templates=200, budget_per_10k=50)
    rng = np.random.default_rng(7)
    searches = rng.normal(0.0, 0.1, (2000, 200)).max(axis=1)
    observed = float(np.mean(searches >= op.threshold))
    expected = op.predicted_fpir
    # Binomial 99.9% band around the prediction: the model is right, not merely conservative.
    band = 3.3 * math.sqrt(expected * (1 - expected) / 2000)
    assert abs(observed - expected) <= band + 1e-4, (observed, expected)


def test_a_budget_beyond_the_cards_evidence_is_refused_with_the_figures(strong: OperatingCard) -> None:
    with pytest.raises(OperatingPointError) as err:
        operating_point(strong, people=5000, templates=10_000, budget_per_10k=0.01)
    text = str(err.value)
    assert "needs a false-match rate of" in text and "measures down to 1.25e-07" in text


def test_too_few_listed_people_found_is_refused_with_the_figures(weak: OperatingCard) -> None:
    ok = operating_point(weak, people=100, templates=100, budget_per_10k=10, min_found=0.1)
    with pytest.raises(OperatingPointError) as err:
        operating_point(weak, people=100, templates=100, budget_per_10k=10, min_found=0.9)
    text = str(err.value)
    assert f"{1 - ok.predicted_fnir:.1%} of listed people found" in text
    assert "at least 90%" in text


def test_fnir_comes_from_the_nearest_measured_list_at_least_as_large(strong: OperatingCard) -> None:
    assert operating_point(strong, people=50, templates=50, budget_per_10k=1).fnir_list_size == 100
    assert operating_point(strong, people=500, templates=500, budget_per_10k=10).fnir_list_size == 1000
    assert operating_point(strong, people=3000, templates=3000, budget_per_10k=10).fnir_list_size == 1000


def test_more_templates_per_person_raise_the_threshold(strong: OperatingCard) -> None:
    one = operating_point(strong, people=100, templates=100, budget_per_10k=10)
    three = operating_point(strong, people=100, templates=300, budget_per_10k=10)
    assert three.threshold > one.threshold


@pytest.mark.parametrize("budget", [0.0, -1.0, float("nan"), 10_000.0])
def test_out_of_range_budgets_are_refused(strong: OperatingCard, budget: float) -> None:
    with pytest.raises(OperatingPointError):
        operating_point(strong, people=10, templates=10, budget_per_10k=budget)


def test_a_card_without_operating_figures_names_make_eval() -> None:
    with pytest.raises(ModelError, match="make eval"):
        OperatingCard.from_card({"family": "x", "threshold_floor": 0.9}, "float32")
    with pytest.raises(ModelError, match="ascend"):
        Curve.parse([[0.5, 0.1], [0.4, 0.01]], "fmr")


def test_interpolation_between_rows() -> None:
    c = Curve.parse([[0.0, 1.0], [1.0, 0.0]], "fnir")
    assert c.at(0.25) == pytest.approx(0.75)
    assert c.at(-1) == 1.0 and c.at(2) == 0.0


def test_the_shipped_card_gives_each_list_size_its_own_threshold(models_dir: Path) -> None:
    """The must-show on the card ``make eval`` wrote: 50 and 5,000 people under one budget."""
    manifest = load_manifest(models_dir)
    rec = recogniser(manifest, DEFAULT_EMBEDDER, "float32")
    small = operating_point(rec.card, people=50, templates=50, budget_per_10k=10)
    large = operating_point(rec.card, people=5000, templates=5000, budget_per_10k=10)
    assert large.threshold > small.threshold
    assert large.predicted_fnir > small.predicted_fnir
    assert min(small.threshold, large.threshold) >= embedder_floor(manifest)
    with pytest.raises(OperatingPointError) as err:  # beyond what 24 M cross-person pairs can show
        operating_point(rec.card, people=5000, templates=5000, budget_per_10k=0.01)
    assert "predicts" in str(err.value) and "false alerts per 10,000 at best" in str(err.value)
    with pytest.raises(OperatingPointError, match="of listed people found"):
        operating_point(rec.card, people=5000, templates=5000, budget_per_10k=10, min_found=0.9)
