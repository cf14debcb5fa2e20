"""What the builds of the ArcFace-aligned recognisers share (MobileFace, MobileFaceNet).

* calibration chips: the pinned test faces (``.cache/testdata``, never the
  evaluation set) found by the firmware's BlazeFace detector and cut by the
  firmware's own ArcFace 112x112 aligner, then augmented (mirror, shift,
  scale, rotation, brightness and contrast);
* float32 and full-integer int8 conversion of a ``tf.function`` taking one
  normalised 112x112x3 chip (int8 input and output; weights per channel);
* the operator list of a file, checked against the Edge TPU's mappable ops;
* CPU latency (ai-edge-litert, one and two threads) and the manifest entries.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

# Coral's "supported operations" table (ops the Edge TPU compiler can map), for
# the ops a recogniser uses; QUANTIZE/DEQUANTIZE only appear at a float boundary.
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL",
    "PAD", "PRELU", "QUANTIZE", "RELU", "RELU6", "RESHAPE", "SQUEEZE", "SUB",
})
CHIP = 112
# (x - 127.5) / 128: the normalisation both families were trained with, applied by the
# firmware (manifest ``chip_input``) so that the graphs start at their first convolution.
CHIP_INPUT: dict[str, Any] = {"channel_order": "RGB", "mean": [127.5, 127.5, 127.5],
                              "scale": 0.0078125}
RUNTIME = "ai-edge-litert 2.3, XNNPACK, build machine (2 shared x86 cores)"


def normalise(chips: np.ndarray) -> np.ndarray:
    """uint8 RGB chips -> the float input the graphs take (as the firmware's ChipInput does)."""
    mean = np.asarray(CHIP_INPUT["mean"], np.float32)
    return ((chips.astype(np.float32) - mean) * np.float32(CHIP_INPUT["scale"])).astype(np.float32)


def arcface_faces(testdata: Path, models_dir: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(image, RGB, 2x3 affine to the ArcFace chip) for each calibration face."""
    from build_embedder import face_chips

    from edge.perception.align import ARCFACE_112, TemplateAligner

    aligner = TemplateAligner(template=ARCFACE_112)
    return face_chips(testdata, models_dir, transform=aligner.transform)


def calibration_chips(testdata: Path, models_dir: Path, per_weight: int = 10,
                      seed: int = 0) -> tuple[list[np.ndarray], dict[str, int]]:
    """Augmented aligned chips (uint8) and how many faces each image gave."""
    from build_embedder import CALIBRATION_IMAGES, augmented_chips

    faces = arcface_faces(testdata, models_dir)
    per_image = {n: sum(1 for f in faces if f[0] == n) for n, _ in CALIBRATION_IMAGES}
    chips = list(augmented_chips(faces, seed=seed, size=CHIP, per_weight=per_weight))
    # The mirror image of every chip too: a face and its mirror are equally likely.
    chips += [c[:, ::-1].copy() for c in chips[:: 2]]
    return chips, per_image


def face_set(testdata: Path, models_dir: Path) -> np.ndarray:
    """Unaugmented aligned chips (uint8) of every calibration face."""
    import cv2

    faces = arcface_faces(testdata, models_dir)
    chips = [cv2.warpAffine(rgb, m, (CHIP, CHIP), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT) for _, rgb, m in faces]
    return np.stack(chips)


def convert(fn: Any, calibration: list[np.ndarray] | None,
            prepare: Callable[[np.ndarray], np.ndarray] = normalise,
            ranges: Callable[[bytes], bytes] | None = None) -> bytes:
    """float32 TFLite, or full int8 (int8 I/O, per-channel weights) calibrated on uint8 chips.

    ``ranges`` (e.g. ``lp_ranges``) rewrites the calibrated activation ranges
    before quantisation; without it the converter quantises each activation over
    the min/max it saw.
    """
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    if calibration is not None:
        def representative() -> Iterator[list[np.ndarray]]:
            for chip in calibration:
                yield [prepare(chip[None])]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    if calibration is not None and ranges is not None:
        from tensorflow.lite.python.convert import mlir_quantize

        # The converter's own two steps, split: calibration only (a float model carrying
        # each activation's min/max), then the same MLIR quantiser on the edited ranges.
        conv._experimental_calibrate_only = True
        quantised: bytes = mlir_quantize(ranges(conv.convert()), input_data_type=tf.int8,
                                         output_data_type=tf.int8)
        return quantised
    data: bytes = conv.convert()
    return data


# TFLite builtin operator codes whose output shares its input's quantisation.
_SAME_RANGE_OPS = frozenset({22, 34, 60})  # RESHAPE, PAD, PADV2
_RANGE_BINS = 4096


def _lp_error(x: np.ndarray, count: np.ndarray, lo: float, hi: float, p: float) -> float:
    """Sum of count * |q(x) - x|^p for int8 asymmetric quantisation over [lo, hi]."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # the quantiser always keeps 0 exact
    step = (hi - lo) / 255.0
    zero = np.round(-128 - lo / step)
    q = (np.clip(np.round(x / step) + zero, -128, 127) - zero) * step
    return float(np.sum(count * np.abs(q - x) ** p))


def lp_range(lo: float, hi: float, hist: np.ndarray, p: float) -> tuple[float, float]:
    """The clipped range [lo', hi'] within [lo, hi] of least Lp quantisation error.

    ``hist``: the tensor's values over the calibration chips, ``_RANGE_BINS`` bins
    over [lo, hi]. Each end is searched over 0.2 ... 1.0 of its calibrated value,
    the upper then the lower, twice; a non-negative tensor (ReLU6) keeps lo = 0.
    """
    edges = np.linspace(lo, hi, _RANGE_BINS + 1)
    x = 0.5 * (edges[1:] + edges[:-1])
    grid = np.linspace(0.2, 1.0, 81)
    new_lo, new_hi = lo, hi
    for _ in range(2):
        if hi > 0:
            new_hi = min((_lp_error(x, hist, new_lo, hi * g, p), hi * g) for g in grid)[1]
        if lo < 0:
            new_lo = min((_lp_error(x, hist, lo * g, new_hi, p), lo * g) for g in grid)[1]
    return new_lo, new_hi


def lp_ranges(chips: list[np.ndarray], p: float,
              prepare: Callable[[np.ndarray], np.ndarray] = normalise
              ) -> Callable[[bytes], bytes]:
    """A ``convert`` ``ranges`` step: each activation's range clipped to least Lp error.

    Min/max calibration sizes a tensor's int8 step by its rarest extreme value over
    every augmented chip; clipping those few values costs less than the coarser
    step costs everyone else. Per tensor (model input and output excepted: their
    ranges are the chip normalisation's and the embedding's own), the values of the
    calibrated float model over ``chips`` are histogrammed and the range of least
    sum |error|^p chosen (``lp_range``); p > 2 weighs the clipped tails more than
    mean squared error does (Nahshan et al. 2019, "Loss aware post-training
    quantization"). PAD and RESHAPE outputs keep their input's range.
    """
    def edit(calibrated: bytes) -> bytes:
        from ai_edge_litert.interpreter import Interpreter
        from tensorflow.lite.tools import flatbuffer_utils

        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
        graph = model.subgraphs[0]
        io = set(graph.inputs) | set(graph.outputs)
        bounds = {i: (float(t.quantization.min[0]), float(t.quantization.max[0]))
                  for i, t in enumerate(graph.tensors)
                  if t.quantization is not None and t.quantization.min is not None
                  and len(t.quantization.min) == 1
                  and t.quantization.max[0] > t.quantization.min[0]}
        tensors = [i for i in bounds if i not in io]
        hist = {i: np.zeros(_RANGE_BINS) for i in tensors}
        interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
        interp.allocate_tensors()
        source = interp.get_input_details()[0]["index"]
        for chip in chips:
            interp.set_tensor(source, prepare(chip[None]))
            interp.invoke()
            for i in tensors:
                hist[i] += np.histogram(interp.get_tensor(i), _RANGE_BINS, bounds[i])[0]
        chosen = {i: lp_range(*bounds[i], hist[i], p) for i in tensors}
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) in _SAME_RANGE_OPS:
                src = op.inputs[0]
                if src in bounds:
                    chosen[op.outputs[0]] = chosen.get(src, bounds[src])
        for i, (lo, hi) in chosen.items():
            graph.tensors[i].quantization.min = np.asarray([lo], np.float32)
            graph.tensors[i].quantization.max = np.asarray([hi], np.float32)
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))

    return edit


def op_list(path: Path) -> list[str]:
    """Sorted distinct operator names of a TFLite file."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return sorted({d["op_name"] for d in it._get_ops_details()})


def check_edgetpu_ops(path: Path) -> list[str]:
    ops = op_list(path)
    foreign = [o for o in ops if o not in EDGETPU_OPS]
    if foreign:
        raise SystemExit(f"{path.name}: ops the Edge TPU cannot map: {foreign}")
    return ops


def run(path: Path, chips: np.ndarray,
        prepare: Callable[[np.ndarray], np.ndarray] = normalise) -> np.ndarray:
    from edge.perception.runtime import open_file

    out: np.ndarray = open_file(path).run(prepare(chips))[0]
    return out


def latency(path: Path, n: int = 100) -> dict[str, float]:
    """Median ms of one chip after warm-up, one and two threads (the median resists the
    pre-emptions of a shared build machine better than the mean)."""
    from edge.perception.runtime import open_file

    out = {}
    for threads in (1, 2):
        model = open_file(path, num_threads=threads)
        x = np.zeros(model.input_shape, np.float32)
        for _ in range(5):
            model.run(x)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            model.run(x)
            times.append(time.perf_counter() - t0)
        out[f"median_{threads}_thread{'s' if threads > 1 else ''}"] = round(
            float(np.median(times)) * 1e3, 2)
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    out: np.ndarray = np.sum(a * b, axis=-1)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_pair(
    *, family: str, models_dir: Path, fp32: Path, int8: Path, common: Mapping[str, Any],
    int8_quantization: str, chip_input: Mapping[str, Any] = CHIP_INPUT,
) -> dict[str, dict[str, Any]]:
    """Manifest entries of one family (float32 + int8), measured here, written atomically."""
    from build_embedder import io_spec, write_manifest

    from edge.perception.align import arcface_template_json
    from edge.perception.manifest import cpu_preferred_by_arch

    speed = {"float32": latency(fp32), "int8": latency(int8)}
    # The CPU runs float: int8 costs accuracy (models/measure_int8.py) and saves little or,
    # with PRELU, nothing on the CPU; int8 is for the Edge TPU. The same on every architecture.
    preferred = "float32"
    entries: dict[str, dict[str, Any]] = {}
    for path, variant, quant in ((fp32, "float32", "none"), (int8, "int8", int8_quantization)):
        inputs, outputs = io_spec(path)
        entry: dict[str, Any] = {
            "file": path.name, "sha256": sha256(path), "role": "embedder", "family": family,
            "variant": variant, "inputs": inputs, "outputs": outputs, "quantization": quant,
            **common,
            "alignment_template": arcface_template_json(), "chip_input": dict(chip_input),
            "ops": op_list(path),
            "cpu_preferred": cpu_preferred_by_arch(variant, variant == preferred),
            "cpu_latency_ms": {**speed[variant], "runtime": RUNTIME},
        }
        if variant == "int8":
            entry["edgetpu_file"] = path.stem + "_edgetpu.tflite"
        entries[path.stem] = entry
    write_manifest(models_dir, entries, family)
    return entries


__all__ = [
    "CHIP",
    "CHIP_INPUT",
    "EDGETPU_OPS",
    "calibration_chips",
    "check_edgetpu_ops",
    "convert",
    "cosine",
    "face_set",
    "latency",
    "lp_ranges",
    "normalise",
    "op_list",
    "run",
    "write_pair",
]
