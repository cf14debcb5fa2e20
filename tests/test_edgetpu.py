"""The Coral path without a Coral: the static op check, and `make edgetpu` around the compiler.

``edgetpu_compiler`` is absent here (x86-64 build hosts with Coral's package only),
so the build tool is driven with a fake compiler at the tool edge that writes
what the real one writes (the compiled file, the operation log, the summary).
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from edge.errors import ModelHashError
from edge.perception.edgetpu_ops import ON_CHIP_BYTES, check_model
from edge.perception.manifest import load_manifest, sha256_file
from models import build_edgetpu


def int8_entries(models_dir: Path) -> list[Any]:
    """Every int8 TFLite model (the landmark trees are a numpy .npz: nothing to map)."""
    return [e for e in load_manifest(models_dir).models.values()
            if e.variant == "int8" and e.file.endswith(".tflite")]


def test_every_shipped_int8_model_maps_to_the_edge_tpu(models_dir: Path) -> None:
    entries = int8_entries(models_dir)
    assert {e.family for e in entries} >= {"blazeface_full_range", "blazeface_short_range", "dlib_resnet_v1",
                                           "mobileface_v2", "mobilefacenet_expo", "faceplugin_fr"}
    for e in entries:
        report = check_model((models_dir / e.file).read_bytes())
        assert report.ok, f"{e.file}: " + "; ".join(report.failures()[:5])
        assert 0 < report.parameter_bytes <= ON_CHIP_BYTES
        assert sum(report.op_counts.values()) == len(report.ops) > 0


def test_the_float_models_do_not(models_dir: Path) -> None:
    e = load_manifest(models_dir).variant("blazeface_short_range", "float32")
    report = check_model((models_dir / e.file).read_bytes())
    assert not report.ok and "FLOAT32, not int8/uint8" in report.failures()[0]


# --- small models made here ----------------------------------------------------------


def _tensor(name: str, shape: list[int], ttype: str = "INT8", buffer: int = 0,
            signature: list[int] | None = None) -> Any:
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name, shape, getattr(schema.TensorType, ttype), buffer
    t.shapeSignature = signature
    q = schema.QuantizationParametersT()
    q.scale, q.zeroPoint = [0.05], [0]
    t.quantization = q
    return t


def tiny_model(op: str, *, ttype: str = "INT8", shape: tuple[int, ...] = (1, 8, 8, 4),
               signature: list[int] | None = None, conv_dilation: tuple[int, int] | None = None
               ) -> bytes:
    """One op between an input and an output; CONV_2D gets a 3x3 int8 kernel and bias."""
    m = schema.ModelT()
    m.version, m.description = 3, "edge test model"
    m.buffers = [schema.BufferT()]
    code = schema.OperatorCodeT()
    code.builtinCode = getattr(schema.BuiltinOperator, op)
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    code.version = 1
    m.operatorCodes = [code]
    g = schema.SubGraphT()
    g.tensors = [_tensor("in", list(shape), ttype, signature=signature),
                 _tensor("out", list(shape), ttype)]
    o = schema.OperatorT()
    o.opcodeIndex, o.inputs, o.outputs = 0, [0], [1]
    if conv_dilation is not None:
        channels = shape[-1]
        for name, data, kshape, kt in (
            ("kernel", np.ones((channels, 3, 3, channels), np.int8), [channels, 3, 3, channels], "INT8"),
            ("bias", np.zeros(channels, np.int32), [channels], "INT32"),
        ):
            buf = schema.BufferT()
            buf.data = list(data.tobytes())
            m.buffers.append(buf)
            g.tensors.append(_tensor(name, kshape, kt, buffer=len(m.buffers) - 1))
        o.inputs = [0, 2, 3]
        opts = schema.Conv2DOptionsT()
        opts.padding, opts.strideW, opts.strideH = schema.Padding.SAME, 1, 1
        opts.dilationHFactor, opts.dilationWFactor = conv_dilation
        o.builtinOptionsType, o.builtinOptions = schema.BuiltinOptions.Conv2DOptions, opts
    g.inputs, g.outputs, g.operators = [0], [1], [o]
    m.subgraphs = [g]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_small_supported_models_pass() -> None:
    """The builder itself makes models the check accepts: the failures below are the op's."""
    assert check_model(tiny_model("RELU")).ok
    assert check_model(tiny_model("CONV_2D", conv_dilation=(1, 1))).ok


@pytest.mark.parametrize(("kwargs", "expect"), [
    ({"op": "EXP"}, "EXP: not in the Edge TPU's supported operations"),
    ({"op": "RELU", "ttype": "FLOAT32"}, "tensor in is FLOAT32, not int8/uint8"),
    ({"op": "RELU", "signature": [-1, 8, 8, 4]}, "dynamic shape"),
    ({"op": "RELU", "shape": (2, 8, 8, 4)}, "only the 3 innermost dimensions may exceed 1"),
    ({"op": "CONV_2D", "conv_dilation": (2, 1)}, "must be the same in x and y"),
])
def test_a_model_that_would_fall_back_to_the_cpu_fails(kwargs: dict[str, Any], expect: str) -> None:
    op = kwargs.pop("op")
    report = check_model(tiny_model(op, **kwargs))
    assert not report.ok
    assert any(expect in f for f in report.failures()), report.failures()


# --- make edgetpu with a fake compiler at the tool edge ------------------------------------

FAKE_COMPILER = """#!/usr/bin/env python3
import pathlib, sys
if sys.argv[1:] == ["--version"]:
    print("Edge TPU Compiler version 16.0.384591198 (fake for tests)")
    sys.exit(0)
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--out_dir") + 1])
src = pathlib.Path(args[-1])
(out / (src.stem + "_edgetpu.tflite")).write_bytes(b"edgetpu-custom-op" + src.read_bytes())
cpu = int(CPU_OPS)
table = "Operator                       Count      Status\\n\\n"
table += "CONV_2D                        7          Mapped to Edge TPU\\n"
if cpu:
    table += "EXP                            1          Operation not supported\\n"
(out / (src.stem + "_edgetpu.log")).write_text("Edge TPU Compiler version 16.0\\n\\n" + table)
print("Model compiled successfully in 5 ms.\\n")
print("On-chip memory used for caching model parameters: 5.36MiB")
print("Off-chip memory used for streaming uncached model parameters: 0.00B")
print("Number of Edge TPU subgraphs: 1\\nTotal number of operations: %d" % (7 + cpu))
print("Operation log: " + src.stem + "_edgetpu.log\\n")
print(table)
print("Number of operations that will run on Edge TPU: 7")
print("Number of operations that will run on CPU: %d" % cpu)
"""


def fake_compiler(tmp_path: Path, cpu_ops: int = 0) -> str:
    path = tmp_path / "bin" / "edgetpu_compiler"
    path.parent.mkdir()
    path.write_text(FAKE_COMPILER.replace("CPU_OPS", str(cpu_ops)))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def models_copy(models_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "models"
    dst.mkdir()
    shutil.copy(models_dir / "manifest.json", dst)
    for e in load_manifest(models_dir).models.values():
        shutil.copy(models_dir / e.file, dst / e.file)
    return dst


def test_compiled_files_are_recorded_with_hash_and_op_report(models_copy: Path, tmp_path: Path) -> None:
    lines = build_edgetpu.build(models_copy, fake_compiler(tmp_path))
    manifest = load_manifest(models_copy)
    compiled = [e for e in manifest.models.values() if e.edgetpu_file]
    assert len(lines) == len(compiled) >= 3
    for e in compiled:
        assert e.edgetpu_file is not None
        assert e.edgetpu_sha256 == sha256_file(models_copy / e.edgetpu_file)
        report = e.extra["edgetpu_compile"]
        assert report["ops"] == [{"op": "CONV_2D", "count": 7, "status": "Mapped to Edge TPU"}]
        assert (report["mapped"], report["cpu"]) == (7, 0)
        assert report["source_sha256"] == e.sha256
        assert report["compiler"].startswith("Edge TPU Compiler version 16.0")
        assert report["on_chip_parameters"] == "5.36MiB"
    manifest.verify_hashes()  # the device's check covers the compiled files
    victim = models_copy / str(compiled[0].edgetpu_file)
    victim.write_bytes(victim.read_bytes()[:-1])
    with pytest.raises(ModelHashError):
        manifest.verify_hashes()


def test_ops_left_on_the_cpu_fail_the_build(models_copy: Path, tmp_path: Path) -> None:
    before = (models_copy / "manifest.json").read_bytes()
    with pytest.raises(build_edgetpu.BuildError, match=r"1 ops stay on the CPU: EXP x1"):
        build_edgetpu.build(models_copy, fake_compiler(tmp_path, cpu_ops=1))
    assert (models_copy / "manifest.json").read_bytes() == before


def test_absent_compiler_says_where_edgetpu_files_come_from(
    models_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = json.loads((models_copy / "manifest.json").read_text())
    rc = build_edgetpu.main(["--models", str(models_copy),
                             "--compiler", str(tmp_path / "nowhere" / "edgetpu_compiler")])
    err = capsys.readouterr().err
    assert rc == 2
    for words in ("edgetpu_compiler not found", "x86-64", "edgetpu-compiler",
                  "coral-edgetpu-stable", "cannot run on the Raspberry Pi", "CPU"):
        assert words in err
    assert json.loads((models_copy / "manifest.json").read_text()) == before
