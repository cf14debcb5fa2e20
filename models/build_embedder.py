"""Build the dlib ResNet face embedder as TFLite float32 and full-integer int8.

    .venv-build/bin/python models/build_embedder.py [--sources DIR] [--testdata DIR] [--out DIR]

Steps:
1. read dlib's ``dlib_face_recognition_resnet_model_v1.dat`` with
   ``dlib_reader`` (pure Python, no dlib needed);
2. rebuild the graph in TensorFlow (NHWC): every ``affine`` is folded into the
   convolution before it, and dlib's input normalisation ``(rgb - mean) / 256``
   into the first convolution (exact: that convolution has no padding), so the
   model takes raw RGB pixel values 0..255 as float32;
3. check the TensorFlow graph against ``dlib_reader.forward`` (numpy, dlib's
   semantics) on real chips;
4. convert to float32 TFLite and to int8 (weights and activations, int8 input
   and output) calibrated on aligned real face chips with augmentation;
5. record both in ``models/manifest.json`` (only the embedder entries).

The calibration chips are cut with the firmware's own detector and aligner
(``edge.perception``), from the faces listed in ``CALIBRATION_IMAGES``. The
pinned packages hold few faces: those no verification test asserts on (the
cameraman, the two partial Obama photos) weigh most; the test photos join
with fewer, heavily augmented copies (shift, scale, rotation, flip, light).
The masked faces are listed but BlazeFace finds none of them. ``32bit.png``
is a copy of obama2.jpg and is left out.

The CPU-preferred variant is chosen by timing both files here.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from dlib_reader import DlibNet, Op, forward, read_dlib_net  # noqa: E402

from edge.perception.manifest import cpu_preferred_by_arch  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SOURCE = {
    "package": "face_recognition_models",
    "version": "0.3.0",
    "file": "dlib_face_recognition_resnet_model_v1.dat",
    "sha256": "",  # filled in from the file read
}
FAMILY = "dlib_resnet_v1"
# Quoted from davisking/dlib-models' README and face_recognition_models' README.
PROVENANCE: dict[str, Any] = {
    "training_data": "about 3 million faces: FaceScrub, the VGG face dataset and images the "
                     "author scraped from the internet (dlib-models README)",
    "training_data_terms": {
        "quote": "dlib_face_recognition_resnet_model_v1.dat has been trained with datasets "
                 "that are licensed under Creative Commons.",
        "by": "face_recognition_models README (the package the weights come from)",
    },
    "provenance": {
        "eligible_default": True,
        "rule": "weights may be redistributed and training-data terms do not forbid the use",
        "verdict": "eligible default: weights released into the public "
                   "domain by their author; no stated training-data terms forbid the use",
        "runs": "anywhere (default-eligible)",
    },
}
FP32_FILE = "dlib_resnet_v1_fp32.tflite"
INT8_FILE = "dlib_resnet_v1_int8.tflite"
# Faces no verification test asserts on weigh most; test photos after (weight 1).
CALIBRATION_IMAGES: tuple[tuple[str, int], ...] = (
    ("mask_black.jpg", 4), ("mask_blue.jpg", 4), ("mask_green.jpg", 4), ("mask_white.jpg", 4),
    ("camera.png", 4), ("obama_partial_face.jpg", 3), ("obama_partial_face2.jpg", 3),
    ("obama.jpg", 1), ("obama2.jpg", 1), ("obama3.jpg", 1), ("biden.jpg", 1),
    ("t1.jpg", 1), ("Tom_Hanks_54745.png", 1), ("astronaut.png", 1),
)
AUGMENTATIONS_PER_WEIGHT = 6


# --- graph ---------------------------------------------------------------------------


def fold(net: DlibNet) -> list[Op]:
    """Fold each affine into the conv before it and the input scaling into the first conv."""
    ops = [Op(o.kind, o.stride, o.size, o.pad, o.ref, o.weights, o.bias, o.gamma, o.beta,
              o.mean) for o in net.ops[1:]]
    out: list[Op] = []
    for op in ops:
        if op.kind == "affine" and op.gamma is not None and op.gamma.size:
            conv = out[-1]
            assert conv.kind == "conv" and conv.weights is not None and conv.bias is not None
            assert op.beta is not None
            conv.weights = conv.weights * op.gamma[:, None, None, None]
            conv.bias = conv.bias * op.gamma + op.beta
            continue
        if op.kind in ("affine", "identity"):
            continue
        out.append(op)
    first = out[0]
    assert first.kind == "conv" and first.pad == 0 and first.weights is not None
    assert first.bias is not None
    mean = np.asarray(net.mean_rgb, np.float32)
    first.bias = first.bias - np.einsum("oihw,i->o", first.weights, mean) / 256.0
    first.weights = first.weights / 256.0
    return out


def tf_function(ops: list[Op]) -> Any:
    import tensorflow as tf

    consts = []
    for op in ops:
        if op.kind == "conv":
            assert op.weights is not None and op.bias is not None
            consts.append((tf.constant(op.weights.transpose(2, 3, 1, 0).astype(np.float32)),
                           tf.constant(op.bias.astype(np.float32))))
        elif op.kind == "fc":
            assert op.weights is not None
            consts.append((tf.constant(op.weights.astype(np.float32)), None))
        else:
            consts.append((None, None))

    def pad_to(x: Any, shape: list[int]) -> Any:
        # dlib's add_prev: the smaller operand is zero-padded at the high end.
        have = x.shape
        pads = [[0, 0]] + [[0, int(shape[i]) - int(have[i])] for i in (1, 2, 3)]
        if any(p[1] for p in pads):
            return tf.pad(x, pads)
        return x

    @tf.function(input_signature=[tf.TensorSpec([1, 150, 150, 3], tf.float32, name="rgb")])  # type: ignore[untyped-decorator]
    def embed(rgb: Any) -> Any:
        x = rgb
        tags: dict[int, Any] = {}
        for op, (w, b) in zip(ops, consts, strict=True):
            if op.kind == "conv":
                x = tf.nn.conv2d(x, w, op.stride, "SAME" if op.pad else "VALID") + b
            elif op.kind == "relu":
                x = tf.nn.relu(x)
            elif op.kind == "max_pool":
                x = tf.nn.max_pool2d(x, op.size, op.stride, "VALID")
            elif op.kind == "avg_pool" and op.size == 0:
                x = tf.reduce_mean(x, axis=[1, 2])
            elif op.kind == "avg_pool":
                x = tf.nn.avg_pool2d(x, op.size, op.stride, "VALID")
            elif op.kind == "tag":
                tags[op.ref] = x
            elif op.kind == "skip":
                x = tags[op.ref]
            elif op.kind == "add_prev":
                other = tags[op.ref]
                shape = [max(int(p), int(q)) for p, q in zip(x.shape, other.shape, strict=True)]
                x = pad_to(x, shape) + pad_to(other, shape)
            elif op.kind == "fc":
                x = tf.matmul(x, w)
            else:
                raise ValueError(f"unexpected op {op.kind}")
        return tf.identity(x, name="embedding")

    return embed


# --- calibration chips ---------------------------------------------------------------


def face_chips(testdata: Path, models_dir: Path,
               transform: Callable[[np.ndarray], np.ndarray] | None = None,
               ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(image name, RGB image, 2x3 chip affine) for every face found in the calibration images.

    ``transform`` maps a face's (6, 2) BlazeFace keypoints to its chip affine
    (default: dlib's fitted 150x150 template).
    """
    from fit_alignment import keypoint_finder

    from edge.perception.align import chip_transform

    to_chip = transform or chip_transform
    find = keypoint_finder()
    out = []
    for name, _ in CALIBRATION_IMAGES:
        bgr = cv2.imread(str(testdata / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"cannot read {testdata / name}: run `make testdata`")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        for kp in find(rgb):
            out.append((name, rgb, to_chip(kp)))
    return out


def augmented_chips(
    faces: list[tuple[str, np.ndarray, np.ndarray]], seed: int = 0, size: int = 150,
    per_weight: int = AUGMENTATIONS_PER_WEIGHT,
) -> Iterator[np.ndarray]:
    """Aligned size x size chips with random shift/scale/rotation, flips and lighting."""
    rng = np.random.default_rng(seed)
    weights = dict(CALIBRATION_IMAGES)
    shift = 6 * size / 150
    for name, rgb, m in faces:
        yield cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT)
        for _ in range(weights[name] * per_weight):
            angle = rng.uniform(-12, 12)
            scale = rng.uniform(0.9, 1.1)
            jitter = np.asarray(cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale),
                                np.float64)
            jitter[:, 2] += rng.uniform(-shift, shift, 2)
            full = np.vstack([jitter, [0, 0, 1]]) @ np.vstack([m, [0, 0, 1]])
            chip = cv2.warpAffine(rgb, full[:2], (size, size), flags=cv2.INTER_LINEAR)
            if rng.random() < 0.5:
                chip = chip[:, ::-1]
            gain, bias = rng.uniform(0.7, 1.3), rng.uniform(-25, 25)
            yield np.clip(chip.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)


# --- conversion ------------------------------------------------------------------------


def convert(fn: Any, calibration: list[np.ndarray] | None) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    if calibration is not None:
        def representative() -> Iterator[list[np.ndarray]]:
            for chip in calibration:
                yield [chip[None].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    data: bytes = conv.convert()
    return data


def run_tflite(path: Path, chips: np.ndarray) -> np.ndarray:
    from edge.perception.runtime import open_file

    model = open_file(path)
    return model.run(chips.astype(np.float32))[0]


def latency_ms(path: Path, n: int = 30, num_threads: int = 2) -> float:
    import time

    from edge.perception.runtime import open_file

    model = open_file(path, num_threads=num_threads)
    x = np.zeros(model.input_shape, np.float32)
    for _ in range(3):
        model.run(x)
    t0 = time.perf_counter()
    for _ in range(n):
        model.run(x)
    return (time.perf_counter() - t0) / n * 1e3


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    out: np.ndarray = np.sum(a * b, axis=-1)
    return out


def io_spec(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))

    def spec(d: dict[str, Any]) -> dict[str, Any]:
        scale, zero = d["quantization"]
        return {"name": d["name"], "shape": [int(v) for v in d["shape"]],
                "dtype": np.dtype(d["dtype"]).name,
                "quantization": None if scale == 0 else {"scale": float(scale),
                                                         "zero_point": int(zero)}}

    return ([spec(d) for d in it.get_input_details()],
            [spec(d) for d in it.get_output_details()])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(models_dir: Path, entries: dict[str, dict[str, Any]],
                   family: str = FAMILY) -> None:
    """Read-modify-write of ``family``'s entries only, under the lock build_detector.py also takes."""
    path = models_dir / "manifest.json"
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc: dict[str, Any] = (json.loads(path.read_text(encoding="utf-8")) if path.exists()
                               else {"schema": "edge.models/1", "models": {}})
        models = {k: v for k, v in doc.get("models", {}).items() if v.get("family") != family}
        models.update(entries)
        doc["models"] = dict(sorted(models.items()))
        tmp = models_dir / ".manifest.embedder.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(doc, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(models_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", "--models-dir", dest="models_dir", type=Path, default=HERE)
    ap.add_argument("--sources", type=Path, default=ROOT / ".cache" / "model-sources",
                    help="folder holding dlib_face_recognition_resnet_model_v1.dat")
    ap.add_argument("--testdata", type=Path, default=ROOT / ".cache/testdata")
    args = ap.parse_args(argv)
    import tensorflow as tf

    tf.random.set_seed(0)
    args.source = args.sources / SOURCE["file"]
    net = read_dlib_net(args.source)
    ops = fold(net)
    fn = tf_function(ops)

    faces = face_chips(args.testdata, args.models_dir)
    per_image = {n: sum(1 for f in faces if f[0] == n) for n, _ in CALIBRATION_IMAGES}
    print("calibration faces per image:", per_image)
    chips = list(augmented_chips(faces))
    print(f"calibration chips: {len(chips)}")
    check = np.stack(chips[:4])
    ref = np.stack([forward(net, c) for c in check])
    got = np.concatenate([fn(c[None].astype(np.float32)).numpy() for c in check])
    err = float(np.abs(ref - got).max())
    print(f"TensorFlow vs dlib_reader.forward: max abs diff {err:.2e}")
    if err > 1e-3:
        raise SystemExit("TensorFlow graph disagrees with the numpy reference")

    fp32_path = args.models_dir / FP32_FILE
    int8_path = args.models_dir / INT8_FILE
    fp32_path.write_bytes(convert(fn, None))
    int8_path.write_bytes(convert(fn, chips))
    f32 = run_tflite(fp32_path, check)
    i8 = run_tflite(int8_path, check)
    print(f"float TFLite vs reference cos min {cosine(f32, ref).min():.6f}; "
          f"int8 vs float cos min {cosine(i8, f32).min():.4f}")

    speed = {"float32": latency_ms(fp32_path), "int8": latency_ms(int8_path)}
    preferred = min(speed, key=lambda v: speed[v])
    print("CPU latency ms:", {k: round(v, 2) for k, v in speed.items()}, "->", preferred)

    SOURCE["sha256"] = sha256(args.source)
    build = ("make models  (models/build_embedder.py --sources .cache/model-sources "
             "--testdata .cache/testdata --out models)")
    pre = ("RGB uint8 chip 150x150 (dlib get_face_chip layout, padding 0.25) fed as float32 "
           f"pixel values 0..255; dlib's (x - mean_rgb {tuple(round(v, 3) for v in net.mean_rgb)}"
           ") / 256 is folded into the first convolution. Output: dlib's raw 128-D descriptor; "
           "L2-normalise before cosine.")
    from edge.perception.align import template_json

    common: dict[str, Any] = {
        "role": "embedder", "family": FAMILY, "preprocessing": pre,
        "alignment_template": template_json(), "embedding_size": 128,
        "chip_input": {"channel_order": "RGB", "mean": [0.0, 0.0, 0.0], "scale": 1.0},
        "source": dict(SOURCE), "licence": "CC0-1.0 (dlib face recognition model, Davis King)",
        **PROVENANCE,
        "build_command": build,
    }
    entries: dict[str, dict[str, Any]] = {}
    for path, variant, quant in (
        (fp32_path, "float32", "none"),
        (int8_path, "int8", f"full int8 (weights per-channel, activations, int8 I/O) by "
         f"TFLiteConverter; calibration: {len(chips)} aligned face chips from "
         f"{', '.join(f'{n} x{c}' for n, c in per_image.items() if c)} (faces found by "
         "BlazeFace, aligned by edge.perception.align) with shift/scale/rotation/flip/light "
         "augmentation, more copies of the faces no verification test uses"),
    ):
        inputs, outputs = io_spec(path)
        entry = {"file": path.name, "sha256": sha256(path), **common, "variant": variant,
                 "inputs": inputs, "outputs": outputs, "quantization": quant,
                 "cpu_preferred": cpu_preferred_by_arch(variant, variant == preferred),
                 "cpu_latency_ms": {"mean": round(speed[variant], 2),
                                    "runtime": "ai-edge-litert, 2 threads, build machine"}}
        if variant == "int8":
            entry["edgetpu_file"] = path.stem + "_edgetpu.tflite"
        entries[f"{FAMILY}_{'fp32' if variant == 'float32' else variant}"] = entry
    write_manifest(args.models_dir, entries)
    print("wrote", ", ".join(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
