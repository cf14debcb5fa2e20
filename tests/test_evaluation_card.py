"""The model card: generated from its JSON, covering the families the device may run, int8 against float."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.perception.manifest import DEFAULT_EMBEDDER, load_manifest
from evaluation import card as cardmod
from evaluation.configs import REFERENCE
from evaluation.degrade import BY_NAME, CONDITIONS
from evaluation.run import Settings

CARD = Path(__file__).resolve().parents[1] / "docs" / "model-card"


def _result() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CARD / "card.json").read_text("utf-8"))
    return data


def test_the_committed_card_is_rendered_from_its_json() -> None:
    assert cardmod.markdown(_result()) == (CARD / "CARD.md").read_text("utf-8")


def test_the_card_measures_the_reference_the_default_and_the_opt_in_expo_with_its_terms(
        models_dir: Path) -> None:
    manifest = load_manifest(models_dir)
    configs = {c["key"]: c for c in _result()["configs"]}
    for family in (REFERENCE, DEFAULT_EMBEDDER, "mobilefacenet_expo"):
        cfg = configs[f"{family}+manifest"]
        assert set(cfg["variants"]) == {"float32", "int8"}
        for v, body in cfg["variants"].items():  # measured on the files the manifest ships
            assert body["sha256"] == manifest.variant(family, v).sha256
            assert body["multi_template"]["several_photos"]["at_fpir"]
    expo = configs["mobilefacenet_expo+manifest"]
    assert expo["opt_in"] and not configs[f"{DEFAULT_EMBEDDER}+manifest"]["opt_in"]
    assert "non-commercial research" in expo["provenance"]["training_data"]
    # The device reads each device-aligned family's card from the manifest.
    cards = json.loads((models_dir / "manifest.json").read_text("utf-8"))[cardmod.CARDS_KEY]
    for c in configs.values():
        if c["device"]:
            assert cards[c["family"]]["variants"]["float32"]["sha256"] == c["variants"]["float32"]["sha256"]


def test_int8_is_measured_clean_and_at_the_face_widths_unless_asked() -> None:
    s = Settings()
    assert [c.name for c in CONDITIONS if s.measures("int8", c)] == \
        ["clean", *(c.name for c in CONDITIONS if c.kind == "width")]
    assert all(s.measures("float32", c) for c in CONDITIONS)
    assert Settings(int8_kinds=("clean", "width", "degradation")).measures("int8", BY_NAME["blur"])


def _body(tar: float, fnir: float) -> dict[str, Any]:
    at = [{"fpir": 1e-2, "fnir": fnir, "supported": True}, {"fpir": 1e-4, "fnir": 0.5, "supported": False}]
    return {"verification": {"tar_at_fmr": [{"fmr": 1e-5, "tar": tar, "measurable": True}]},
            "one_to_many": [{"list_size": 500, "at_fpir": at}],
            "multi_template": {"several_photos": {"list_size": 500, "at_fpir": at}}}


def test_int8_minus_float_is_given_at_every_operating_point_and_judged_on_the_usable_ones() -> None:
    cfg = {"key": "x+manifest", "variants": {"float32": _body(0.90, 0.10), "int8": _body(0.885, 0.105)}}
    deltas = cardmod.int8_deltas(cfg)
    assert [(n, d) for n, d, _ in deltas] == [
        ("TAR @ FMR 1e-05", -1.5), ("500-list FNIR @ FPIR 0.01", 0.5),
        ("500-list FNIR @ FPIR 0.0001", 0.0), ("500-list FNIR @ FPIR 0.01, several photos", 0.5),
        ("500-list FNIR @ FPIR 0.0001, several photos", 0.0)]
    text = "\n".join(cardmod.int8_section({"configs": [cfg]}))
    assert "largest int8 loss 1.5 pts (TAR @ FMR 1e-05), not within 1 point" in text
    cfg["variants"]["int8"] = _body(0.895, 0.105)
    assert "largest int8 loss 0.5 pts (TAR @ FMR 1e-05), within 1 point; largest gain 0.0" \
        in "\n".join(cardmod.int8_section({"configs": [cfg]}))
    # Doing better is a gain, not a loss: int8 accepting 3 points more and missing 2 fewer.
    cfg["variants"]["int8"] = _body(0.93, 0.08)
    assert "largest int8 loss 0.0 pts, within 1 point; largest gain 3.0 pts" \
        in "\n".join(cardmod.int8_section({"configs": [cfg]}))
