"""The eval's configuration registry opens the firmware's own embedders and aligners."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.perception.manifest import DEFAULT_EMBEDDER, load_manifest
from evaluation.configs import NOT_BY_DEFAULT, REFERENCE, available, left_out, registry


def test_every_manifest_recogniser_is_measured_today_s_first(models_dir: Path) -> None:
    manifest = load_manifest(models_dir)
    recs = registry(manifest)
    families = {e.family for e in manifest.models.values() if e.role == "embedder"}
    assert recs[0].today and recs[0].family == REFERENCE != DEFAULT_EMBEDDER  # dlib stays the baseline
    assert {r.family for r in recs} == families and all(r.aligner == "manifest" for r in recs)
    assert sum(r.today for r in recs) == 1
    extra = registry(manifest, extra=True)
    assert len(extra) > len(recs) and not any(r.device for r in extra if r.aligner != "manifest")
    assert [r.key for r in available(manifest, [DEFAULT_EMBEDDER])] == [f"{DEFAULT_EMBEDDER}+manifest"]


def test_each_configuration_cuts_chips_its_embedder_takes(models_dir: Path) -> None:
    manifest = load_manifest(models_dir)
    image = np.zeros((250, 250, 3), np.uint8)
    image[60:190, 70:180] = 160
    kp = np.array([[100, 110], [150, 110], [125, 140], [125, 165], [80, 120], [170, 120]], np.float32)
    box = np.array([70, 60, 180, 190], np.float32)
    keys: dict[str, set[str]] = {}
    for rec in registry(manifest, extra=True):
        for variant in rec.variants(manifest):
            embedder, cut, key = rec.open(models_dir, variant)
            chip = cut(image, kp, box)
            out = embedder.embed(chip[None])
            assert out.shape == (1, embedder.dim)
            assert abs(float(np.linalg.norm(out)) - 1.0) < 1e-4
            keys.setdefault(rec.key, set()).add(key)
    # Chips are cached per alignment: a configuration's variants share them, and so do families
    # cut by the same landmark aligner; other alignments do not.
    assert all(len(k) == 1 for k in keys.values())
    by_aligner: dict[str, set[str]] = {}
    for name, k in keys.items():
        if not name.endswith("+manifest"):
            by_aligner.setdefault(name.split("+")[1], set()).update(k)
    assert all(len(k) == 1 for k in by_aligner.values())
    assert len(set().union(*by_aligner.values())) == len(by_aligner) >= 2


def test_a_default_run_leaves_out_only_the_named_families_and_says_why(models_dir: Path) -> None:
    manifest = load_manifest(models_dir)
    default = {r.family for r in available(manifest)}
    out = left_out(manifest)
    assert out and set(out) == set(NOT_BY_DEFAULT) and not default & set(out)
    assert {DEFAULT_EMBEDDER, REFERENCE, "mobilefacenet_expo"} <= default
    assert all(r.opt_in for r in available(manifest) if r.family == "mobilefacenet_expo")
    named = [r.family for r in available(manifest, list(NOT_BY_DEFAULT))]
    assert named and set(named) == set(NOT_BY_DEFAULT) and left_out(manifest, list(NOT_BY_DEFAULT)) == {}
