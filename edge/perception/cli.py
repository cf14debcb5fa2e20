"""``edge embed`` and ``edge verify``: faces and embeddings from image files.

    edge embed IMAGE... [--json] [--variant float|int8] [--embedder FAMILY]
    edge verify A B [--json] [--variant float|int8] [--embedder FAMILY]

Both run the device's own pipeline (``FaceAnalyzer``): the same detector,
aligner, quality figure and embedder as live recognition and enrolment.
Models are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import EnrolmentError
from edge.perception.imageio import load_image
from edge.perception.manifest import DEFAULT_EMBEDDER
from edge.perception.types import KEYPOINT_NAMES

if TYPE_CHECKING:
    from edge.perception.analyzer import AnalyzedFace, FaceAnalyzer


def _analyzer(args: argparse.Namespace) -> FaceAnalyzer:
    from edge.perception.analyzer import FaceAnalyzer

    return FaceAnalyzer.from_models_dir(args.models_dir, variant=args.variant,
                                        family=args.embedder)


def face_json(a: AnalyzedFace) -> dict[str, Any]:
    d = a.face.detection
    assert a.face.embedding is not None
    return {
        "box": [round(v, 2) for v in d.box],
        "keypoints": {n: [round(float(x), 2), round(float(y), 2)]
                      for n, (x, y) in zip(KEYPOINT_NAMES, d.keypoints, strict=True)},
        "score": round(d.score, 4),
        "quality": round(a.quality.overall, 4),
        "quality_parts": a.quality.as_dict(),
        "embedding": [round(float(v), 6) for v in a.face.embedding],
    }


def _models_json(analyzer: FaceAnalyzer) -> dict[str, Any]:
    return {"detector": analyzer.detector.model_id, "embedder": analyzer.embedder.model_id,
            "backend": {"detector": analyzer.detector.backend,
                        "embedder": analyzer.embedder.backend},
            "embedding_space": getattr(analyzer.embedder, "space_id", None)}


def cmd_embed(args: argparse.Namespace) -> int:
    images = [load_image(p) for p in args.images]  # fail on a bad file before model loading
    analyzer = _analyzer(args)
    results: list[dict[str, Any]] = [
        {"image": str(p), "faces": [face_json(a) for a in analyzer.analyze_detailed(img)]}
        for p, img in zip(args.images, images, strict=True)
    ]
    if args.json:
        json.dump({"models": _models_json(analyzer), "images": results}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    for r in results:
        print(f"{r['image']}: {len(r['faces'])} face(s)")
        for i, f in enumerate(r["faces"]):
            q = f["quality_parts"]
            print(f"  face {i}: box={f['box']} score={f['score']:.3f} "
                  f"quality={f['quality']:.3f} (size {q['size']:.2f}, sharpness "
                  f"{q['sharpness']:.2f}, pose {q['pose']:.2f})")
            print("    keypoints: " + ", ".join(f"{n}={xy}" for n, xy in f["keypoints"].items()))
            print("    embedding: " + " ".join(f"{v:.4f}" for v in f["embedding"]))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    images = [load_image(args.a), load_image(args.b)]
    analyzer = _analyzer(args)
    faces = []
    for path, img in zip((args.a, args.b), images, strict=True):
        face = analyzer.main_face(img)
        if face is None or face.embedding is None:
            raise EnrolmentError(f"{path}: no face found")
        faces.append(face)
    assert faces[0].embedding is not None and faces[1].embedding is not None
    score = float(np.dot(faces[0].embedding, faces[1].embedding))
    if args.json:
        out = {"a": str(args.a), "b": str(args.b), "similarity": round(score, 6),
               "quality": [round(f.quality, 4) for f in faces], **_models_json(analyzer)}
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"{score:.4f}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", choices=("float", "int8"), default=None,
                   help="pin the model variant (default: Edge TPU if present, else fastest CPU)")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="folder holding manifest.json (default: the installed models)")
    p.add_argument("--embedder", default=DEFAULT_EMBEDDER, metavar="FAMILY",
                   help=f"recogniser family in the manifest (default: {DEFAULT_EMBEDDER})")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "embed", help="faces and L2-normalised embeddings of images",
        description="For each face in each image: box, keypoints, detection score, "
                    "quality and embedding.")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    _common(p)
    p.set_defaults(func=cmd_embed)
    v = subparsers.add_parser(
        "verify", help="similarity of the main (largest) face in A and in B",
        description="Cosine similarity (-1..1) of the largest face of each image "
                    "(ties: the one nearer the centre).")
    v.add_argument("a", type=Path, metavar="A")
    v.add_argument("b", type=Path, metavar="B")
    _common(v)
    v.set_defaults(func=cmd_verify)


__all__ = ["cmd_embed", "cmd_verify", "load_image", "register"]
