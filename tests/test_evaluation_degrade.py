"""The eval's capture conditions keep shape and dtype and do what their names say."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from evaluation import degrade as dg


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 250x250 RGB test card: smooth gradients plus fine texture (JPEG and blur both act on it)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:250, 0:250].astype(np.float32)
    base = np.stack([x, y, (x + y) / 2], axis=2) * 0.8 + 20
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


KP = np.array([[100, 110], [150, 110], [125, 140], [125, 165], [80, 120], [170, 120]], np.float32)


def laplacian_energy(img: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


@pytest.mark.parametrize("cond", dg.CONDITIONS, ids=lambda c: c.name)
def test_every_condition_returns_an_rgb_uint8_image_and_matching_keypoints(photo: np.ndarray,
                                                                           cond: dg.Condition) -> None:
    out, kp = cond.apply(photo.copy(), KP.copy(), 110.0, 7)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert kp.shape == KP.shape and kp.dtype == np.float32
    if cond.kind != "width":
        assert out.shape == photo.shape
        np.testing.assert_array_equal(kp, KP)


@pytest.mark.parametrize("px", dg.WIDTHS)
def test_face_width_rescales_the_photo_and_the_keypoints_together(photo: np.ndarray, px: int) -> None:
    out, kp = dg.to_face_width(photo, KP, 110.0, px)
    scale = px / 110.0
    assert out.shape[:2] == (round(250 * scale), round(250 * scale))
    # Keypoints land on the same content: the eye spacing scales with the face.
    eye = float(np.linalg.norm(kp[1] - kp[0]))
    assert eye == pytest.approx(50.0 * out.shape[1] / 250, rel=1e-6)
    # The face box maps to the target width.
    assert 110.0 * out.shape[1] / 250 == pytest.approx(px, abs=0.6)


def test_lower_jpeg_quality_loses_more(photo: np.ndarray) -> None:
    err = {q: float(np.abs(dg.jpeg(photo, q).astype(int) - photo.astype(int)).mean())
           for q in dg.JPEG_QUALITIES}
    qs = sorted(err)
    assert all(err[a] > err[b] > 0 for a, b in itertools.pairwise(qs))


def test_blur_removes_fine_detail_in_proportion_to_the_face(photo: np.ndarray) -> None:
    sharp = laplacian_energy(photo)
    small = laplacian_energy(dg.blur(photo, dg.BLUR_FRACTION, 50.0))
    large = laplacian_energy(dg.blur(photo, dg.BLUR_FRACTION, 200.0))
    assert large < small < sharp


def test_low_light_darkens_and_adds_noise_reproducibly(photo: np.ndarray) -> None:
    gain, noise = dg.LOW_LIGHT
    a = dg.low_light(photo, gain, noise, seed=3)
    assert a.mean() == pytest.approx(photo.mean() * gain, rel=0.05)
    residual = a.astype(np.float32) - photo.astype(np.float32) * gain
    assert residual.std() == pytest.approx(noise, rel=0.15)
    np.testing.assert_array_equal(a, dg.low_light(photo, gain, noise, seed=3))
    assert not np.array_equal(a, dg.low_light(photo, gain, noise, seed=4))
