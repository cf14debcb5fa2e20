#!/usr/bin/env python3
"""Measure the embedder's model card and write it into ``models/manifest.json``.

Data set ``edge-pinned-test-faces/1``: the real faces of the pinned test images
(``tests/fetch_testdata.py``: face_recognition 1.3.0 sdist, insightface 2.1
sdist, scikit-image 0.26.0 wheel), labelled by identity:

    obama        obama.jpg obama2.jpg obama3.jpg obama_partial_face.jpg obama_partial_face2.jpg
    biden        biden.jpg
    tom_hanks    Tom_Hanks_54745.png
    astronaut    astronaut.png            (Eileen Collins)
    cameraman    camera.png
    t1_person_1..6  t1.jpg                (six people, numbered left to right)

``32bit.png`` is left out: it is the same photograph as ``obama2.jpg`` (similarity
1.00), which would add a trivial genuine pair. ``mask_*.jpg`` are listed as
considered; the detector finds no face in them.

Each face is found with the float detector and aligned once; the chips go
through the float and the int8 embedder, so the two differ only in the
embedder. Every pair of faces is compared (cosine of L2-normalised
descriptors): same identity = genuine, different = impostor.

Threshold policy (recorded in the card):
- ``threshold_floor``: the highest impostor similarity seen with either embedder,
  plus a margin of 0.01, rounded up to 0.01. No configuration or bundle may go lower.
- ``threshold`` (recommended): the midpoint between the highest impostor and the
  lowest genuine similarity, rounded up to 0.01, never below the floor.

The set is small; the card says so and gives the 95% upper bound of the false
match rate (Clopper-Pearson), which is what a regulator should read.

Run with the project venv: ``.venv/bin/python models/model_card.py [--dry-run]``.
Only ``model_cards.<family>`` in the manifest is rewritten (under the flock the
build scripts take on ``manifest.lock``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import itertools
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from edge.fsutil import atomic_write  # noqa: E402

FAMILY = "dlib_resnet_v1"
DATASET = "edge-pinned-test-faces/1"
SOURCES = ("face_recognition==1.3.0 (sdist tests/test_images)",
           "insightface==2.1 (sdist insightface/data/images)",
           "scikit-image==0.26.0 (wheel skimage/data)")
# file -> identity label; t1.jpg: one label per face, left to right, by the face centre (x, y) in pixels
T1_FACES: dict[str, tuple[float, float]] = {
    "t1_person_1": (109, 332), "t1_person_2": (319, 219), "t1_person_3": (513, 346),
    "t1_person_4": (777, 410), "t1_person_5": (934, 138), "t1_person_6": (1174, 342),
}
IDENTITIES: dict[str, str | dict[str, tuple[float, float]]] = {
    "obama.jpg": "obama", "obama2.jpg": "obama", "obama3.jpg": "obama",
    "obama_partial_face.jpg": "obama", "obama_partial_face2.jpg": "obama",
    "biden.jpg": "biden", "Tom_Hanks_54745.png": "tom_hanks",
    "astronaut.png": "astronaut", "camera.png": "cameraman",
    "t1.jpg": T1_FACES,
}
CENTRE_TOLERANCE = 40.0  # pixels between a detected face centre and its labelled one
EXCLUDED = {"32bit.png": "same photograph as obama2.jpg (duplicate)"}
NO_FACE = ("mask_black.jpg", "mask_blue.jpg", "mask_green.jpg", "mask_white.jpg")
MIN_QUALITY = 0.3  # edge.config TrackingConfig.min_quality default: faces below are never embedded
STEP = 0.01
MARGIN = 0.01  # between the highest impostor score seen and the floor


@dataclass(frozen=True)
class FaceRow:
    file: str
    identity: str
    quality: float


def load_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read {path}")
    return np.ascontiguousarray(img[:, :, ::-1])


def label_faces(name: str, label: str | dict[str, tuple[float, float]],
                boxes: list[tuple[float, float, float, float]]) -> list[str | None]:
    """One label per detected face (None: a face that is not in the data set definition)."""
    if isinstance(label, str):
        if len(boxes) != 1:
            raise SystemExit(f"{name}: expected one face, found {len(boxes)}")
        return [label]
    out: list[str | None] = []
    for x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        near = [k for k, (rx, ry) in label.items() if math.hypot(cx - rx, cy - ry) <= CENTRE_TOLERANCE]
        out.append(near[0] if near else None)
    return out


def collect(testdata: Path, models_dir: Path) -> tuple[list[FaceRow], np.ndarray, dict[str, str], list[str]]:
    """Faces with labels, their aligned chips, sha256 of every file used, labelled faces not found."""
    from edge.perception.analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer.from_models_dir(models_dir, "float")
    rows: list[FaceRow] = []
    chips: list[np.ndarray] = []
    hashes: dict[str, str] = {}
    missed: list[str] = []
    for name, label in IDENTITIES.items():
        path = testdata / name
        hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        faces = analyzer.analyze_detailed(load_rgb(path))
        labels = label_faces(name, label, [f.face.detection.box for f in faces])
        for f, lab in zip(faces, labels, strict=True):
            if lab is None:
                raise SystemExit(f"{name}: face at {f.face.detection.box} is not in the data set definition")
            rows.append(FaceRow(name, lab, round(float(f.face.quality), 3)))
            chips.append(f.chip)
        if isinstance(label, dict):
            missed += sorted(set(label) - {lab for lab in labels if lab is not None})
    for name in NO_FACE:
        path = testdata / name
        hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        if analyzer.analyze(load_rgb(path)):
            raise SystemExit(f"{name}: a face was found; update the data set definition")
    if len({r.identity for r in rows}) < 2 or not any(
            a.identity == b.identity for a, b in itertools.combinations(rows, 2)):
        raise SystemExit("the detector found too few faces for genuine and impostor pairs")
    return rows, np.stack(chips), hashes, missed


SIZE_WIDTHS = (100, 70, 50, 35)  # face box widths in pixels: boulevard faces are 30-100 px
SIZE_PROBES = ("obama2.jpg", "obama3.jpg", "obama_partial_face2.jpg")
SIZE_IMPOSTORS = ("biden.jpg", "astronaut.png", "camera.png", "Tom_Hanks_54745.png")


def size_sensitivity(testdata: Path, models_dir: Path) -> list[dict[str, Any]]:
    """Similarity to a full-size enrolment (obama.jpg) as probes shrink to street-camera sizes.

    Each probe photo is scaled so its face box has the given width and pasted on a grey
    canvas, then detected, aligned and embedded again (float models). Impostors are
    scaled the same way and compared with the same enrolment.
    """
    import cv2

    from edge.perception.analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer.from_models_dir(models_dir, "float")
    enrolled = analyzer.best_face(load_rgb(testdata / "obama.jpg"))
    ref = None if enrolled is None else enrolled.embedding
    if ref is None:
        raise SystemExit("obama.jpg: no face found for the enrolment")

    def at_width(name: str, width: int) -> float | None:
        img = load_rgb(testdata / name)
        face = analyzer.best_face(img)
        if face is None:
            return None
        s = width / face.detection.width
        small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        h, w = small.shape[:2]
        canvas = np.full((max(400, h + 20), max(600, w + 20), 3), 90, np.uint8)
        canvas[10:10 + h, 10:10 + w] = small
        found = analyzer.best_face(canvas)
        if found is None or found.embedding is None:
            return None
        return float(found.embedding @ ref)

    out = []
    for width in SIZE_WIDTHS:
        genuine = [at_width(n, width) for n in SIZE_PROBES]
        impostor = [at_width(n, width) for n in SIZE_IMPOSTORS]
        g = [v for v in genuine if v is not None]
        i = [v for v in impostor if v is not None]
        out.append({"face_width_px": width, "genuine_found": len(g), "genuine_probes": len(genuine),
                    "genuine_min": round(min(g), 4) if g else None,
                    "impostor_found": len(i), "impostor_max": round(max(i), 4) if i else None})
    return out


def clopper_pearson_upper(k: int, n: int, conf: float = 0.95) -> float:
    """One-sided upper bound of a binomial rate (bisection on the CDF)."""
    if n == 0:
        return 1.0
    if k >= n:
        return 1.0
    alpha = 1.0 - conf

    def cdf(p: float) -> float:
        return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))

    lo, hi = k / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if cdf(mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def pairs(rows: list[FaceRow], sims: np.ndarray, min_quality: float = 0.0) -> tuple[list[float], list[float]]:
    genuine: list[float] = []
    impostor: list[float] = []
    for i, j in itertools.combinations(range(len(rows)), 2):
        if rows[i].quality < min_quality or rows[j].quality < min_quality:
            continue
        (genuine if rows[i].identity == rows[j].identity else impostor).append(float(sims[i, j]))
    return genuine, impostor


def closest_impostors(rows: list[FaceRow], sims: np.ndarray, n: int = 3) -> list[dict[str, Any]]:
    """The impostor pairs that came nearest to a false match, for the card's reader."""
    found = [(float(sims[i, j]), i, j) for i, j in itertools.combinations(range(len(rows)), 2)
             if rows[i].identity != rows[j].identity]
    return [{"similarity": round(s, 4), "faces": [rows[i].identity, rows[j].identity],
             "qualities": [rows[i].quality, rows[j].quality]}
            for s, i, j in sorted(found, reverse=True)[:n]]


def rates(genuine: list[float], impostor: list[float], t: float) -> dict[str, Any]:
    fm = sum(s >= t for s in impostor)
    tm = sum(s >= t for s in genuine)
    return {"threshold": t,
            "false_match_rate": fm / len(impostor), "false_matches": fm, "impostor_pairs": len(impostor),
            "false_match_rate_upper_95": round(clopper_pearson_upper(fm, len(impostor)), 4),
            "true_match_rate": tm / len(genuine), "true_matches": tm, "genuine_pairs": len(genuine)}


def up(x: float) -> float:
    return round(math.ceil(round(x / STEP, 6)) * STEP, 2)


def measure(testdata: Path, models_dir: Path, today: str) -> dict[str, Any]:
    from edge.perception.embedder import ManifestEmbedder
    from edge.perception.manifest import load_manifest

    rows, chips, hashes, missed = collect(testdata, models_dir)
    manifest = load_manifest(models_dir)
    per_variant: dict[str, dict[str, Any]] = {}
    scores: dict[str, tuple[list[float], list[float], list[float], list[float]]] = {}
    for variant in ("float32", "int8"):
        emb = ManifestEmbedder.from_models_dir(models_dir, variant=variant, family=FAMILY).embed(chips)
        sims = emb @ emb.T
        g, i = pairs(rows, sims)
        gq, iq = pairs(rows, sims, MIN_QUALITY)
        scores[variant] = (g, i, gq, iq)
        entry = manifest.variant(FAMILY, variant)
        per_variant[variant] = {"model_id": entry.model_id, "file": entry.file, "sha256": entry.sha256,
                                "genuine_min": round(min(g), 4), "impostor_max": round(max(i), 4),
                                "genuine_mean": round(float(np.mean(g)), 4),
                                "impostor_mean": round(float(np.mean(i)), 4),
                                "closest_impostors": closest_impostors(rows, sims)}
    worst_impostor = max(max(s[1]) for s in scores.values())
    worst_genuine = min(min(s[0]) for s in scores.values())
    floor = up(worst_impostor + MARGIN)
    threshold = max(floor, up((worst_impostor + worst_genuine) / 2))
    for variant, (g, i, gq, iq) in scores.items():
        per_variant[variant]["at_threshold"] = rates(g, i, threshold)
        per_variant[variant]["at_floor"] = rates(g, i, floor)
        per_variant[variant][f"at_threshold_quality_ge_{MIN_QUALITY}"] = rates(gq, iq, threshold)
    ref = per_variant["float32"]["at_threshold"]
    det = manifest.variant("blazeface_full_range", "float32")
    identities = sorted({r.identity for r in rows})
    import ai_edge_litert

    return {
        "family": FAMILY,
        "threshold": threshold,
        "threshold_floor": floor,
        "similarity": "cosine of L2-normalised 128-D descriptors",
        "false_match_rate": ref["false_match_rate"],
        "false_matches": ref["false_matches"],
        "impostor_pairs": ref["impostor_pairs"],
        "false_match_rate_upper_95": ref["false_match_rate_upper_95"],
        "true_match_rate": ref["true_match_rate"],
        "true_matches": ref["true_matches"],
        "genuine_pairs": ref["genuine_pairs"],
        "gallery_size": len(identities),
        "gallery": "one identity per label; every face compared with every other (1:1 pairs)",
        "variants": per_variant,
        "size_sensitivity": {
            "enrolment": "obama.jpg (full size)", "probes": list(SIZE_PROBES),
            "impostors": list(SIZE_IMPOSTORS), "models": "float32",
            "by_face_width": size_sensitivity(testdata, models_dir),
        },
        "dataset": {
            "name": DATASET,
            "sources": list(SOURCES),
            "files": [{"file": f, "sha256": hashes[f]} for f in sorted(hashes)],
            "faces": [{"file": r.file, "identity": r.identity, "quality": r.quality} for r in rows],
            "identities": identities,
            "excluded": EXCLUDED,
            "no_face_found": list(NO_FACE),
            "labelled_faces_not_detected": missed,
        },
        "policy": ("threshold_floor: highest impostor similarity of either embedder plus 0.01, rounded up"
                   " to 0.01; threshold: midpoint of highest impostor and lowest genuine similarity,"
                   " rounded up to 0.01, not below the floor"),
        "limitations": (
            f"{len(rows)} faces of {len(identities)} people, {ref['genuine_pairs']} genuine and"
            f" {ref['impostor_pairs']} impostor pairs: far too few to certify an operational false match"
            " rate (read false_match_rate_upper_95). The closest impostors (variants.*.closest_impostors)"
            " are faces of one group photo (t1.jpg: about 100 px faces, same camera and light, some"
            " turned away), the conditions of a street camera. One photograph per person except Obama, so"
            " the true match rate says little about ageing, lighting or pose. Re-measure on an evaluation"
            " set fit for the deployment, with its demographic breakdown, before lowering the floor."
        ),
        "measured_with": {
            "script": "models/model_card.py",
            "detector": {"model_id": det.model_id, "sha256": det.sha256},
            "aligner": "edge.perception.align.TemplateAligner",
            "runtime": f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}",
            "numpy": np.__version__,
        },
        "date": today,
    }


@contextlib.contextmanager
def locked(manifest: Path) -> Iterator[None]:
    with open(manifest.with_suffix(".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_card(models_dir: Path, card: dict[str, Any]) -> None:
    """Read-modify-write of ``model_cards.<family>`` only; atomic, fsync'd."""
    path = models_dir / "manifest.json"
    with locked(path):
        doc = json.loads(path.read_text(encoding="utf-8"))
        cards = doc.get("model_cards") if isinstance(doc.get("model_cards"), dict) else {}
        cards[card["family"]] = card
        doc["model_cards"] = dict(sorted(cards.items()))
        data = (json.dumps(doc, indent=2) + "\n").encode()
        atomic_write(path, data, 0o644)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=HERE)
    ap.add_argument("--testdata", type=Path, default=ROOT / ".cache/testdata")
    ap.add_argument("--dry-run", action="store_true", help="print the card, do not write the manifest")
    args = ap.parse_args(argv)
    card = measure(args.testdata, args.models_dir, datetime.now(UTC).date().isoformat())
    summary = {k: card[k] for k in ("threshold", "threshold_floor", "false_match_rate", "false_matches",
                                    "impostor_pairs", "false_match_rate_upper_95", "true_match_rate",
                                    "true_matches", "genuine_pairs", "gallery_size")}
    print(json.dumps(summary, indent=1))
    for variant, v in card["variants"].items():
        print(f"{variant}: genuine min {v['genuine_min']} mean {v['genuine_mean']}; impostor max"
              f" {v['impostor_max']} mean {v['impostor_mean']}")
    if not args.dry_run:
        write_card(args.models_dir, card)
        print(f"wrote model_cards.{FAMILY} into {args.models_dir / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
