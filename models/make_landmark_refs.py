"""dlib's own 5-point landmarks and chips on the pinned test faces: tests/data/landmarks5_refs.json.

    venv=$(mktemp -d)/dlib-venv && python3.11 -m venv "$venv"
    "$venv"/bin/pip install dlib-bin==20.0.1.post1 ai-edge-litert==2.3.0 \\
        opencv-python-headless==5.0.0.93 numpy==2.4.6
    "$venv"/bin/python models/make_landmark_refs.py

(``dlib-bin`` is dlib's prebuilt wheel; it is not a project dependency and is
needed only here.) For every face in the test images that both dlib's HOG
detector and the firmware's BlazeFace find:

- ``hog_rect`` and ``points_hog``: dlib's rectangle and dlib's 5 points on it;
- ``keypoints``: BlazeFace's keypoints of the same face;
- ``mapped_rect`` and ``points_mapped``: the rectangle placed from those
  keypoints with the fit below (rounded to whole pixels, as dlib rectangles
  are) and dlib's 5 points on it: the device's own path;
- ``chip``: ``get_face_chip_details(points_hog, 150, 0.25)`` as a 2x3 frame ->
  chip affine, and the row and column mean profiles of the grey chip that
  dlib's ``extract_image_chip`` cuts (profiles, not pictures: no face images
  are committed).

``fit`` holds the two constants fitted here and copied into the firmware
(tests re-fit them from these faces): ``rect_mapping`` (BlazeFace keypoints ->
dlib rectangle, ``edge.perception.landmarks.KEYPOINTS_TO_DLIB``) and ``arcface_nose_base``
(where dlib's point 4, the base of the nose, sits in the ArcFace 112x112
frame; see ``edge.perception.align5``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from dlib_faces import FACE_IMAGES, SOURCES, TESTDATA, chip_matrix, load_rgb  # noqa: E402

from edge.perception.align5 import fit_arcface_nose_base  # noqa: E402
from edge.perception.analyzer import detect_with_close_up  # noqa: E402
from edge.perception.detector import BlazeFaceDetector  # noqa: E402
from edge.perception.landmarks import RectMapping, fit_rect_mapping  # noqa: E402

OUT = ROOT / "tests" / "data" / "landmarks5_refs.json"
SKIP = {"32bit.png"}  # the same photograph as obama2.jpg


def match(hog: tuple[int, int, int, int], boxes: list[tuple[float, ...]]) -> int | None:
    """Index of the BlazeFace box whose centre lies inside the HOG rectangle, nearest first."""
    left, top, right, bottom = hog
    cx, cy = (left + right) / 2, (top + bottom) / 2
    best, dist = None, float("inf")
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        bx, by = (x0 + x1) / 2, (y0 + y1) / 2
        d = (bx - cx) ** 2 + (by - cy) ** 2
        if left <= bx <= right and top <= by <= bottom and d < dist:
            best, dist = i, d
    return best


def main() -> int:
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(SOURCES / "shape_predictor_5_face_landmarks.dat"))
    blaze = BlazeFaceDetector.from_models_dir(HERE, variant="float32")

    def points(rgb: np.ndarray, rect: tuple[int, int, int, int]) -> tuple[Any, list[list[int]]]:
        shape = predictor(rgb, dlib.rectangle(*rect))
        return shape, [[p.x, p.y] for p in shape.parts()]

    faces: list[dict[str, Any]] = []
    for name in sorted(FACE_IMAGES):
        if name in SKIP:
            continue
        rgb = load_rgb(TESTDATA / name)
        hogs = detector(rgb, 1) or detector(rgb, 2)
        dets = detect_with_close_up(blaze, rgb)
        boxes = [tuple(float(v) for v in d.box) for d in dets]
        for r in sorted(hogs, key=lambda r: r.left()):
            hog = (r.left(), r.top(), r.right(), r.bottom())
            i = match(hog, boxes)
            if i is None:
                print(f"{name} {hog}: BlazeFace found no face here; skipped")
                continue
            shape, pts = points(rgb, hog)
            details = dlib.get_face_chip_details(shape, 150, 0.25)
            grey = np.asarray(dlib.get_face_chip(rgb, shape, 150, 0.25), np.float64).mean(axis=2)
            faces.append({
                "image": name,
                "hog_rect": list(hog),
                "points_hog": pts,
                "keypoints": [[float(v) for v in k] for k in dets[i].keypoints],
                "chip": {
                    "matrix": [[float(v) for v in row] for row in chip_matrix(details)],
                    "row_profile": [round(float(v), 2) for v in grey.mean(axis=1)],
                    "col_profile": [round(float(v), 2) for v in grey.mean(axis=0)],
                },
            })

    # The rounded constants are what the firmware carries; place the rectangles with them.
    rect_fit = RectMapping(**fit_rect_mapping([f["keypoints"] for f in faces],
                                              [f["hog_rect"] for f in faces]).as_dict())
    for f in faces:
        rgb = load_rgb(TESTDATA / f["image"])
        mapped = tuple(int(np.floor(v + 0.5)) for v in rect_fit.rect(f["keypoints"]))
        f["mapped_rect"] = list(mapped)
        f["points_mapped"] = points(rgb, mapped)[1]  # type: ignore[arg-type]
        print(f"{f['image']:24s} hog {f['hog_rect']} mapped {f['mapped_rect']}")
    nose = fit_arcface_nose_base([f["points_hog"] for f in faces], [f["keypoints"] for f in faces])

    doc = {
        "about": "dlib's own 5-point landmarks and chips on the pinned test faces; "
                 "made by models/make_landmark_refs.py (see its docstring for the command)",
        "dlib_version": dlib.__version__,
        "model": "shape_predictor_5_face_landmarks.dat (face_recognition_models 0.3.0)",
        "detector": {"hog": "dlib.get_frontal_face_detector(), upsample 1 (2 if none found)",
                     "blazeface": blaze.model_id},
        "chip": "dlib.get_face_chip_details(shape, 150, 0.25); profiles of "
                "dlib.get_face_chip(rgb, shape, 150, 0.25) averaged over channels",
        "fit": {"rect_mapping": rect_fit.as_dict(),
                "arcface_nose_base": [round(float(v), 3) for v in nose]},
        "faces": faces,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, OUT)
    print(f"fit: {doc['fit']}")
    print(f"wrote {len(faces)} faces to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
