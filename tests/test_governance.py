"""Threshold governance: the model card in the manifest, its floor, and thresholds refused below it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.accountability.governance import FLOOR_FMR, check_threshold, model_card, threshold_floor
from edge.errors import ModelError, ModelMissingError, SignedDocumentError, ThresholdFloorError
from edge.perception.manifest import DEFAULT_EMBEDDER, Manifest, load_manifest, parse_manifest
from edge.watchlist.operating import OperatingCard

FAMILY = DEFAULT_EMBEDDER
FAMILIES = ("dlib_resnet_v1", "mobileface_v2")


@pytest.fixture(scope="module")
def manifest_json(models_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((models_dir / "manifest.json").read_text())
    return doc


@pytest.mark.parametrize("family", FAMILIES)
def test_the_card_describes_the_files_the_device_runs(models_dir: Path, manifest_json: dict[str, Any],
                                                     family: str) -> None:
    assert family in manifest_json["model_cards"]
    manifest = load_manifest(models_dir)  # the extra top-level key is tolerated
    card = manifest_json["model_cards"][family]
    stale = "the models changed since the card was measured: run make eval"
    for variant, entry in card["variants"].items():
        assert entry["sha256"] == manifest.variant(family, variant).sha256, stale
    detector = card["measured_with"]["detector"]
    assert manifest.get(detector["model_id"]).sha256 == detector["sha256"], stale
    assert card["evaluated"]["command"].startswith("make eval")
    assert "threshold_floor" not in card  # the floor is read off the measured curve, not kept by hand


@pytest.mark.parametrize("family", FAMILIES)
def test_the_card_has_the_operating_curves_the_threshold_policy_reads(
        manifest_json: dict[str, Any], family: str) -> None:
    card = manifest_json["model_cards"][family]
    assert isinstance(card["reliable_width_px"], int)
    for variant, op in card["operating"].items():
        assert variant in card["variants"]
        fmr_t = [t for t, _ in op["fmr"]]
        assert fmr_t == sorted(fmr_t) and fmr_t == [t for t, _ in op["fnmr"]]
        fmrs = [f for _, f in op["fmr"]]
        # Rising threshold: fewer false matches, more false non-matches, down to one impostor pair.
        assert fmrs == sorted(fmrs, reverse=True)
        assert min(fmrs) * op["impostor_pairs"] <= 1.5 and op["genuine_pairs"] > 0
        assert [o["list_size"] for o in op["one_to_many"]] == [100, 500, 1000]
        for o in op["one_to_many"]:
            assert o["mated_searches"] > 0 and o["non_mated_searches"] > 0
            thresholds = [t for t, _, _ in o["curve"]]
            assert thresholds == sorted(thresholds)


def test_write_device_cards_rewrites_only_its_families_and_keeps_the_threshold(tmp_path: Path) -> None:
    from evaluation.card import write_device_cards

    doc = {"schema": "edge.models/1", "models": {"m": {"x": 1}},
           "model_cards": {"other_family": {"threshold": 0.5},
                           FAMILY: {"threshold": 0.95, "threshold_floor": 0.93, "gallery_size": 11}}}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    write_device_cards(tmp_path, {FAMILY: {"family": FAMILY, "reliable_width_px": 48}})
    out = json.loads((tmp_path / "manifest.json").read_text())
    assert out["models"] == doc["models"]
    assert out["model_cards"] == {
        FAMILY: {"threshold": 0.95, "family": FAMILY, "reliable_width_px": 48},
        "other_family": {"threshold": 0.5}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "manifest.lock"]


def _manifest(**top: Any) -> Manifest:
    return parse_manifest({"schema": "edge.models/1", "models": {}, **top}, Path("models"))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_floor_is_where_the_cards_measured_fmr_reaches_one_in_a_thousand(
        manifest_json: dict[str, Any], models_dir: Path, family: str) -> None:
    manifest = load_manifest(models_dir)  # parsed once; the cards come with it
    assert model_card(manifest, family) == manifest_json["model_cards"][family]
    floor = threshold_floor(manifest, family)
    rows = manifest_json["model_cards"][family]["operating"]["float32"]["fmr"]
    # The measured rows bracket it: the last row above 1e-3 lies below the floor, the first at or
    # under 1e-3 at or above it.
    above = max(t for t, f in rows if f > FLOOR_FMR)
    under = min(t for t, f in rows if f <= FLOOR_FMR)
    assert above < floor <= under + 1e-4
    curve = OperatingCard.from_card(manifest_json["model_cards"][family], "float32").fmr
    assert curve.at(floor) <= FLOOR_FMR < curve.at(floor - 1e-3)


def test_the_floor_follows_the_curve_not_a_kept_number() -> None:
    def card(fmr_rows: list[list[float]]) -> dict[str, Any]:
        return {"family": FAMILY, "reliable_width_px": 48,
                "operating": {"float32": {"fmr": fmr_rows, "impostor_pairs": 1_000_000, "one_to_many": [
                    {"list_size": 100, "mated_searches": 1, "non_mated_searches": 1,
                     "curve": [[0.1, 0.5, 0.1], [0.9, 0.0, 0.9]]}]}}}

    rows = [[0.5, 1e-2], [0.6, 1e-4]]  # log-linear: 1e-3 halfway
    assert threshold_floor(_manifest(model_cards={FAMILY: card(rows)}), FAMILY) == 0.55
    assert threshold_floor(_manifest(model_cards={FAMILY: card([[0.3, 1e-3], [0.6, 1e-5]])}), FAMILY) == 0.3
    assert threshold_floor(_manifest(model_cards={FAMILY: {**card(rows), "threshold_floor": 0.1}}),
                           FAMILY) == 0.55  # a hand-kept key changes nothing
    with pytest.raises(ModelError, match="does not measure"):
        threshold_floor(_manifest(model_cards={FAMILY: card([[0.5, 0.5], [0.9, 1e-2]])}), FAMILY)


def test_a_missing_or_malformed_card_is_an_error_not_a_default(models_dir: Path) -> None:
    with pytest.raises(ModelMissingError, match="no model card"):
        threshold_floor(_manifest(), FAMILY)
    with pytest.raises(ModelMissingError):
        threshold_floor(load_manifest(models_dir), "arcface")
    for bad in ({"threshold_floor": 0.9}, {"operating": {"float32": {"fmr": [[0.5, 2.0], [0.6, 0.1]]}}},
                {"operating": {"float32": {"fmr": "0.9"}}}):
        with pytest.raises(ModelError, match="model card"):
            threshold_floor(_manifest(model_cards={FAMILY: bad}), FAMILY)


@pytest.mark.parametrize("where", ["config", "bundle"])
def test_a_threshold_below_the_floor_is_refused_naming_where(models_dir: Path, where: str) -> None:
    floor = threshold_floor(load_manifest(models_dir), FAMILY)
    assert check_threshold(floor, floor, where) == floor
    assert check_threshold(floor + 0.02, floor, where) == floor + 0.02
    with pytest.raises(ThresholdFloorError) as exc:
        check_threshold(floor - 0.01, floor, where)
    assert str(exc.value).startswith(f"{where}: match threshold")
    assert str(floor) in str(exc.value)
    assert isinstance(exc.value, SignedDocumentError)  # the bundle path reports it like other refusals


@pytest.mark.parametrize("value", [float("nan"), float("-inf"), "0.95", None])
def test_a_threshold_that_is_not_a_number_is_refused(value: Any) -> None:
    with pytest.raises(ThresholdFloorError, match="config"):
        check_threshold(value, 0.9, "config")
