"""The TFLite dlib embedder against dlib's own descriptor, on real face chips.

``tests/data/dlib_refs.json`` (made once by ``models/make_dlib_refs.py`` with
the dlib wheel) holds, per test face, the affine that cuts its chip and dlib's
descriptor of that chip. Here the chip is rebuilt with OpenCV alone and embedded
by our models. That it is the same chip is checked against an independent float64
bilinear warp, with a tolerance and not the recorded ``chip_sha256``: OpenCV 5.0
interpolates in float (within 0.5 of the reference everywhere; its chips match
the recorded hashes), OpenCV 4.6 in fixed point (Bookworm's python3-opencv and
the locked dev stack; at most 3.7 levels off, 0.30 per face on average). A chip
cut a quarter pixel off moves the per-face mean by 0.59 or more, so the mean
tolerance sits between the two.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.errors import InferenceError, ModelError, ModelMissingError
from edge.perception.align import warp_chip
from edge.perception.analyzer import ChipEmbedder, FaceAnalyzer
from edge.perception.cli import load_image
from edge.perception.embedder import ManifestEmbedder, l2_normalise
from edge.perception.manifest import load_manifest

FAMILY = "dlib_resnet_v1"

REFS = Path(__file__).parent / "data" / "dlib_refs.json"
# Measured (see the module docstring): OpenCV 4.6 and 5.0 against the float64 warp.
CHIP_MEAN_TOL = 0.45  # grey levels, per face: 0.30 measured, a 1/4-px shift gives >= 0.59
CHIP_MAX_TOL = 6.0  # grey levels, any value: 3.7 measured (fixed-point weights of 4.6)


def reference_chip(image: np.ndarray, matrix: np.ndarray, size: int = 150) -> np.ndarray:
    """The chip by plain float64 bilinear sampling (black outside), independent of OpenCV."""
    inv = np.linalg.inv(np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]]))[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    h, w = image.shape[:2]

    def at(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        return image[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)].astype(np.float64) * inside[..., None]

    return (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
            + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)


@pytest.fixture(scope="module")
def refs() -> list[dict[str, Any]]:
    faces: list[dict[str, Any]] = json.loads(REFS.read_text())["faces"]
    return faces


@pytest.fixture(scope="module")
def chips(testdata: Path, refs: list[dict[str, Any]]) -> np.ndarray:
    images: dict[str, np.ndarray] = {}
    out = []
    for face in refs:
        if face["image"] not in images:
            images[face["image"]] = load_image(testdata / face["image"])
        chip = warp_chip(images[face["image"]], np.array(face["matrix"]))
        diff = np.abs(chip - reference_chip(images[face["image"]], np.array(face["matrix"])))
        assert diff.mean() <= CHIP_MEAN_TOL and diff.max() <= CHIP_MAX_TOL, (
            f"{face['image']}: rebuilt chip is not the one dlib embedded "
            f"(mean {diff.mean():.3f}, max {diff.max():.2f} grey levels off)")
        out.append(chip)
    return np.stack(out)


@pytest.fixture(scope="module")
def float_embedder(models_dir: Path) -> ManifestEmbedder:
    return ManifestEmbedder.from_models_dir(models_dir, family=FAMILY, variant="float32")


@pytest.fixture(scope="module")
def int8_embedder(models_dir: Path) -> ManifestEmbedder:
    return ManifestEmbedder.from_models_dir(models_dir, family=FAMILY, variant="int8")


def test_refs_cover_the_test_faces(refs: list[dict[str, Any]]) -> None:
    images = [f["image"] for f in refs]
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png",
                 "Tom_Hanks_54745.png", "camera.png"):
        assert name in images
    assert images.count("t1.jpg") == 6


def test_float_matches_dlib_on_every_face(
    float_embedder: ManifestEmbedder, chips: np.ndarray, refs: list[dict[str, Any]]
) -> None:
    ours = float_embedder.embed(chips)
    theirs = l2_normalise(np.array([f["descriptor"] for f in refs]))
    cos = np.sum(ours * theirs, axis=1)
    worst = int(np.argmin(cos))
    assert cos.min() >= 0.999, f"{refs[worst]['image']} ({refs[worst]['identity']}): {cos[worst]}"


def test_int8_close_to_float(
    float_embedder: ManifestEmbedder, int8_embedder: ManifestEmbedder, chips: np.ndarray
) -> None:
    cos = np.sum(float_embedder.embed(chips) * int8_embedder.embed(chips), axis=1)
    assert cos.min() >= 0.98, cos
    assert cos.mean() >= 0.99, cos


def test_embeddings_are_unit_vectors(int8_embedder: ManifestEmbedder, chips: np.ndarray) -> None:
    emb = int8_embedder.embed(chips[:3])
    assert emb.shape == (3, 128) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert int8_embedder.embed(chips[:0]).shape == (0, 128)


def test_embedder_refuses_wrong_chips(float_embedder: ManifestEmbedder) -> None:
    with pytest.raises(InferenceError):
        float_embedder.embed(np.zeros((1, 112, 112, 3), np.uint8))
    with pytest.raises(InferenceError):
        float_embedder.embed(np.zeros((1, 150, 150, 3), np.float32))


def test_manifest_describes_the_embedder(models_dir: Path, float_embedder: ManifestEmbedder) -> None:
    manifest = load_manifest(models_dir)
    manifest.verify_hashes([e.model_id for e in manifest.family(FAMILY)])
    fp32 = manifest.variant(FAMILY, "float32")
    int8 = manifest.variant(FAMILY, "int8")
    for e in (fp32, int8):
        assert e.role == "embedder"
        assert e.extra["embedding_size"] == 128
        tpl = e.extra["alignment_template"]
        assert tpl["chip_size"] == 150 and tpl["padding"] == 0.25
        assert e.inputs[0].shape == (1, 150, 150, 3)
    assert int8.inputs[0].dtype == "int8" and int8.inputs[0].quantization == (1.0, -128)
    assert int8.edgetpu_file == "dlib_resnet_v1_int8_edgetpu.tflite"
    assert float_embedder.space_id == f"{FAMILY}:{fp32.sha256}"


def test_chip_embedder_is_the_analyzer_path(models_dir: Path, testdata: Path) -> None:
    """Keypoints -> chip -> embedding without the detector gives what analyze gives."""
    analyzer = FaceAnalyzer.from_models_dir(models_dir, "float", family=FAMILY)
    image = load_image(testdata / "obama.jpg")
    (face,) = analyzer.analyze_detailed(image)
    chips = ChipEmbedder.from_models_dir(models_dir, "float", family=FAMILY)
    chip, emb = chips.from_keypoints(image, [face.face.detection.keypoints])
    np.testing.assert_array_equal(chip[0], face.chip)
    assert face.face.embedding is not None
    np.testing.assert_allclose(emb[0], face.face.embedding, atol=1e-6)
    none_chips, none = chips.from_landmarks(image, [])
    assert none_chips.shape == (0, 150, 150, 3) and none.shape == (0, 128)


def test_unknown_family_and_incomplete_entry_are_refused(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError, match="known families"):
        FaceAnalyzer.from_models_dir(models_dir, family="no_such_recogniser")
    doc = json.loads((models_dir / "manifest.json").read_text())
    entry = doc["models"]["dlib_resnet_v1_fp32"]
    del entry["chip_input"]
    doc["models"] = {"dlib_resnet_v1_fp32": entry}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    shutil.copy(models_dir / entry["file"], tmp_path / entry["file"])
    with pytest.raises(ModelError, match="chip_input"):
        ManifestEmbedder.from_models_dir(tmp_path, family=FAMILY)
