"""Landmarks and alignment latency: dlib's 5-point predictor (numpy port) per face.

On t1.jpg (a group photo, faces about 100 px wide) every face BlazeFace finds
is aligned by each aligner of ``edge.perception.align5.ALIGNERS``; rows give
the mean and p95 per face of ``n`` rounds: the landmark predictor alone
(``ShapePredictor.predict`` on the RGB frame), and each whole ``align`` call
(rectangle, landmarks, transform, chip). The last column is process CPU time
per face, which a machine shared with other jobs inflates less than wall time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

from edge.bench.timing import testdata_dir, timed
from edge.perception.align5 import ALIGNERS, Dlib5Aligner, make_aligner
from edge.perception.analyzer import detect_with_close_up
from edge.perception.cli import load_image
from edge.perception.detector import BlazeFaceDetector
from edge.perception.types import Aligner, FloatArray, RGBImage


def _align_all(aligner: Aligner, image: RGBImage, faces: list[FloatArray]) -> None:
    for kp in faces:
        aligner.align(image, kp)


def run(args: argparse.Namespace | None = None, n: int = 50) -> None:
    path = testdata_dir() / "t1.jpg"
    if not path.is_file():
        print("(landmarks skipped: run `make testdata`)")
        return
    image = load_image(path)
    faces = [d.keypoints for d in detect_with_close_up(
        BlazeFaceDetector.from_models_dir(variant="float32"), image)]
    dlib5 = make_aligner("dlib5")
    assert isinstance(dlib5, Dlib5Aligner)
    rows: list[tuple[str, Callable[[], object]]] = [
        ("dlib5 landmarks only", lambda: [dlib5.landmarks(image, kp) for kp in faces])]
    rows += [(f"align {name}", partial(_align_all, make_aligner(name), image, faces))
             for name in ALIGNERS]
    for _, fn in rows:  # warm-up
        fn()
    print(f"t1.jpg, {len(faces)} faces (numpy, 1 thread)   mean ms/face  p95 ms/face  cpu ms/face")
    for name, fn in rows:
        cpu0 = time.process_time()
        mean, p95 = timed(fn, n, warmup=0)
        cpu = (time.process_time() - cpu0) * 1e3 / n
        k = len(faces)
        print(f"{name:36s} {mean / k:10.3f} {p95 / k:12.3f} {cpu / k:12.3f}")
