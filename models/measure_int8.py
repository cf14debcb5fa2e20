"""Quick measurement of int8 against float32 on the evaluation faces (measuring only).

    .venv-build/bin/python models/measure_int8.py [--data ../shared/data] [--family F ...]

Not the evaluation harness: one number per model and variant, the share of
genuine pairs accepted at false-match rates 1e-4 and 1e-5, over every
same-person and every cross-person pair of ``lfw-dev`` (about 24 million),
through the device's own path: BlazeFace keypoints (float32 detector, the
face nearest the centre) -> the recogniser's aligner -> the recogniser.
Keypoints and embeddings are cached in ``.cache/measure-int8``. Nothing here
calibrates or selects anything that ships.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]

from edge.perception.analyzer import VARIANTS, ChipEmbedder, detect_with_close_up  # noqa: E402
from edge.perception.cli import load_image  # noqa: E402
from edge.perception.detector import BlazeFaceDetector  # noqa: E402
from edge.perception.manifest import load_manifest  # noqa: E402

FMRS = (1e-4, 1e-5)


def keypoints(images: list[Path], cache: Path, models_dir: Path) -> np.ndarray:
    """(N, 6, 2) BlazeFace keypoints of the most central face; NaN where none was found."""
    path = cache / "keypoints.npy"
    if path.is_file():
        kps: np.ndarray = np.load(path)
        if len(kps) == len(images):
            return kps
    det = BlazeFaceDetector.from_models_dir(models_dir, variant="float32")
    out = np.full((len(images), 6, 2), np.nan, np.float32)
    for i, p in enumerate(images):
        img = load_image(p)
        faces = detect_with_close_up(det, img)
        if faces:
            c = np.array([img.shape[1] / 2, img.shape[0] / 2])
            best = min(faces, key=lambda d: float(np.linalg.norm(d.keypoints[:4].mean(0) - c)))
            out[i] = best.keypoints
    np.save(path, out)
    return out


def embeddings(images: list[Path], kps: np.ndarray, family: str, variant: str, cache: Path,
               models_dir: Path) -> np.ndarray:
    entry = load_manifest(models_dir).variant(family, VARIANTS[variant])
    path = cache / f"{family}-{variant}-{entry.sha256[:12]}.npy"  # a rebuilt file is re-measured
    if path.is_file():
        emb: np.ndarray = np.load(path)
        if len(emb) == len(images):
            return emb
    ce = ChipEmbedder.from_models_dir(models_dir, variant, family=family, num_threads=1)
    out = np.zeros((len(images), ce.embedder.dim), np.float32)
    for i, p in enumerate(images):
        if not np.isnan(kps[i]).any():
            out[i] = ce.from_keypoints(load_image(p), [kps[i]])[1][0]
    np.save(path, out)
    return out


def rates(emb: np.ndarray, ids: np.ndarray) -> dict[str, float]:
    """Genuine-pair acceptance at each FMR over all pairs of the found faces."""
    sims = emb @ emb.T
    iu = np.triu_indices(len(emb), 1)
    s = sims[iu]
    same = ids[iu[0]] == ids[iu[1]]
    genuine, impostor = s[same], s[~same]
    out = {"genuine_pairs": float(genuine.size), "impostor_pairs": float(impostor.size)}
    imp_sorted = np.sort(impostor)[::-1]
    for fmr in FMRS:
        k = int(fmr * impostor.size)  # at most k impostors may score above the threshold
        thr = float(imp_sorted[k])
        out[f"tar@{fmr:g}"] = float((genuine > thr).mean())
        out[f"thr@{fmr:g}"] = thr
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--models-dir", type=Path, default=HERE)
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "measure-int8")
    ap.add_argument("--family", action="append", default=None)
    args = ap.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    images = sorted((args.data / "lfw-dev").glob("*/*.jpg"))
    t0 = time.perf_counter()
    kps = keypoints(images, args.cache, args.models_dir)
    found = ~np.isnan(kps).any(axis=(1, 2))
    print(f"{len(images)} images, face found in {int(found.sum())} "
          f"({time.perf_counter() - t0:.0f} s)")
    people = np.array([p.parent.name for p in images])[found]
    _, ids = np.unique(people, return_inverse=True)
    for family in args.family or ["dlib_resnet_v1", "mobileface_v2"]:
        rows = {}
        for variant in ("float", "int8"):
            t0 = time.perf_counter()
            emb = embeddings(images, kps, family, variant, args.cache, args.models_dir)[found]
            rows[variant] = rates(emb, ids)
            print(f"{family} {variant}: " + ", ".join(
                f"{k} {v:.4f}" if "pairs" not in k else f"{k} {int(v)}"
                for k, v in rows[variant].items()) + f" ({time.perf_counter() - t0:.0f} s)")
        for fmr in FMRS:
            d = rows["float"][f"tar@{fmr:g}"] - rows["int8"][f"tar@{fmr:g}"]
            print(f"  {family} int8 loss at FMR {fmr:g}: {100 * d:.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
