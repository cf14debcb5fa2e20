"""The evaluation faces: LFW's development half laid out as ``<Person>/<Person>_NNNN.jpg``.

The folder is found relative to the checkout (``../shared/data``), or from
``--data`` / ``$EDGE_EVAL_DATA``. It is for measuring only.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
DATA_ENV = "EDGE_EVAL_DATA"
IMAGES_DIR = "lfw-dev"
PAIRS_FILE = "lfw-dev-pairs.csv"
DATASET_NAME = "LFW deep-funneled, development half (lfw-dev)"


def default_data_dir() -> Path:
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Dataset:
    root: Path
    files: tuple[str, ...]  # relative to root/lfw-dev, sorted
    person: npt.NDArray[np.int64]  # person index per image
    names: tuple[str, ...]  # person names, index order
    pairs: tuple[tuple[int, int, bool], ...]  # standard pairs: image indices, same person

    @property
    def images(self) -> int:
        return len(self.files)

    @property
    def people(self) -> int:
        return len(self.names)

    def path(self, i: int) -> Path:
        return self.root / IMAGES_DIR / self.files[i]

    def digest(self) -> str:
        """Identifies the image list (not the pixels) for cache keys."""
        return hashlib.sha256("\n".join(self.files).encode()).hexdigest()[:16]

    def counts(self) -> npt.NDArray[np.int64]:
        return np.bincount(self.person, minlength=self.people).astype(np.int64)


def load_dataset(root: Path) -> Dataset:
    images = root / IMAGES_DIR
    if not images.is_dir():
        raise FileNotFoundError(f"{images} not found: pass --data or set ${DATA_ENV}")
    files = tuple(sorted(p.relative_to(images).as_posix() for p in images.glob("*/*.jpg")))
    names = tuple(sorted({f.split("/", 1)[0] for f in files}))
    index = {n: i for i, n in enumerate(names)}
    person = np.array([index[f.split("/", 1)[0]] for f in files], np.int64)
    pos = {f: i for i, f in enumerate(files)}
    pairs: list[tuple[int, int, bool]] = []
    pairs_path = root / PAIRS_FILE
    if pairs_path.is_file():
        with pairs_path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                a, b = row["image_a"], row["image_b"]
                if a in pos and b in pos:
                    pairs.append((pos[a], pos[b], row["label"].strip() == "same"))
    return Dataset(root=root, files=files, person=person, names=names, pairs=tuple(pairs))
