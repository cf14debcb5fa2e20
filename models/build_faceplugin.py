"""Convert faceplugin-face-recognition-js 0.0.1's ONNX recogniser to TFLite float32 and int8.

    .venv-build/bin/python models/build_faceplugin.py [--sources DIR] [--testdata DIR] [--out DIR]

The npm package (fetched by ``tests/fetch_testdata.py --set models``, pinned by
sha256) ships ``model/fr_feature.onnx``: 112x112 RGB NCHW in, ``(x - 127) / 128``
(the package's preprocessFeature), 512-D out; ops Conv (grouped), PRelu, Add,
Reshape. The package's MIT licence names neither the publisher of the weights
nor their training data: the entry is marked non-eligible (opt-in only).

Steps: read the ONNX graph (``onnx``), rebuild it in TensorFlow (NHWC, MXNet-
style symmetric padding of stride-2 convolutions as an explicit PAD, PRelu in
the form the converter fuses into PRELU); parity of the float TFLite against
an independent numpy forward pass of the ONNX graph (``mxnet_reader.conv2d``
for the convolutions) on real aligned faces, cosine >= 0.9999; int8 after the
same PReLU activation equalisation as MobileFaceNet (exact in float).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

import arcface_build as ab  # noqa: E402
from mxnet_reader import conv2d  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FAMILY = "faceplugin_fr"
FP32_FILE = "faceplugin_fr_fp32.tflite"
INT8_FILE = "faceplugin_fr_int8.tflite"
SOURCE = {
    "registry": "npm",
    "package": "faceplugin-face-recognition-js",
    "version": "0.0.1",
    "archive_sha256": "7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba",
    "file": "model/fr_feature.onnx",
    "sha256": "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
    "fetched_as": "faceplugin-face-recognition-js-0.0.1-fr_feature.onnx",
}
CHIP_INPUT = {"channel_order": "RGB", "mean": [127.0, 127.0, 127.0], "scale": 0.0078125}
PARITY_MIN_COSINE = 0.9999
EQUALISE_BETA = 0.5  # as for MobileFaceNet (build_mobilefacenet.EQUALISE_BETA)


@dataclass
class Node:
    op: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OnnxGraph:
    nodes: list[Node]
    consts: dict[str, np.ndarray]
    input: str
    output: str

    def users(self, name: str) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if name in n.inputs]


def read_onnx(path: Path) -> OnnxGraph:
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    consts = {t.name: numpy_helper.to_array(t).astype(np.float32) if t.data_type == 1
              else numpy_helper.to_array(t) for t in g.initializer}
    nodes = [Node(n.op_type, list(n.input), n.output[0],
                  {a.name: helper.get_attribute_value(a) for a in n.attribute}) for n in g.node]
    for n in nodes:
        if n.op not in ("Conv", "PRelu", "Add", "Reshape"):
            raise SystemExit(f"{path.name}: op {n.op} is not supported by this build")
    inp = [i.name for i in g.input if i.name not in consts]
    return OnnxGraph(nodes, consts, inp[0], g.output[0].name)


def reference(g: OnnxGraph, chips: np.ndarray) -> np.ndarray:
    """numpy forward pass (NCHW, float64) of the ONNX graph on uint8 RGB chips."""
    x = (chips.astype(np.float64) - 127.0) / 128.0
    vals: dict[str, np.ndarray] = {g.input: x.transpose(0, 3, 1, 2)}
    for n in g.nodes:
        a = vals[n.inputs[0]]
        if n.op == "Conv":
            p = n.attrs.get("pads", [0, 0, 0, 0])
            if p[0] != p[2] or p[1] != p[3]:
                raise SystemExit("asymmetric padding is not supported")
            s = n.attrs.get("strides", [1, 1])
            b = g.consts[n.inputs[2]] if len(n.inputs) > 2 else None
            vals[n.output] = conv2d(a, g.consts[n.inputs[1]].astype(np.float64), b,
                                    (s[0], s[1]), (p[0], p[1]), int(n.attrs.get("group", 1)))
        elif n.op == "PRelu":
            slope = g.consts[n.inputs[1]].reshape(1, -1, 1, 1)
            vals[n.output] = np.where(a >= 0, a, a * slope)
        elif n.op == "Add":
            vals[n.output] = a + vals[n.inputs[1]]
        else:  # Reshape to (N, 512)
            vals[n.output] = a.reshape(a.shape[0], -1)
    return vals[g.output]


def tf_function(g: OnnxGraph, taps: bool = False) -> Any:
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, ab.CHIP, ab.CHIP, 3], tf.float32,
                                                name="chip")])  # type: ignore[untyped-decorator]
    def embed(chip: Any) -> Any:
        vals: dict[str, Any] = {g.input: chip}
        tapped: dict[str, Any] = {}
        for n in g.nodes:
            x = vals[n.inputs[0]]
            if n.op == "Conv":
                w = g.consts[n.inputs[1]]
                b = g.consts[n.inputs[2]] if len(n.inputs) > 2 else np.zeros(w.shape[0], np.float32)
                groups = int(n.attrs.get("group", 1))
                k = list(n.attrs["kernel_shape"])
                s = list(n.attrs.get("strides", [1, 1]))
                p = list(n.attrs.get("pads", [0, 0, 0, 0]))
                if p == [0, 0, 0, 0]:
                    padding = "VALID"
                elif s == [1, 1] and p[:2] == [(k[0] - 1) // 2, (k[1] - 1) // 2]:
                    padding = "SAME"
                else:  # symmetric padding; TF's SAME would pad (0, 1) at stride 2
                    x = tf.pad(x, [[0, 0], [p[0], p[2]], [p[1], p[3]], [0, 0]])
                    padding = "VALID"
                if groups == 1:
                    y = tf.nn.conv2d(x, tf.constant(w.transpose(2, 3, 1, 0)), [1, *s, 1], padding)
                elif groups == w.shape[0] and w.shape[1] == 1:
                    y = tf.nn.depthwise_conv2d(x, tf.constant(w.transpose(2, 3, 0, 1)),
                                               [1, *s, 1], padding)
                else:
                    raise SystemExit("grouped convolution is not supported")
                vals[n.output] = tf.nn.bias_add(y, tf.constant(b))
            elif n.op == "PRelu":
                neg_a = tf.constant(-g.consts[n.inputs[1]].reshape(1, 1, -1))
                # The form the converter fuses into one PRELU (see build_mobilefacenet).
                vals[n.output] = tf.nn.relu(x) + neg_a * tf.nn.relu(-x)
                tapped[n.output] = vals[n.output]
            elif n.op == "Add":
                vals[n.output] = x + vals[n.inputs[1]]
            else:
                vals[n.output] = tf.reshape(x, [1, -1])
        if taps:
            return tapped
        return tf.identity(vals[g.output], name="embedding")

    return embed


def equalise(g: OnnxGraph, chips: list[np.ndarray], beta: float, s_max: float = 64.0) -> int:
    """PReLU activation equalisation, as ``build_mobilefacenet.equalise`` (exact in float)."""
    probe = tf_function(g, taps=True)
    ranges: dict[str, np.ndarray] = {}
    for c in chips:
        for k, v in probe(normalise(c[None])).items():
            r = np.abs(v.numpy()).reshape(-1, v.shape[-1]).max(axis=0)
            ranges[k] = np.maximum(ranges.get(k, 0), r)
    producer = {n.output: i for i, n in enumerate(g.nodes)}
    done = 0
    for i, n in enumerate(g.nodes):
        if n.op != "PRelu":
            continue
        a_i = producer.get(n.inputs[0])
        users = g.users(n.output)
        if a_i is None or len(users) != 1 or g.users(n.inputs[0]) != [i]:
            continue
        a, b = g.nodes[a_i], g.nodes[users[0]]
        if a.op != "Conv" or b.op != "Conv" or len(a.inputs) < 3:
            continue
        wb = g.consts[b.inputs[1]]
        depthwise = int(b.attrs.get("group", 1)) == wb.shape[0] and wb.shape[1] == 1
        if not depthwise and (int(b.attrs.get("group", 1)) != 1 or wb.shape[2:] != (1, 1)):
            continue
        r = ranges[n.output]
        s = np.clip((r.max() / np.maximum(r, 1e-12)) ** beta, 1.0, s_max).astype(np.float32)
        g.consts[a.inputs[1]] = g.consts[a.inputs[1]] * s[:, None, None, None]
        g.consts[a.inputs[2]] = g.consts[a.inputs[2]] * s
        g.consts[b.inputs[1]] = wb / (s[:, None, None, None] if depthwise else s[None, :, None, None])
        done += 1
    return done


def normalise(chips: np.ndarray) -> np.ndarray:
    mean = np.asarray(CHIP_INPUT["mean"], np.float32)
    return ((chips.astype(np.float32) - mean) * np.float32(CHIP_INPUT["scale"])).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", "--models-dir", dest="models_dir", type=Path, default=HERE)
    ap.add_argument("--sources", type=Path, default=ROOT / ".cache" / "model-sources")
    ap.add_argument("--testdata", type=Path, default=ROOT / ".cache" / "testdata")
    args = ap.parse_args(argv)
    import tensorflow as tf

    tf.random.set_seed(0)
    src = args.sources / SOURCE["fetched_as"]
    if ab.sha256(src) != SOURCE["sha256"]:
        raise SystemExit(f"{src}: sha256 is not the pinned {SOURCE['sha256']}")
    graph = read_onnx(src)
    fn = tf_function(graph)
    faces = ab.face_set(args.testdata, args.models_dir)
    ref = reference(graph, faces)
    fp32 = args.models_dir / FP32_FILE
    int8 = args.models_dir / INT8_FILE
    fp32.write_bytes(ab.convert(fn, None))
    f32 = ab.run(fp32, faces, normalise)
    parity = ab.cosine(f32, ref)
    print(f"float TFLite vs numpy ONNX reference on {len(faces)} real chips: "
          f"cos min {parity.min():.7f}")
    if parity.min() < PARITY_MIN_COSINE:
        raise SystemExit(f"parity {parity.min():.6f} < {PARITY_MIN_COSINE}")
    chips, per_image = ab.calibration_chips(args.testdata, args.models_dir)
    eq = read_onnx(src)
    n_eq = equalise(eq, chips, EQUALISE_BETA)
    int8.write_bytes(ab.convert(tf_function(eq), chips, normalise))
    ops = {p.name: ab.check_edgetpu_ops(p) for p in (fp32, int8)}
    print("ops:", ops)
    i8 = ab.run(int8, faces, normalise)
    print(f"equalised {n_eq} PReLUs; int8 vs float on the test chips: cos min "
          f"{ab.cosine(i8, f32).min():.4f} mean {ab.cosine(i8, f32).mean():.4f}")
    common = {
        "preprocessing": ("RGB uint8 chip 112x112 cut by the ArcFace five-point template; "
                          "(x - 127) / 128 (the package's preprocessFeature) applied by the "
                          "firmware per chip_input. Output: 512-D; L2-normalise before cosine."),
        "embedding_size": 512,
        "source": dict(SOURCE),
        "licence": "package: MIT ('Copyright (c) 2021 gitguanqi'); the licence names neither "
                   "the publisher of the weights nor their training data",
        "training_data": "not documented by the package",
        "training_data_terms": "unknown: neither the package nor its licence names the data",
        "provenance": {
            "eligible_default": False,
            "rule": "weights may be redistributed and training-data terms do not forbid the use",
            "verdict": "not eligible: the weights' origin and their training data are "
                       "undocumented, so neither redistribution rights nor data terms can be "
                       "established",
            "runs": "only where a signed deployment order names this family",
        },
        "build_command": "make models  (models/build_faceplugin.py --sources .cache/model-sources "
                         "--testdata .cache/testdata --out models)",
        "parity": {"reference": "numpy forward pass of the ONNX graph (build_faceplugin.reference)",
                   "chips": len(faces), "cosine_min": round(float(parity.min()), 7)},
    }
    quant = (f"full int8 (weights per-channel, activations, int8 I/O) by TFLiteConverter, after "
             f"activation equalisation of {n_eq} PReLUs (beta {EQUALISE_BETA}, exact in float); "
             f"calibration: {len(chips)} ArcFace-aligned chips of the pinned test faces "
             f"({', '.join(f'{n} x{c}' for n, c in per_image.items() if c)}) with "
             "shift/scale/rotation/mirror/brightness augmentation; no evaluation data")
    entries = ab.write_pair(family=FAMILY, models_dir=args.models_dir, fp32=fp32, int8=int8,
                            common=common, int8_quantization=quant, chip_input=CHIP_INPUT)
    for k, e in entries.items():
        print(k, e["sha256"], e["cpu_latency_ms"], e["ops"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
