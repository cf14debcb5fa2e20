#!/usr/bin/env python3
"""Turn dlib's ``shape_predictor_5_face_landmarks.dat`` into ``dlib_landmarks5.npz``.

    python models/build_landmarks.py --sources .cache/model-sources --out models

The file is read with our own decoder of dlib's portable serialisation (the
primitives of ``models/dlib_reader.py``); dlib itself is not needed. A shape
predictor (Kazemi & Sullivan 2014, "One millisecond face alignment with an
ensemble of regression trees") is stored as:

- an int version (1);
- the mean shape, a float column vector (x0, y0, x1, y1, ...) in a unit frame
  where (0, 0) and (1, 1) are the corners of the face rectangle; a matrix is
  written as -rows, -cols, then its elements;
- the forests: a vector (one per cascade level) of vectors of trees; a tree is
  a vector of splits (two unsigned pixel indices and a float threshold, in
  breadth-first order, children of node i at 2i+1 and 2i+2) and a vector of
  leaf vectors (shape increments, one column vector each);
- per level, the anchor landmark of every feature pixel (vector of vectors of
  unsigned integers) and its offset from that landmark in the mean shape's
  frame (vector of vectors of 2-D float vectors, written x then y).

Every tree of this model is complete and of one depth, so the forests pack
into dense arrays that ``edge.perception.landmarks`` evaluates level by level
with a few numpy gathers. The manifest entry records the source's sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from build_detector import update_manifest  # noqa: E402
from dlib_reader import DlibFormatError, _Stream  # noqa: E402

from edge.perception.manifest import ARCHITECTURES  # noqa: E402

SOURCE = {
    "package": "face_recognition_models",
    "version": "0.3.0",
    "file": "shape_predictor_5_face_landmarks.dat",
    "sha256": "",  # filled in from the file read
}
FAMILY = "dlib_landmarks5"
OUT_FILE = "dlib_landmarks5.npz"


class _Reader(_Stream):
    """dlib's stream plus the containers a shape predictor uses."""

    def real32(self) -> float:
        # Same encoding as _Stream.real (int64 mantissa, int16 exponent), scalar math only:
        # the file holds about 800,000 of them.
        mantissa = self.integer()
        exponent = self.integer()
        if exponent >= 32000:
            raise DlibFormatError("non-finite value in a shape predictor")
        return math.ldexp(float(mantissa), exponent)

    def column(self) -> list[float]:
        rows, cols = -self.integer(), -self.integer()
        if rows < 0 or cols != 1:
            raise DlibFormatError(f"expected a column vector, got {rows}x{cols}")
        return [self.real32() for _ in range(rows)]

    def count(self) -> int:
        n = self.integer()
        if n < 0 or n > len(self.data):
            raise DlibFormatError(f"bad container size {n} at byte {self.pos}")
        return n


def read_shape_predictor(path: Path) -> dict[str, np.ndarray]:
    """Parse the .dat into dense arrays (see the module docstring for the layout)."""
    s = _Reader(path.read_bytes())
    if (version := s.integer()) != 1:
        raise DlibFormatError(f"shape_predictor version {version}, expected 1")
    mean = np.array(s.column(), np.float32)
    if mean.size % 2:
        raise DlibFormatError("mean shape has an odd number of coordinates")
    parts = mean.size // 2

    idx1: list[list[list[int]]] = []
    idx2: list[list[list[int]]] = []
    thresh: list[list[list[float]]] = []
    leaves: list[list[list[list[float]]]] = []
    for _ in range(s.count()):  # cascade levels
        i1_l, i2_l, th_l, lv_l = [], [], [], []
        for _ in range(s.count()):  # trees
            n_splits = s.count()
            split = [(s.integer(), s.integer(), s.real32()) for _ in range(n_splits)]
            n_leaves = s.count()
            if n_leaves != n_splits + 1 or n_leaves & (n_leaves - 1):
                raise DlibFormatError(f"tree with {n_splits} splits and {n_leaves} leaves")
            leaf = [s.column() for _ in range(n_leaves)]
            if any(len(v) != 2 * parts for v in leaf):
                raise DlibFormatError("leaf vector length differs from the shape's")
            i1_l.append([a for a, _, _ in split])
            i2_l.append([b for _, b, _ in split])
            th_l.append([t for _, _, t in split])
            lv_l.append(leaf)
        idx1.append(i1_l)
        idx2.append(i2_l)
        thresh.append(th_l)
        leaves.append(lv_l)

    anchors = [[s.integer() for _ in range(s.count())] for _ in range(s.count())]
    deltas = [[(s.real32(), s.real32()) for _ in range(s.count())] for _ in range(s.count())]
    if s.pos != len(s.data):
        raise DlibFormatError(f"{len(s.data) - s.pos} trailing bytes")

    try:
        out = {
            "initial_shape": mean.reshape(parts, 2),
            "anchor_idx": np.array(anchors, np.int32),
            "deltas": np.array(deltas, np.float32),
            "split_idx1": np.array(idx1, np.int32),
            "split_idx2": np.array(idx2, np.int32),
            "split_thresh": np.array(thresh, np.float32),
            "leaf_values": np.array(leaves, np.float32).reshape(
                len(leaves), len(leaves[0]), -1, parts, 2),
        }
    except ValueError as e:  # ragged: levels differ in tree count, depth or pixel count
        raise DlibFormatError(f"the forests are not uniform ({e})") from e
    levels, _, n_split = out["split_idx1"].shape
    n_pixels = out["anchor_idx"].shape[1]
    if out["anchor_idx"].shape[0] != levels or out["deltas"].shape[:2] != (levels, n_pixels):
        raise DlibFormatError("pixel anchors or offsets do not match the cascade levels")
    if out["anchor_idx"].max() >= parts or max(out["split_idx1"].max(),
                                               out["split_idx2"].max()) >= n_pixels:
        raise DlibFormatError("an index points outside its table")
    del n_split
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Uncompressed .npz; numpy stamps every member with a fixed date, so equal input
    gives a byte-identical file (the manifest's sha256 is reproducible)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(path)


def entry(path: Path, arrays: dict[str, np.ndarray], source_sha: str) -> dict[str, Any]:
    levels, trees, splits = arrays["split_idx1"].shape
    parts = arrays["initial_shape"].shape[0]
    return {
        "file": path.name,
        "sha256": sha256(path),
        "role": "landmarks",
        "family": FAMILY,
        "variant": "float32",
        "inputs": [
            {"name": "gray", "shape": [-1, -1], "dtype": "uint8", "quantization": None},
            {"name": "rect", "shape": [4], "dtype": "float64", "quantization": None},
        ],
        "outputs": [
            {"name": "points", "shape": [parts, 2], "dtype": "float64", "quantization": None},
        ],
        "quantization": "none: dlib's float32 values as stored",
        "preprocessing": ("grey = (R + G + B) // 3 (dlib's intensity of an RGB pixel); rect in "
                          "dlib's frontal_face_detector convention (edge.perception.landmarks)"),
        "source": {**SOURCE, "sha256": source_sha},
        "licence": "CC0-1.0 (face_recognition_models 0.3.0; model by Davis King, dlib)",
        "build_command": ("python models/build_landmarks.py --sources .cache/model-sources "
                          "--out models"),
        # The family's only variant, numpy on every CPU: not a TFLite model, never on the Edge TPU.
        "cpu_preferred": dict.fromkeys(ARCHITECTURES, True),
        "ensemble": {"levels": levels, "trees_per_level": trees, "tree_depth": int(
            math.log2(splits + 1)), "pixels_per_level": int(arrays["anchor_idx"].shape[1]),
            "parts": parts},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=Path, default=ROOT / ".cache" / "model-sources")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    src = args.sources / str(SOURCE["file"])
    arrays = read_shape_predictor(src)
    out = args.out / OUT_FILE
    write_npz(out, arrays)
    e = entry(out, arrays, sha256(src))
    update_manifest(args.out, {FAMILY: e}, {FAMILY})
    print(f"wrote {out} ({out.stat().st_size} bytes): {e['ensemble']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
