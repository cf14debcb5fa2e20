"""Embedder latency: each variant of each recogniser in the manifest, batch 1, and the analyzer.

Per variant: mean and p95 of ``n`` runs of one chip (the family's size) after
warm-up, on the CPU (ai-edge-litert or tflite-runtime, 2 threads) and on the
Edge TPU when ``libedgetpu.so.1`` loads and the compiled file is installed.
The baseline is the family's float32 CPU model in the same process; ratios
are variant / baseline. Then one whole ``FaceAnalyzer.analyze`` (detect,
align, quality, embed) on obama.jpg (one face) per family and variant.
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np

from edge.bench.timing import testdata_dir, timed
from edge.errors import EdgeError
from edge.perception.analyzer import FaceAnalyzer
from edge.perception.embedder import EmbedderSpec, ManifestEmbedder
from edge.perception.manifest import Manifest, load_manifest
from edge.perception.runtime import open_model
from edge.perception.types import RGBImage


def _photo() -> RGBImage | None:
    folder = testdata_dir()
    path = folder / "obama.jpg"
    if not path.is_file():
        return None
    from edge.perception.cli import load_image

    return load_image(path)


def _no_tpu(library: str) -> object:
    raise ValueError("CPU row: the Edge TPU is not used")


def _family_rows(manifest: Manifest, family: str, n: int) -> list[tuple[str, float, float]]:
    size = EmbedderSpec.from_entry(manifest.variant(family, "float32")).chip_size
    chip = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    rows: list[tuple[str, float, float]] = []
    for entry in sorted(manifest.family(family), key=lambda e: e.variant):
        model = open_model(manifest, family, variant=entry.variant, delegate_loader=_no_tpu)
        rows.append((f"{entry.model_id} cpu", *timed(partial(ManifestEmbedder(model).embed, chip), n)))
        if entry.edgetpu_file:
            try:
                tpu = open_model(manifest, family, variant=entry.variant)
            except EdgeError as e:
                print(f"  (no Edge TPU row for {entry.model_id}: {e})")
                continue
            if tpu.backend == "edgetpu":
                rows.append((f"{entry.model_id} edgetpu",
                             *timed(partial(ManifestEmbedder(tpu).embed, chip), n)))
            else:
                print(f"  (no Edge TPU row for {entry.model_id}: {tpu.reason})")
    return rows


def run(args: argparse.Namespace | None = None, n: int = 50) -> None:
    manifest = load_manifest()
    families = sorted({e.family for e in manifest.models.values() if e.role == "embedder"})
    print("embedder, batch 1 (2 threads)        mean ms   p95 ms   x float32 cpu")
    for family in families:
        rows = _family_rows(manifest, family, n)
        base = next(mean for name, mean, _ in rows if name.endswith("fp32 cpu"))
        for name, mean, p95 in rows:
            print(f"{name:36s} {mean:8.2f} {p95:8.2f}   {mean / base:6.2f}")
    photo = _photo()
    if photo is None:
        print("(analyzer rows skipped: run `make testdata`)")
        return
    print("analyzer on obama.jpg (detect+align+quality+embed)")
    for family in families:
        for variant in ("float", "int8"):
            analyzer = FaceAnalyzer.from_models_dir(variant=variant, family=family,
                                                    delegate_loader=_no_tpu)
            mean, p95 = timed(partial(analyzer.analyze, photo), max(10, n // 5), 2)
            print(f"{'analyzer ' + family + ' ' + variant + ' cpu':36s} {mean:8.2f} {p95:8.2f}")
