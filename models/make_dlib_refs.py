"""Compute dlib's own descriptors of the test faces once: tests/data/dlib_refs.json.

    .venv-build/bin/python models/make_dlib_refs.py   (needs the dlib wheel)

For every face BlazeFace finds in the test images, the chip is cut with
dlib's own 5-point alignment when dlib's HOG detector finds the face too, and
with our BlazeFace template otherwise (masked faces, the cameraman). The
2x3 affine is stored with full precision, so tests rebuild the identical chip
with ``cv2.warpAffine`` (bilinear, black border) without dlib; the chip's
sha256 proves they did. The descriptor is dlib's
``face_recognition_model_v1.compute_face_descriptor`` on that very chip.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from dlib_faces import DlibPipeline, warp  # noqa: E402
from fit_alignment import collect  # noqa: E402

from edge.perception.align import DEFAULT_KEYPOINT_SET, chip_transform  # noqa: E402

OUT = ROOT / "tests" / "data" / "dlib_refs.json"


def main() -> int:
    import dlib

    pipe = DlibPipeline()
    samples, images = collect(pipe)
    faces = []
    for s in samples:
        if s.dlib_matrix is not None:
            matrix, how = s.dlib_matrix, "dlib_5point"
        else:
            matrix, how = chip_transform(s.keypoints, DEFAULT_KEYPOINT_SET), "blazeface_template"
        chip = warp(images[s.image], matrix)
        desc = pipe.descriptor(chip)
        faces.append({
            "image": s.image,
            "identity": s.identity,
            "alignment": how,
            "center": [round(float(v), 1) for v in s.keypoints[:4].mean(axis=0)],
            "matrix": [[float(v) for v in row] for row in matrix],
            "chip_sha256": hashlib.sha256(chip.tobytes()).hexdigest(),
            "descriptor": [float(v) for v in desc],
        })
        print(f"{s.image:26s} {s.identity:12s} {how:18s} |d|={float((desc**2).sum())**0.5:.3f}")
    doc = {
        "about": "dlib's own descriptors of the test faces; made by models/make_dlib_refs.py",
        "dlib_version": dlib.__version__,
        "model": "dlib_face_recognition_resnet_model_v1.dat (face_recognition_models 0.3.0)",
        "chip": "cv2.warpAffine(rgb, matrix, (150, 150), INTER_LINEAR, BORDER_CONSTANT 0)",
        "faces": faces,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, OUT)
    print(f"wrote {len(faces)} faces to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
