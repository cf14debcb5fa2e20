"""Build MobileFace Identification V2 as TFLite float32 and full-integer int8.

    .venv-build/bin/python models/build_mobileface.py [--src DIR] [--testdata DIR] [--out DIR]

Steps:
1. read the MXNet symbol graph and NDArray-list weights with ``mxnet_reader``
   (pure Python/numpy, no MXNet), each file pinned by sha256; the weights are
   not on a package registry and are read from ``../shared/models-src``;
2. rebuild the graph in TensorFlow (NHWC): every BatchNorm folded into the
   convolution or fully-connected layer before it, max(0)+min(6) as ReLU6,
   MXNet's symmetric padding of stride-2 convolutions as an explicit PAD, the
   flatten's NCHW order folded into the fully-connected weights. The graph's
   own ``(x - 127.5) * 0.0078125`` is left to the firmware (manifest
   ``chip_input``), so the model starts at its first convolution;
3. parity: float TFLite against ``mxnet_reader.forward`` (numpy, MXNet's
   semantics, raw pixels through the graph's own normalisation) on every
   aligned test face; cosine >= 0.9999 or the build fails;
4. int8: full integer, per-channel weights, calibrated on augmented aligned
   test faces (``arcface_build``), every op checked Edge-TPU-mappable. ReLU6
   rules out the exact channel rescaling used for MobileFaceNet; instead each
   convolution's bias absorbs the mean error its rounded int8 weights make on
   the calibration chips (empirical bias correction, Nagel et al. 2019), which
   took the int8-vs-float cosine on the test faces from 0.993 to 0.995 (mean);
5. manifest entries (provenance, measured latency) for both files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

import arcface_build as ab  # noqa: E402
from mxnet_reader import Graph, Node, forward, read_params, read_symbol  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FAMILY = "mobileface_v2"
FP32_FILE = "mobileface_v2_fp32.tflite"
INT8_FILE = "mobileface_v2_int8.tflite"
SYMBOL = "MobileFace_Identification_V2-symbol.json"
PARAMS = "MobileFace_Identification_V2-0000.params"
PINNED = {
    SYMBOL: "9d4f776ecb40772e3eb10338319e4a10a3cd68694dc6ef4e9042c8c4141e658f",
    PARAMS: "750057619a1eef8acb320339aebf0bbcf191497e1396a361c8aaba517bbe825e",
    "LICENSE": "83e4dd21429a91fb7cea67a476032a9641425e5355df2e0f589a738b6ec9fd2c",
}
DEFAULT_SRC = ROOT.parent / "shared" / "models-src" / "mobileface-v2"
PARITY_MIN_COSINE = 0.9999


# --- graph -----------------------------------------------------------------------------


def _bn_scale(params: dict[str, np.ndarray], bn: Node) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm (inference) as y * scale + shift."""
    from mxnet_reader import BN_EPS_DEFAULT

    name = bn.name
    gamma = params[f"{name}_gamma"].astype(np.float64)
    if bn.flag("fix_gamma", True):
        gamma = np.ones_like(gamma)
    scale = gamma / np.sqrt(params[f"{name}_moving_var"].astype(np.float64)
                            + bn.float_attr("eps", BN_EPS_DEFAULT))
    shift = params[f"{name}_beta"] - params[f"{name}_moving_mean"] * scale
    return scale, shift


def tf_function(graph: Graph, params: dict[str, np.ndarray], taps: bool = False,
                bias_fix: dict[str, np.ndarray] | None = None) -> Any:
    """The graph as a tf.function on one normalised NHWC chip, BatchNorms folded."""
    import tensorflow as tf

    nodes = graph.nodes
    consumers: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        for j in n.inputs:
            consumers.setdefault(j, []).append(i)

    def folded_bn(i: int) -> Node | None:
        users = consumers.get(i, [])
        if len(users) == 1 and nodes[users[0]].op == "BatchNorm":
            return nodes[users[0]]
        return None

    flatten_hwc: dict[int, tuple[int, int, int]] = {}

    @tf.function(input_signature=[tf.TensorSpec([1, ab.CHIP, ab.CHIP, 3], tf.float32,
                                                name="chip")])  # type: ignore[untyped-decorator]
    def embed(chip: Any) -> Any:
        vals: dict[int, Any] = {}
        tapped: dict[str, Any] = {}
        for i, n in enumerate(nodes):
            x = vals.get(n.inputs[0]) if n.inputs else None
            if n.op == "null":
                if n.name == "data":
                    vals[i] = chip
                continue
            if n.op in ("_minus_scalar", "_mul_scalar"):
                expected = {"_minus_scalar": ab.CHIP_INPUT["mean"][0],
                            "_mul_scalar": ab.CHIP_INPUT["scale"]}[n.op]
                if n.float_attr("scalar", 0.0) != expected:
                    raise SystemExit(f"{n.name}: input normalisation differs from chip_input")
                vals[i] = x  # applied by the firmware before the model
            elif n.op == "Convolution":
                w = params[nodes[n.inputs[1]].name].astype(np.float64)
                b = (np.zeros(w.shape[0]) if n.flag("no_bias")
                     else params[nodes[n.inputs[2]].name].astype(np.float64))
                bn = folded_bn(i)
                if bn is not None:
                    s, t = _bn_scale(params, bn)
                    w, b = w * s[:, None, None, None], b * s + t
                if bias_fix is not None and n.name in bias_fix:
                    b = b + bias_fix[n.name]
                tapped[n.name] = x
                groups = int(n.attrs.get("num_group", "1"))
                k = n.tuple_attr("kernel", (1, 1))
                stride = n.tuple_attr("stride", (1, 1))
                pad = n.tuple_attr("pad", (0, 0))
                if pad == (0, 0):
                    padding = "VALID"
                elif stride == (1, 1) and pad == ((k[0] - 1) // 2, (k[1] - 1) // 2):
                    padding = "SAME"
                else:  # MXNet pads both sides; TF's SAME would pad (0, 1) here
                    x = tf.pad(x, [[0, 0], [pad[0], pad[0]], [pad[1], pad[1]], [0, 0]])
                    padding = "VALID"
                if groups == 1:
                    y = tf.nn.conv2d(x, tf.constant(w.transpose(2, 3, 1, 0), tf.float32),
                                     [1, *stride, 1], padding)
                elif groups == w.shape[0] and w.shape[1] == 1:
                    y = tf.nn.depthwise_conv2d(
                        x, tf.constant(w.transpose(2, 3, 0, 1), tf.float32), [1, *stride, 1],
                        padding)
                else:
                    raise SystemExit(f"{n.name}: grouped convolution is not supported")
                vals[i] = tf.nn.bias_add(y, tf.constant(b, tf.float32))
            elif n.op == "BatchNorm":
                src = nodes[n.inputs[0]]
                if src.op not in ("Convolution", "FullyConnected") or folded_bn(n.inputs[0]) is not n:
                    raise SystemExit(f"{n.name}: BatchNorm not after a convolution")
                vals[i] = x  # folded into its producer
            elif n.op == "_maximum_scalar" and n.float_attr("scalar", -1) == 0:
                vals[i] = tf.nn.relu(x)
            elif n.op == "_minimum_scalar" and n.float_attr("scalar", -1) == 6:
                prev = nodes[n.inputs[0]]
                if prev.op != "_maximum_scalar":
                    raise SystemExit(f"{n.name}: min(6) without max(0) before it")
                vals[i] = tf.nn.relu6(vals[prev.inputs[0]])
            elif n.op == "elemwise_add":
                vals[i] = x + vals[n.inputs[1]]
            elif n.op == "Flatten":
                _, h, w_, c = (int(d) for d in x.shape)
                flatten_hwc[i] = (h, w_, c)
                vals[i] = tf.reshape(x, [1, h * w_ * c])
            elif n.op == "FullyConnected":
                w = params[nodes[n.inputs[1]].name].astype(np.float64)
                b = (np.zeros(w.shape[0]) if n.flag("no_bias")
                     else params[nodes[n.inputs[2]].name].astype(np.float64))
                if n.inputs[0] in flatten_hwc:  # MXNet flattens C, H, W; we flatten H, W, C
                    h, w_, c = flatten_hwc[n.inputs[0]]
                    w = w.reshape(-1, c, h, w_).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
                bn = folded_bn(i)
                if bn is not None:
                    s, t = _bn_scale(params, bn)
                    w, b = w * s[:, None], b * s + t
                vals[i] = tf.matmul(x, tf.constant(w.T, tf.float32)) + tf.constant(b, tf.float32)
            else:
                raise SystemExit(f"{n.name}: op {n.op} is not supported by this build")
        if taps:
            return tapped
        return tf.identity(vals[graph.heads[0]], name="embedding")

    return embed


def folded_convs(graph: Graph, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each convolution's weights with its BatchNorm folded in, MXNet layout (O, I/g, kh, kw)."""
    nodes = graph.nodes
    out = {}
    for i, n in enumerate(nodes):
        if n.op != "Convolution":
            continue
        w = params[nodes[n.inputs[1]].name].astype(np.float64)
        users = [j for j, m in enumerate(nodes) if i in m.inputs]
        if len(users) == 1 and nodes[users[0]].op == "BatchNorm":
            s, _ = _bn_scale(params, nodes[users[0]])
            w = w * s[:, None, None, None]
        out[n.name] = w
    return out


def weight_bias_correction(graph: Graph, params: dict[str, np.ndarray],
                           chips: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per convolution, the bias shift that cancels the mean error of its int8 weights.

    The converter rounds each output channel's weights to int8 with scale
    max|w| / 127; ``(w_q - w) . E[x]`` is then the mean output error, with E[x]
    the per-channel mean of the layer's float input over ``chips`` (padding
    ignored). Only the graph that is quantised gets the shifted biases; the
    float32 file keeps the original ones.
    """
    probe = tf_function(graph, params, taps=True)
    sums: dict[str, np.ndarray] = {}
    for c in chips:
        for k, v in probe(ab.normalise(c[None])).items():
            sums[k] = sums.get(k, 0) + v.numpy().reshape(-1, v.shape[-1]).mean(axis=0)
    fix = {}
    for name, w in folded_convs(graph, params).items():
        ex = sums[name] / len(chips)
        axes = tuple(range(1, w.ndim))
        scale = np.abs(w).max(axis=axes, keepdims=True) / 127.0
        dw = np.round(w / np.maximum(scale, 1e-30)) * scale - w
        if w.shape[1] == 1 and w.shape[0] == ex.shape[0] and w.shape[0] > 1:  # depthwise
            fix[name] = -(dw.sum(axis=(1, 2, 3)) * ex)
        else:
            fix[name] = -np.einsum("oikl,i->o", dw, ex)
    return fix


def reference(graph: Graph, params: dict[str, np.ndarray], chips: np.ndarray) -> np.ndarray:
    """MXNet semantics in numpy on raw RGB pixels (NCHW), the graph's own normalisation."""
    return np.concatenate([forward(graph, params, c[None].transpose(0, 3, 1, 2).astype(np.float64))
                           for c in chips])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", "--models-dir", dest="models_dir", type=Path, default=HERE)
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC,
                    help="folder holding the MobileFace V2 symbol, params and LICENSE")
    ap.add_argument("--testdata", type=Path, default=ROOT / ".cache" / "testdata")
    args = ap.parse_args(argv)
    import tensorflow as tf

    tf.random.set_seed(0)
    for name, digest in PINNED.items():
        got = ab.sha256(args.src / name)
        if got != digest:
            raise SystemExit(f"{args.src / name}: sha256 {got} is not the pinned {digest}")
    graph = read_symbol(args.src / SYMBOL)
    params = read_params(args.src / PARAMS)
    print(f"read {len(params)} arrays, {sum(v.size for v in params.values())} parameters")
    fn = tf_function(graph, params)

    faces = ab.face_set(args.testdata, args.models_dir)
    ref = reference(graph, params, faces)
    tf_out = np.concatenate([fn(ab.normalise(c[None])).numpy() for c in faces])
    print(f"TensorFlow vs numpy reference: cos min {ab.cosine(tf_out, ref).min():.7f}")

    fp32 = args.models_dir / FP32_FILE
    int8 = args.models_dir / INT8_FILE
    fp32.write_bytes(ab.convert(fn, None))
    f32 = ab.run(fp32, faces)
    parity = ab.cosine(f32, ref)
    print(f"float TFLite vs numpy reference on {len(faces)} real chips: cos min {parity.min():.7f}")
    if parity.min() < PARITY_MIN_COSINE:
        raise SystemExit(f"parity {parity.min():.6f} < {PARITY_MIN_COSINE}")

    chips, per_image = ab.calibration_chips(args.testdata, args.models_dir)
    print(f"calibration: {len(chips)} chips from faces {per_image}")
    # int8 from the same graph with each convolution's bias shifted by the mean error its
    # per-channel int8 weights make on the calibration chips (weight bias correction).
    fix = weight_bias_correction(graph, params, chips)
    int8.write_bytes(ab.convert(tf_function(graph, params, bias_fix=fix), chips))
    ops = {p.name: ab.check_edgetpu_ops(p) for p in (fp32, int8)}
    print("ops:", ops)
    i8 = ab.run(int8, faces)
    print(f"int8 vs float on the test chips: cos min {ab.cosine(i8, f32).min():.4f} "
          f"mean {ab.cosine(i8, f32).mean():.4f}")

    common = {
        "preprocessing": ("RGB uint8 chip 112x112 cut by the ArcFace five-point template; "
                          "(x - 127.5) * 0.0078125 (the symbol's own first two ops) applied by "
                          "the firmware per chip_input. Output: 256-D (fc5 + fc5_bn); "
                          "L2-normalise before cosine."),
        "embedding_size": 256,
        "source": {
            "shared_path": "../shared/models-src/mobileface-v2",
            "files": {n: {"sha256": d} for n, d in PINNED.items()},
            "upstream": "https://github.com/becauseofAI/MobileFace",
            "upstream_commit": "128cea33",
            "upstream_folder": "MobileFace_Identification/",
            "model": "MobileFace Identification V2 (MXNet)",
        },
        "licence": "MIT (the repository's LICENSE, copyright line without a holder: "
                   "'Copyright (c) 2018 ')",
        "training_data": "not disclosed by the publisher",
        "training_data_terms": "none stated: the publisher's README names no training set "
                               "and attaches no terms to it",
        "provenance": {
            "eligible_default": True,
            "rule": "weights may be redistributed and training-data terms do not forbid the use",
            "verdict": "eligible default: MIT weights (redistribution allowed); the training "
                       "data is undisclosed, so no terms are known that forbid the use. The "
                       "undisclosed data is itself a fact the card must show.",
            "runs": "anywhere (default-eligible)",
        },
        "build_command": "make models  (models/build_mobileface.py --src "
                         "../shared/models-src/mobileface-v2 --testdata .cache/testdata "
                         "--out models)",
        "parity": {"reference": "models/mxnet_reader.forward (numpy) on the raw chip",
                   "chips": len(faces), "cosine_min": round(float(parity.min()), 7)},
    }
    quant = (f"full int8 (weights per-channel, activations, int8 I/O) by TFLiteConverter, "
             f"convolution biases corrected for the mean weight-rounding error ({len(fix)} "
             "layers, models/build_mobileface.py weight_bias_correction); "
             f"calibration: {len(chips)} ArcFace-aligned chips of the pinned test faces "
             f"({', '.join(f'{n} x{c}' for n, c in per_image.items() if c)}; BlazeFace "
             "keypoints, edge.perception.align) with shift/scale/rotation/mirror/brightness "
             "augmentation; no evaluation data")
    entries = ab.write_pair(family=FAMILY, models_dir=args.models_dir, fp32=fp32, int8=int8,
                            common=common, int8_quantization=quant)
    for k, e in entries.items():
        print(k, e["sha256"], e["cpu_latency_ms"], e["ops"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
