"""Inference runtime: backend selection (fake TPU delegate only) and integer I/O."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.errors import BackendError, InferenceError
from edge.perception import tpu_probe
from edge.perception.detector import letterbox
from edge.perception.manifest import Manifest, load_manifest, sha256_file
from edge.perception.runtime import EDGETPU_LIBRARY, choose_backend, open_model

FAMILY = "blazeface_short_range"  # the smaller model keeps these tests quick


class FakeLoader:
    """Stands in for ``load_delegate``: the TPU is the one edge we fake."""

    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.result, self.error, self.calls = result, error, []

    def __call__(self, library: str) -> Any:
        self.calls.append(library)
        if self.error is not None:
            raise self.error
        return self.result


def _models(models_dir: Path, tmp_path: Path, *, with_edgetpu: bool, record: bool = True
            ) -> Manifest:
    """A models folder with the family's files, optionally a compiled TPU file.

    ``record``: write the stand-in's sha256 into the manifest as `make edgetpu` does.
    """
    dst = tmp_path / "models"
    dst.mkdir(parents=True)
    shutil.copy(models_dir / "manifest.json", dst / "manifest.json")
    manifest = load_manifest(dst)
    for e in manifest.family(FAMILY):
        shutil.copy(models_dir / e.file, dst / e.file)
    int8 = manifest.variant(FAMILY, "int8")
    if with_edgetpu:
        assert int8.edgetpu_file is not None
        # Stand-in bytes for the compiler's output (no compiler here).
        shutil.copy(dst / int8.file, dst / int8.edgetpu_file)
        if record:
            doc = json.loads((dst / "manifest.json").read_text())
            doc["models"][int8.model_id]["edgetpu_sha256"] = sha256_file(dst / int8.edgetpu_file)
            (dst / "manifest.json").write_text(json.dumps(doc))
            manifest = load_manifest(dst)
    return manifest


def test_edgetpu_chosen_when_delegate_loads_and_file_exists(
    models_dir: Path, tmp_path: Path
) -> None:
    manifest = _models(models_dir, tmp_path, with_edgetpu=True)
    sentinel = object()
    loader = FakeLoader(result=sentinel)
    choice = choose_backend(manifest, FAMILY, delegate_loader=loader)
    assert loader.calls == [EDGETPU_LIBRARY]
    assert choice.backend == "edgetpu"
    assert choice.delegate is sentinel
    assert choice.path.name == "blazeface_short_range_int8_edgetpu.tflite"
    assert choice.entry.variant == "int8"
    assert "loaded" in choice.reason


def test_cpu_when_delegate_fails_names_the_reason(models_dir: Path, tmp_path: Path) -> None:
    manifest = _models(models_dir, tmp_path, with_edgetpu=True)
    loader = FakeLoader(error=ValueError("Failed to load delegate from libedgetpu.so.1"))
    choice = choose_backend(manifest, FAMILY, delegate_loader=loader)
    assert choice.backend == "cpu"
    assert choice.entry == manifest.cpu_preferred(FAMILY)
    assert "did not load" in choice.reason and "Failed to load delegate" in choice.reason


def test_cpu_when_edgetpu_file_missing_without_touching_the_tpu(
    models_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = _models(models_dir, tmp_path, with_edgetpu=False)
    loader = FakeLoader(result=object())
    with caplog.at_level(logging.INFO, logger="edge.perception.runtime"):
        model = open_model(manifest, FAMILY, delegate_loader=loader)
    assert loader.calls == []
    assert model.backend == "cpu"
    assert model.model_id == manifest.cpu_preferred(FAMILY).model_id
    assert "not installed" in model.reason
    assert "backend=cpu" in caplog.text and "not installed" in caplog.text


def test_unusable_delegate_falls_back_to_cpu(models_dir: Path, tmp_path: Path) -> None:
    manifest = _models(models_dir, tmp_path, with_edgetpu=True)
    model = open_model(manifest, FAMILY, delegate_loader=FakeLoader(result=object()))
    assert model.backend == "cpu"
    assert "unusable" in model.reason
    assert model.run(np.zeros((1, *model.input_shape[1:]), np.float32))


def test_pinned_float_variant_never_asks_for_the_tpu(models_dir: Path, tmp_path: Path) -> None:
    manifest = _models(models_dir, tmp_path, with_edgetpu=True)
    loader = FakeLoader(result=object())
    choice = choose_backend(manifest, FAMILY, variant="fp16", delegate_loader=loader)
    assert loader.calls == []
    assert (choice.backend, choice.entry.variant) == ("cpu", "fp16")


def test_int8_io_is_quantised_by_the_runtime(models_dir: Path, testdata: Path) -> None:
    manifest = load_manifest(models_dir)
    loader = FakeLoader(error=ValueError("no TPU here"))
    f32 = open_model(manifest, FAMILY, variant="float32", delegate_loader=loader)
    i8 = open_model(manifest, FAMILY, variant="int8", delegate_loader=loader)
    assert i8.input_dtype == np.int8 and f32.input_dtype == np.float32
    image = cv2.imread(str(testdata / "obama.jpg"))[:, :, ::-1].copy()
    x = letterbox(image, f32.input_shape[1])[0][None]
    ref, got = f32.run(x), i8.run(x)
    assert [a.dtype for a in got] == [np.float32, np.float32]
    assert [a.shape for a in got] == [a.shape for a in ref] == [(1, 896, 16), (1, 896, 1)]
    # Same face, same anchor wins; regressors track the float model closely.
    assert int(np.argmax(got[1])) == int(np.argmax(ref[1]))
    assert np.corrcoef(ref[0].ravel(), got[0].ravel())[0, 1] > 0.9
    # A batch of two runs item by item and gives the same answers.
    two = i8.run(np.concatenate([x, x]))
    assert np.array_equal(two[1][0], two[1][1])


def test_wrong_input_shape_is_an_inference_error(models_dir: Path) -> None:
    model = open_model(load_manifest(models_dir), FAMILY, variant="float32",
                       delegate_loader=FakeLoader(error=ValueError("no TPU")))
    with pytest.raises(InferenceError, match="input shape"):
        model.run(np.zeros((1, 64, 64, 3), np.float32))


def test_corrupt_model_file_is_a_backend_error(models_dir: Path, tmp_path: Path) -> None:
    manifest = _models(models_dir, tmp_path, with_edgetpu=False)
    entry = manifest.variant(FAMILY, "float32")
    (manifest.models_dir / entry.file).write_bytes(b"not a flatbuffer")
    with pytest.raises(BackendError, match=entry.file):
        open_model(manifest, FAMILY, variant="float32", verify=False,
                   delegate_loader=FakeLoader(error=ValueError("no TPU")))


def test_real_loader_without_libedgetpu_falls_back_to_cpu_quietly(
    models_dir: Path, tmp_path: Path
) -> None:
    """No fake: this machine has no libedgetpu; the CPU fallback prints nothing on stderr.

    Calling load_delegate without the library makes ai-edge-litert's Delegate.__del__
    print an AttributeError at garbage collection (pytest would swallow it, so a child
    process runs the firmware's call); the runtime must not call it at all.
    """
    import ctypes.util
    import subprocess
    import sys

    if ctypes.util.find_library("edgetpu"):
        pytest.skip("libedgetpu is installed here")
    manifest = _models(models_dir, tmp_path, with_edgetpu=True)
    code = ("import gc, sys; from edge.perception.manifest import load_manifest;"
            "from edge.perception.runtime import open_model;"
            f"m = open_model(load_manifest({str(manifest.models_dir)!r}), {FAMILY!r});"
            "print(m.backend); print(m.reason); gc.collect()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[1])
    backend, reason = r.stdout.splitlines()[:2]
    assert backend == "cpu"
    assert "did not load" in reason and "not installed" in reason
    assert "Delegate.__del__" not in r.stderr and "'_library'" not in r.stderr, r.stderr


def test_unrecorded_or_altered_tpu_file_is_refused(models_dir: Path, tmp_path: Path) -> None:
    """The compiled file is checked like every model file, before the TPU is touched."""
    loader = FakeLoader(result=object())
    manifest = _models(models_dir, tmp_path / "a", with_edgetpu=True, record=False)
    choice = choose_backend(manifest, FAMILY, delegate_loader=loader)
    assert choice.backend == "cpu" and "make edgetpu" in choice.reason
    manifest = _models(models_dir, tmp_path / "b", with_edgetpu=True)
    tpu = manifest.edgetpu_path(manifest.variant(FAMILY, "int8"))
    assert tpu is not None
    tpu.write_bytes(tpu.read_bytes() + b"x")
    choice = choose_backend(manifest, FAMILY, delegate_loader=loader)
    assert choice.backend == "cpu" and "sha256" in choice.reason
    assert loader.calls == []


@pytest.mark.parametrize(("fake", "expect"), [
    ("crash", "the Edge TPU runtime crashed (SIGSEGV)"),
    ("refuse", "did not load (ValueError: Failed to load delegate"),
])
def test_delegate_is_probed_in_a_child_and_a_crash_leaves_the_firmware_on_cpu(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: str, expect: str
) -> None:
    """A delegate that kills its process (a libedgetpu for another TFLite) kills the probe only."""
    manifest = _models(models_dir, tmp_path, with_edgetpu=True)
    monkeypatch.setattr(tpu_probe, "library_present", lambda library: True)  # Coral runtime "installed"
    monkeypatch.setattr(tpu_probe, "PROBE_LOADER", f"tests.fake_delegates:{fake}")
    model = open_model(manifest, FAMILY)
    assert model.backend == "cpu"
    assert expect in model.reason
    if fake == "crash":
        assert "install a libedgetpu built for" in model.reason
    assert model.run(np.zeros((1, *model.input_shape[1:]), np.float32))


def test_selftest_reports_a_crashing_edge_tpu_runtime(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`edge selftest`'s accelerator check: the probe's crash, and the inference on the CPU."""
    from edge.config import ModelsConfig
    from edge.runtime.selftest import check_accelerator

    manifest = _models(models_dir, tmp_path, with_edgetpu=True)
    for e in load_manifest(models_dir).models.values():  # the embedder too
        shutil.copy(models_dir / e.file, manifest.models_dir / e.file)
    monkeypatch.setattr(tpu_probe, "library_present", lambda library: True)
    monkeypatch.setattr(tpu_probe, "PROBE_LOADER", "tests.fake_delegates:crash")
    check = check_accelerator(ModelsConfig(dir=manifest.models_dir, detector=FAMILY, edgetpu=True))
    assert not check.ok
    assert "the Edge TPU runtime crashed (SIGSEGV)" in check.detail
    assert f"{manifest.cpu_preferred(FAMILY).model_id} on cpu" in check.detail
