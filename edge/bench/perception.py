"""Detector latency: every BlazeFace variant on the CPU, and a tiled 1080p frame.

Per model file: mean and p95 of 200 invokes after 20 warm-up ones, on
ai-edge-litert (or tflite-runtime) with 2 threads, XNNPACK as the runtime
applies it by default. The baseline is the as-shipped fp16 graph (the ``fp16``
variant: the package's file with only a signature added), measured in the
same process; ratios are variant / baseline. Then the whole detector
(letterbox, invoke, decode, NMS) on one image, and the tiled detector on a
1920x1080 frame (7 x 4 tiles of 384 px), every tile run (no motion gating).
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.bench.timing import testdata_dir, timed
from edge.perception.detector import BlazeFaceDetector, letterbox
from edge.perception.manifest import load_manifest
from edge.perception.runtime import TFLiteModel, available_cpus, open_file
from edge.perception.tiling import TiledDetector, TilingConfig
from edge.perception.types import RGBImage

FAMILIES = ("blazeface_full_range", "blazeface_short_range")




def _invokes(model: TFLiteModel, x: npt.NDArray[Any], n: int) -> tuple[float, float]:
    return timed(lambda: model.run(x), n, 20)


def _image(name: str, fallback_shape: tuple[int, int]) -> RGBImage:
    """A test photo when the test data is there, else a fixed random image."""
    folder = testdata_dir()
    path = folder / name
    if path.is_file():
        import cv2

        bgr = cv2.imread(str(path))
        if bgr is not None:
            return np.ascontiguousarray(bgr[:, :, ::-1])
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (*fallback_shape, 3), dtype=np.uint8)


def _frame_1080p() -> RGBImage:
    tex = _image("gravel.png", (512, 512))
    reps = (1080 // tex.shape[0] + 1, 1920 // tex.shape[1] + 1, 1)
    return np.ascontiguousarray(np.tile(tex, reps)[:1080, :1920])


def _no_tpu(library: str) -> object:
    raise ValueError("bench measures the CPU backend")


def run(args: argparse.Namespace | None = None, n: int = 200) -> None:
    manifest = load_manifest()
    photo = _image("t1.jpg", (640, 1024))
    print("model (CPU, 2 threads)                  mean ms   p95 ms   x baseline(fp16)")
    for family in FAMILIES:
        entries = {e.variant: e for e in manifest.family(family)}
        size = entries["float32"].inputs[0].shape[1]
        x = letterbox(photo, size)[0][None]
        models: dict[str, TFLiteModel] = {
            v: open_file(manifest.path(e), e) for v, e in sorted(entries.items())
        }
        base = _invokes(models["fp16"], x, n)
        for v, model in models.items():
            mean, p95 = base if v == "fp16" else _invokes(model, x, n)
            mark = " (cpu_preferred)" if entries[v].cpu_preferred else ""
            print(f"{entries[v].model_id + mark:40s} {mean:7.2f}  {p95:7.2f}   "
                  f"{mean / base[0]:5.2f}", flush=True)

    print("\nwhole detector, one image (letterbox + invoke + decode + NMS), full range:")
    frame = _frame_1080p()
    for variant in ("float32", "int8"):
        det = BlazeFaceDetector.from_models_dir(None, variant=variant, delegate_loader=_no_tpu)
        mean, p95 = timed(partial(det.detect, photo), 50, 5)
        print(f"  {det.model_id:38s} {mean:7.2f}  {p95:7.2f}  ({photo.shape[1]}x{photo.shape[0]})")
    for variant in ("float32", "int8"):
        det = BlazeFaceDetector.from_models_dir(None, variant=variant, delegate_loader=_no_tpu)
        tiled = TiledDetector(det)
        mean, p95 = timed(partial(tiled.detect, frame), 10, 1)
        print(f"  tiled 1080p, {tiled.last_tiles_run} tiles, {det.model_id:24s} "
              f"{mean:7.1f}  {p95:7.1f}  ({mean / tiled.last_tiles_run:.2f} ms/tile)")
    # The firmware's default on the CPU: one single-threaded detector per CPU, each taking
    # whole tiles, against one detector with the same number of XNNPACK threads.
    cpus = available_cpus()

    def detector(threads: int) -> BlazeFaceDetector:
        return BlazeFaceDetector.from_models_dir(None, variant="float32", delegate_loader=_no_tpu,
                                                 num_threads=threads)

    print(f"\ntiled 1080p, float32, {cpus} CPUs:")
    one = TiledDetector(detector(cpus))
    base_mean, base_p95 = timed(partial(one.detect, frame), 10, 1)
    print(f"  one detector, {cpus} threads                {base_mean:7.1f}  {base_p95:7.1f}   1.00")
    for layout in ("tiles", "strips"):  # strips: [detection] layout's CPU default
        workers = TiledDetector([detector(1) for _ in range(cpus)], TilingConfig(layout=layout))
        try:
            mean, p95 = timed(partial(workers.detect, frame), 10, 1)
        finally:
            workers.close()
        name = f"{cpus} workers, 1 thread each, {workers.last_tiles_run} {layout}"
        print(f"  {name:40s} {mean:7.1f}  {p95:7.1f}   {mean / base_mean:4.2f}")
