"""Threshold governance: the model card in the manifest, its floor, and thresholds refused below it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from edge.accountability.governance import (
    check_threshold,
    load_model_card,
    load_threshold_floor,
    threshold_floor,
)
from edge.errors import ModelError, ModelMissingError, SignedDocumentError, ThresholdFloorError
from edge.perception.manifest import load_manifest

FAMILY = "dlib_resnet_v1"


@pytest.fixture(scope="module")
def manifest_json(models_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((models_dir / "manifest.json").read_text())
    return doc


def model_card_script(models_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("model_card", models_dir / "model_card.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["model_card"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_the_manifest_with_its_model_card_still_loads(models_dir: Path,
                                                      manifest_json: dict[str, Any]) -> None:
    assert FAMILY in manifest_json["model_cards"]
    manifest = load_manifest(models_dir)  # the extra top-level key is tolerated
    card = manifest_json["model_cards"][FAMILY]
    # The card describes the files the device runs, not some earlier build.
    stale = "the models changed since the card was measured: run models/model_card.py"
    for variant in ("float32", "int8"):
        assert card["variants"][variant]["sha256"] == manifest.variant(FAMILY, variant).sha256, stale
    detector = card["measured_with"]["detector"]
    assert manifest.get(detector["model_id"]).sha256 == detector["sha256"], stale
    assert card["dataset"]["name"] == "edge-pinned-test-faces/1"
    assert {f["file"] for f in card["dataset"]["files"]} >= {"obama.jpg", "biden.jpg", "t1.jpg"}
    assert card["gallery_size"] == len(card["dataset"]["identities"])
    assert 0 < card["threshold_floor"] <= card["threshold"] < 1


# Shrunken probes are resampled by OpenCV, whose 4.6 (Bookworm's python3-opencv, the locked
# stack) and 5.0 interpolate differently: the measured scores move by up to 0.0002, counts
# not at all. Scores must agree within 5x that; every count and label exactly.
SCORE_TOL = 0.001


def assert_same_figures(fresh: Any, card: Any, where: str = "size_sensitivity") -> None:
    if isinstance(card, float) and isinstance(fresh, float):
        assert abs(fresh - card) <= SCORE_TOL, f"{where}: {fresh} != {card}: run models/model_card.py"
    elif isinstance(card, dict) and isinstance(fresh, dict):
        assert fresh.keys() == card.keys(), where
        for k in card:
            assert_same_figures(fresh[k], card[k], f"{where}.{k}")
    elif isinstance(card, list) and isinstance(fresh, list):
        assert len(fresh) == len(card), where
        for i, (f, c) in enumerate(zip(fresh, card, strict=True)):
            assert_same_figures(f, c, f"{where}[{i}]")
    else:
        assert fresh == card, f"{where}: {fresh} != {card}: run models/model_card.py"


def test_the_card_is_what_the_script_measures_now(models_dir: Path, testdata: Path,
                                                   manifest_json: dict[str, Any]) -> None:
    fresh = model_card_script(models_dir).measure(testdata, models_dir, "today")
    card = manifest_json["model_cards"][FAMILY]
    for key in ("threshold", "threshold_floor", "false_matches", "impostor_pairs", "true_matches",
                "genuine_pairs", "gallery_size"):
        assert fresh[key] == card[key], f"{key}: the card is stale, run models/model_card.py"
    assert_same_figures(fresh["size_sensitivity"], card["size_sensitivity"])
    # The floor is above every impostor score either embedder produced on the named set.
    for v in fresh["variants"].values():
        assert v["impostor_max"] < fresh["threshold_floor"]
        assert v["at_threshold"]["false_matches"] == 0


def test_threshold_floor_reads_the_card(manifest_json: dict[str, Any], models_dir: Path) -> None:
    floor = threshold_floor(manifest_json, FAMILY)
    assert floor == manifest_json["model_cards"][FAMILY]["threshold_floor"]
    assert load_model_card(models_dir, FAMILY)["threshold_floor"] == floor
    assert load_threshold_floor(models_dir, FAMILY) == floor


def test_a_missing_or_malformed_card_is_an_error_not_a_default(manifest_json: dict[str, Any]) -> None:
    with pytest.raises(ModelMissingError, match="no model card"):
        threshold_floor({"schema": "edge.models/1", "models": {}}, FAMILY)
    with pytest.raises(ModelMissingError):
        threshold_floor(manifest_json, "arcface")
    for bad in (None, "0.9", True, 0.0, 1.5):
        with pytest.raises(ModelError, match="threshold_floor"):
            threshold_floor({"model_cards": {FAMILY: {"threshold_floor": bad}}}, FAMILY)


@pytest.mark.parametrize("where", ["config", "bundle"])
def test_a_threshold_below_the_floor_is_refused_naming_where(manifest_json: dict[str, Any],
                                                             where: str) -> None:
    floor = threshold_floor(manifest_json, FAMILY)
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


def test_write_card_rewrites_only_its_own_key(tmp_path: Path, models_dir: Path) -> None:
    mod = model_card_script(models_dir)
    doc = {"schema": "edge.models/1", "models": {"m": {"x": 1}},
           "model_cards": {"other_family": {"threshold_floor": 0.5}}}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    mod.write_card(tmp_path, {"family": FAMILY, "threshold_floor": 0.93})
    out = json.loads((tmp_path / "manifest.json").read_text())
    assert out["models"] == doc["models"]
    assert out["model_cards"] == {"dlib_resnet_v1": {"family": FAMILY, "threshold_floor": 0.93},
                                  "other_family": {"threshold_floor": 0.5}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "manifest.lock"]
