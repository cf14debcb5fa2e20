"""dlib's 5-point shape predictor in numpy, and the aligners built on it, against dlib itself.

The reference numbers in tests/data/landmarks5_refs.json were computed by
dlib 20.0.1 (the ``dlib-bin`` wheel) with models/make_landmark_refs.py; this
test needs neither dlib nor the .dat file, only the committed model arrays.

Tolerance: dlib returns whole pixels (it rounds with floor(x + 0.5)). Our port
reproduces dlib's float32 arithmetic (the similarity, the feature-pixel
positions, the order in which 500 trees add their leaves), so rounding our
points must give dlib's numbers exactly; that is what is asserted, and it
bounds the unrounded difference below 0.5 px. Measured on all 28 point sets
(14 faces, on dlib's rectangle and on ours): 28 identical, largest unrounded
difference 0.499 px.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.errors import ModelError, ModelHashError
from edge.perception.align import TemplateAligner
from edge.perception.align5 import (
    ARCFACE_EYES,
    ARCFACE_NOSE_BASE,
    ARCFACE_SIZE,
    DLIB_CHIP_SIZE,
    ArcFace5Aligner,
    Dlib5Aligner,
    cut_chip,
    dlib_chip_transform,
    dlib_round,
    eye_centres,
    fit_arcface_nose_base,
    make_aligner,
)
from edge.perception.cli import load_image
from edge.perception.landmarks import (
    KEYPOINTS_TO_DLIB,
    ShapePredictor,
    dlib_rect,
    fit_rect_mapping,
    to_gray,
)
from edge.perception.types import RGBImage

REFS = Path(__file__).parent / "data" / "landmarks5_refs.json"


@pytest.fixture(scope="module")
def refs() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(REFS.read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def predictor(models_dir: Path) -> ShapePredictor:
    return ShapePredictor.from_models_dir(models_dir)


@pytest.fixture(scope="module")
def images(testdata: Path, refs: dict[str, Any]) -> dict[str, RGBImage]:
    return {f["image"]: load_image(testdata / f["image"]) for f in refs["faces"]}


def _rounded_rect(rect: tuple[float, float, float, float]) -> list[int]:
    return [int(np.floor(v + 0.5)) for v in rect]


def test_parity_with_dlib_on_its_own_rectangles(
        refs: dict[str, Any], predictor: ShapePredictor, images: dict[str, RGBImage]) -> None:
    assert len(refs["faces"]) >= 12
    for f in refs["faces"]:
        ours = predictor.predict(images[f["image"]], tuple(f["hog_rect"]))
        theirs = np.array(f["points_hog"], np.float64)
        np.testing.assert_array_equal(dlib_round(ours), theirs, err_msg=f["image"])
        assert np.abs(ours - theirs).max() < 0.5


def test_parity_on_rectangles_placed_from_blazeface_keypoints(
        refs: dict[str, Any], predictor: ShapePredictor, images: dict[str, RGBImage]) -> None:
    for f in refs["faces"]:
        rect = _rounded_rect(dlib_rect(np.array(f["keypoints"])))
        assert rect == f["mapped_rect"], f["image"]
        ours = predictor.predict(images[f["image"]], tuple(rect))
        np.testing.assert_array_equal(dlib_round(ours), np.array(f["points_mapped"]),
                                      err_msg=f["image"])


def test_grey_and_rgb_inputs_read_the_same_intensities(
        refs: dict[str, Any], predictor: ShapePredictor, images: dict[str, RGBImage]) -> None:
    f = refs["faces"][0]
    rgb = images[f["image"]]
    np.testing.assert_array_equal(predictor.predict(rgb, tuple(f["hog_rect"])),
                                  predictor.predict(to_gray(rgb), tuple(f["hog_rect"])))
    # The intensity is the integer channel mean, not a luma weighting.
    assert to_gray(np.array([[[255, 0, 0], [1, 1, 2]]], np.uint8)).tolist() == [[85, 1]]


def test_the_rectangle_mapping_is_the_fit_of_the_pinned_faces(refs: dict[str, Any]) -> None:
    faces = refs["faces"]
    fit = fit_rect_mapping([f["keypoints"] for f in faces], [f["hog_rect"] for f in faces])
    assert fit.as_dict() == KEYPOINTS_TO_DLIB.as_dict() == refs["fit"]["rect_mapping"]
    # Placed rectangles overlap dlib's own well (intersection over union).
    for f in faces:
        a = np.array(dlib_rect(np.array(f["keypoints"])))
        b = np.array(f["hog_rect"], np.float64)
        iw = min(a[2], b[2]) - max(a[0], b[0])
        ih = min(a[3], b[3]) - max(a[1], b[1])
        inter = max(iw, 0) * max(ih, 0)
        union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
        assert inter / union > 0.6, f["image"]


def test_the_arcface_nose_base_is_the_fit_of_the_pinned_faces(refs: dict[str, Any]) -> None:
    faces = refs["faces"]
    fitted = fit_arcface_nose_base([f["points_hog"] for f in faces],
                                   [f["keypoints"] for f in faces])
    np.testing.assert_allclose(fitted, ARCFACE_NOSE_BASE, atol=5e-4)
    np.testing.assert_allclose(ARCFACE_NOSE_BASE, refs["fit"]["arcface_nose_base"])
    # The base of the nose is below the template's nose tip (71.74), above the mouth (92.3).
    assert 74 < ARCFACE_NOSE_BASE[1] < 88


def test_chip_transform_is_dlibs_and_the_chip_matches_dlibs_chip(
        refs: dict[str, Any], images: dict[str, RGBImage]) -> None:
    for f in refs["faces"]:
        m = dlib_chip_transform(np.array(f["points_hog"], np.float64))
        # dlib's own matrix went through float32 (cv2.getAffineTransform) in the fixture.
        np.testing.assert_allclose(m, np.array(f["chip"]["matrix"]), rtol=1e-5, atol=2e-3,
                                   err_msg=f["image"])
        chip = cut_chip(images[f["image"]], m, DLIB_CHIP_SIZE).astype(np.float64).mean(axis=2)
        diff = np.r_[chip.mean(axis=1) - f["chip"]["row_profile"],
                     chip.mean(axis=0) - f["chip"]["col_profile"]]
        # Measured: 0.46-0.50 grey levels where dlib interpolates the frame directly,
        # 0.58-1.11 where it first shrinks it by its own pyramid (large faces).
        assert np.abs(diff).mean() < 1.5, f["image"]


def test_aligners_cut_chips_of_their_recognisers_size(
        refs: dict[str, Any], predictor: ShapePredictor, images: dict[str, RGBImage]) -> None:
    dlib5, arc = Dlib5Aligner(predictor), ArcFace5Aligner(predictor)
    for f in refs["faces"][:4]:
        rgb, kp = images[f["image"]], np.array(f["keypoints"], np.float32)
        chip = dlib5.align(rgb, kp)
        assert chip.shape == (DLIB_CHIP_SIZE, DLIB_CHIP_SIZE, 3) and chip.dtype == np.uint8
        # The device path cuts exactly the chip dlib would cut from its points on our rectangle.
        np.testing.assert_allclose(dlib5.transform(rgb, kp),
                                   dlib_chip_transform(np.array(f["points_mapped"])), atol=1e-9)
        small = arc.align(rgb, kp)
        assert small.shape == (ARCFACE_SIZE, ARCFACE_SIZE, 3) and small.dtype == np.uint8
        # The eye centres land near the ArcFace template's eyes.
        m = arc.transform(rgb, kp)
        eyes = eye_centres(dlib5.landmarks(rgb, kp)) @ m[:, :2].T + m[:, 2]
        assert np.abs(eyes - ARCFACE_EYES).max() < 3.0, f["image"]


def test_a_tampered_model_file_is_refused(models_dir: Path, tmp_path: Path) -> None:
    for name in ("manifest.json", "dlib_landmarks5.npz"):
        shutil.copy(models_dir / name, tmp_path / name)
    ShapePredictor.from_models_dir(tmp_path)
    with np.load(tmp_path / "dlib_landmarks5.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["split_thresh"] = arrays["split_thresh"] + np.float32(1)
    np.savez(tmp_path / "dlib_landmarks5.npz", **arrays)
    with pytest.raises(ModelHashError):
        ShapePredictor.from_models_dir(tmp_path)


def test_aligners_are_selected_by_name(models_dir: Path) -> None:
    assert isinstance(make_aligner("dlib5", models_dir), Dlib5Aligner)
    assert isinstance(make_aligner("dlib5_arcface", models_dir), ArcFace5Aligner)
    assert isinstance(make_aligner("keypoints", models_dir), TemplateAligner)
    with pytest.raises(ModelError, match="unknown aligner"):
        make_aligner("dlib68", models_dir)
