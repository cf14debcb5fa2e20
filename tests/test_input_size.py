"""A fully convolutional detector rewritten for another input size (``edge.perception.input_size``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.errors import BackendError, ModelError, ModelHashError
from edge.perception import input_size
from edge.perception.detector import BlazeFaceDetector
from edge.perception.runtime import TFLiteModel, open_file

FULL = "blazeface_full_range_float32.tflite"


def no_tpu(library: str) -> object:
    raise ValueError(f"{library}: no Edge TPU here")


@pytest.mark.parametrize(("name", "stride"), [(FULL, 32), ("blazeface_full_range_int8.tflite", 32),
                                              ("blazeface_short_range_float32.tflite", 16)])
def test_the_stride_is_read_from_the_graph(models_dir: Path, name: str, stride: int) -> None:
    assert input_size.input_multiple((models_dir / name).read_bytes()) == stride


def test_at_its_own_size_the_rewritten_model_computes_the_same(models_dir: Path,
                                                               tmp_path: Path) -> None:
    data = (models_dir / FULL).read_bytes()
    same = tmp_path / "same.tflite"
    same.write_bytes(input_size.with_input_size(data, 192, 192))
    x = np.random.default_rng(0).uniform(-1, 1, (1, 192, 192, 3)).astype(np.float32)
    a, b = open_file(models_dir / FULL).run(x), open_file(same).run(x)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


def test_a_wide_input_gives_one_anchor_per_cell(models_dir: Path, tmp_path: Path) -> None:
    wide = tmp_path / "wide.tflite"
    wide.write_bytes(input_size.with_input_size((models_dir / FULL).read_bytes(), 288, 512))
    regs, scores = sorted(open_file(wide).run(np.zeros((1, 288, 512, 3), np.float32)),
                          key=lambda o: -o.shape[-1])
    assert regs.shape == (1, 72 * 128, 16) and scores.shape == (1, 72 * 128, 1)


def test_what_cannot_be_resized_is_refused(models_dir: Path) -> None:
    data = (models_dir / FULL).read_bytes()
    with pytest.raises(ModelError, match="stride 32"):
        input_size.with_input_size(data, 200, 512)
    with pytest.raises(ModelError, match="not a TFLite model"):
        input_size.with_input_size(b"\x00" * 64, 192, 192)
    # A head reshaped to a fixed anchor count pins the size.
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    for op in model.subgraphs[0].operators:
        if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.RESHAPE:
            op.builtinOptions.newShape = np.array([1, 2304, 16], np.int32)
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(ModelError, match="RESHAPE with a fixed shape"):
        input_size.input_multiple(bytes(builder.Output()))


def test_only_the_cpu_model_as_checked_is_resized(models_dir: Path, tmp_path: Path) -> None:
    det = BlazeFaceDetector.from_models_dir(models_dir, variant="float32", delegate_loader=no_tpu)
    model = det.model
    compiled = TFLiteModel(model.entry, model.path, "edgetpu", "pretend", model._interp)
    with pytest.raises(BackendError, match="compiled for"):
        compiled.resized(288, 512)
    # The file is read again when resized: one changed since it was checked is refused.
    copy = tmp_path / FULL
    shutil.copyfile(model.path, copy)
    moved = TFLiteModel(model.entry, copy, "cpu", "copy", model._interp)
    copy.write_bytes(copy.read_bytes() + b"\x00")
    with pytest.raises(ModelHashError, match="changed on disk"):
        moved.resized(288, 512)
    det.set_input_size(288, 512)
    assert det.input_hw == (288, 512) and det.model.input_shape == (1, 288, 512, 3)
    assert det.anchors.shape == (72 * 128, 2)
