"""Tiled detection of small faces in a 1080p frame, and the tiling maths on its own."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError
from edge.perception.detector import BlazeFaceDetector
from edge.perception.tiling import (
    TiledDetector,
    TilingConfig,
    plan_strips,
    plan_tiles,
    tiles_with_motion,
)
from edge.perception.types import RGBImage

W, H = 1920, 1080


def no_tpu(library: str) -> object:
    raise ValueError(f"{library}: no Edge TPU here")


def rgb(testdata: Path, name: str) -> RGBImage:
    return np.ascontiguousarray(cv2.imread(str(testdata / name))[:, :, ::-1])


def background(testdata: Path) -> RGBImage:
    """A 1920x1080 frame of real texture: grass above, gravel below."""
    grass, gravel = rgb(testdata, "grass.png"), rgb(testdata, "gravel.png")
    top = np.tile(grass, (H // grass.shape[0] + 1, W // grass.shape[1] + 1, 1))[: H // 2, :W]
    low = np.tile(gravel, (H // gravel.shape[0] + 1, W // gravel.shape[1] + 1, 1))[: H - H // 2, :W]
    return np.ascontiguousarray(np.concatenate([top, low]))


def small_face(testdata: Path, detector: BlazeFaceDetector, width: int) -> RGBImage:
    """obama.jpg cropped around its face (with context) so that the face box is ``width`` px."""
    image = rgb(testdata, "obama.jpg")
    (face,) = detector.detect(image)
    x0, y0, x1, y1 = face.box
    m = 0.6 * face.width
    crop = image[int(max(0, y0 - m)) : int(y1 + m), int(max(0, x0 - m)) : int(x1 + m)]
    s = width / face.width
    return cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module", params=["float32", "int8"])
def detector(request: pytest.FixtureRequest, models_dir: Path) -> BlazeFaceDetector:
    return BlazeFaceDetector.from_models_dir(models_dir, variant=request.param,
                                             delegate_loader=no_tpu)


@pytest.mark.parametrize(("x", "y"), [(700, 300), (1010, 620)])  # (1010, 620): across tile edges
def test_40px_face_found_by_tiles_missed_full_frame(
    detector: BlazeFaceDetector, testdata: Path, x: int, y: int
) -> None:
    frame = background(testdata)
    face = small_face(testdata, detector, 40)
    h, w = face.shape[:2]
    frame[y : y + h, x : x + w] = face
    centre = np.array([x + w / 2, y + h / 2])

    assert detector.detect(frame) == []  # one 192x192 pass: the face is 4 px wide

    tiled = TiledDetector(detector)
    found = tiled.detect(frame)
    assert len(found) == 1, [(d.box, d.score) for d in found]
    (d,) = found
    assert 30 < d.width < 55
    box_centre = np.array([(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2])
    assert np.linalg.norm(box_centre - centre) < 12
    assert tiled.last_tiles_run == len(tiled.tiles((H, W)))


def test_motion_mask_runs_only_the_tiles_that_moved(
    detector: BlazeFaceDetector, testdata: Path
) -> None:
    frame = background(testdata)
    face = small_face(testdata, detector, 60)
    frame[400 : 400 + face.shape[0], 1300 : 1300 + face.shape[1]] = face
    tiled = TiledDetector(detector)
    still = np.zeros((H // 8, W // 8), bool)  # motion is computed on a smaller image
    assert tiled.detect(frame, motion_mask=still) == [] and tiled.last_tiles_run == 0
    moved = still.copy()
    moved[400 // 8 : 480 // 8, 1300 // 8 : 1370 // 8] = True
    found = tiled.detect(frame, motion_mask=moved)
    assert len(found) == 1 and 1 <= tiled.last_tiles_run <= 4
    # A predicate can veto tiles too: refusing them all finds nothing.
    assert tiled.detect(frame, tiles_to_run=lambda t: False) == []


def test_tiles_run_in_parallel_find_exactly_what_one_detector_finds(
    detector: BlazeFaceDetector, testdata: Path, models_dir: Path
) -> None:
    frame = background(testdata)
    for width, (x, y) in ((40, (300, 200)), (60, (1010, 620)), (90, (1500, 700))):
        face = small_face(testdata, detector, width)
        frame[y : y + face.shape[0], x : x + face.shape[1]] = face
    serial = TiledDetector(detector).detect(frame)
    assert len(serial) == 3
    others = [BlazeFaceDetector.from_models_dir(models_dir, variant=detector.model.entry.variant,
                                                delegate_loader=no_tpu) for _ in range(2)]
    parallel = TiledDetector([detector, *others])
    try:
        for _ in range(3):  # tiles land on different detectors from call to call
            found = parallel.detect(frame)
            assert [d.box for d in found] == [d.box for d in serial]
            assert [d.score for d in found] == [d.score for d in serial]
            assert parallel.last_tiles_run == len(parallel.tiles((H, W)))
    finally:
        parallel.close()
    with pytest.raises(ValueError, match="at least one"):
        TiledDetector([])


def test_roi_limits_where_faces_are_looked_for(
    detector: BlazeFaceDetector, testdata: Path
) -> None:
    frame = background(testdata)
    face = small_face(testdata, detector, 50)
    frame[100 : 100 + face.shape[0], 200 : 200 + face.shape[1]] = face
    assert len(TiledDetector(detector).detect(frame)) == 1
    band = TiledDetector(detector, TilingConfig(roi=(0, 500, W, 1000)))
    assert band.detect(frame) == []
    assert all(t.box[1] >= 500 and t.box[3] <= 1000 for t in band.tiles((H, W)))


# --- pure tiling maths --------------------------------------------------------------------


@pytest.mark.parametrize("roi", [(0, 0, 1920, 1080), (100, 250, 1800, 900), (0, 0, 3840, 2160),
                                 (10, 10, 300, 200)])
def test_tiles_cover_the_roi_and_cores_partition_it(roi: tuple[int, int, int, int]) -> None:
    tile, overlap = 384, 128
    tiles = plan_tiles(roi, tile, overlap)
    x0, y0, x1, y1 = roi
    owners = np.zeros((y1 - y0, x1 - x0), np.int32)
    for t in tiles:
        bx0, by0, bx1, by1 = t.box
        assert x0 <= bx0 < bx1 <= x1 and y0 <= by0 < by1 <= y1
        assert bx1 - bx0 <= tile and by1 - by0 <= tile
        cx0, cy0, cx1, cy1 = t.core
        assert bx0 <= cx0 < cx1 <= bx1 and by0 <= cy0 < cy1 <= by1
        owners[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] += 1
    assert np.all(owners == 1)  # every pixel owned by exactly one tile
    # A face up to `overlap` px centred anywhere is wholly inside the tile owning its centre.
    rng = np.random.default_rng(0)
    for _ in range(500):
        size = int(rng.integers(20, overlap + 1))
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        (owner,) = [t for t in tiles if t.owns(cx, cy)]
        fx0, fy0 = max(x0, cx - size / 2), max(y0, cy - size / 2)
        fx1, fy1 = min(x1, cx + size / 2), min(y1, cy + size / 2)
        bx0, by0, bx1, by1 = owner.box
        assert bx0 <= fx0 and fx1 <= bx1 and by0 <= fy0 and fy1 <= by1


def test_1080p_plan_size() -> None:
    tiles = plan_tiles((0, 0, 1920, 1080), 384, 128)
    assert len(tiles) == 7 * 4


def test_bad_tiling_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="overlap"):
        plan_tiles((0, 0, 100, 100), 64, 64)
    with pytest.raises(ConfigError, match="roi"):
        plan_tiles((50, 0, 50, 100), 64, 16)


def test_tiles_with_motion_scales_the_mask() -> None:
    tiles = plan_tiles((0, 0, 800, 400), 400, 0)
    mask = np.zeros((40, 80), bool)
    mask[5, 60] = True  # frame (600, 50): right tile only
    assert tiles_with_motion(tiles, mask, (400, 800)) == [False, True]


# --- strips: the same region at the same scale in fewer, wider model calls ------------------


def test_strips_find_what_tiles_find(detector: BlazeFaceDetector, testdata: Path,
                                     models_dir: Path) -> None:
    frame = background(testdata)
    # Faces of 40-90 px, two of them across the walkway strips' boundaries (x 448-576, 896-1024).
    for width, (x, y) in ((40, (300, 420)), (60, (500, 620)), (90, (940, 700)), (50, (1500, 450))):
        face = small_face(testdata, detector, width)
        frame[y : y + face.shape[0], x : x + face.shape[1]] = face
    roi = (0, 380, W, 920)
    tiled = TiledDetector(detector, TilingConfig(roi=roi)).detect(frame)
    assert len(tiled) == 4
    # Own detectors: set_input_size resizes them (the module's detector stays square).
    own = [BlazeFaceDetector.from_models_dir(models_dir, variant=detector.model.entry.variant,
                                             delegate_loader=no_tpu) for _ in range(2)]
    strips = TiledDetector(own, TilingConfig(roi=roi, layout="strips"))
    try:
        # With an ROI the models are resized before the first frame.
        assert own[0].input_hw == own[1].input_hw == (288, 288)
        found = strips.detect(frame)
        plan = strips.tiles((H, W))
        assert strips.last_tiles_run == len(plan) == 4  # against 14 squares
        assert own[0].input_hw == own[1].input_hw == (288, 288)
    finally:
        strips.close()
    assert len(found) == len(tiled)
    for a in tiled:
        (b,) = [d for d in found if abs(d.box[0] - a.box[0]) < 8 and abs(d.box[1] - a.box[1]) < 8]
        # The same face, within the detector's jitter from one crop origin to another
        # (measured: up to 9% of a 38 px face's width in int8, 0.085 in score).
        assert np.allclose(a.box, b.box, atol=0.12 * a.width), (a.box, b.box)
        assert np.allclose(a.keypoints, b.keypoints, atol=0.12 * a.width)
        assert abs(a.score - b.score) < 0.12


@pytest.mark.parametrize("roi", [(0, 380, 1920, 920), (0, 0, 1920, 1080), (100, 250, 1800, 900),
                                 (0, 0, 3840, 2160), (10, 10, 300, 200)])
@pytest.mark.parametrize("columns", [1, 4, 8])
def test_strips_cover_the_roi_at_the_tiles_scale(roi: tuple[int, int, int, int],
                                                 columns: int) -> None:
    tile, overlap, native, stride = 384, 128, 192, 32
    strips, (in_h, in_w) = plan_strips(roi, tile, overlap, columns, native, stride)
    assert in_h % stride == 0 and in_w % stride == 0
    assert len({t.col for t in strips}) <= columns
    x0, y0, x1, y1 = roi
    owners = np.zeros((y1 - y0, x1 - x0), np.int32)
    scale = native / tile
    for t in strips:
        bx0, by0, bx1, by1 = t.box
        assert x0 <= bx0 < bx1 <= x1 and y0 <= by0 < by1 <= y1
        # Never shrunk more than a square tile is: the strip fits its input at that scale.
        assert (bx1 - bx0) * scale <= in_w and (by1 - by0) * scale <= in_h
        cx0, cy0, cx1, cy1 = t.core
        owners[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] += 1
    assert np.all(owners == 1)
    rng = np.random.default_rng(1)
    for _ in range(300):  # a face up to `overlap` px lies whole in the strip owning its centre
        size = int(rng.integers(20, overlap + 1))
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        (owner,) = [t for t in strips if t.owns(cx, cy)]
        bx0, by0, bx1, by1 = owner.box
        assert bx0 <= max(x0, cx - size / 2) and min(x1, cx + size / 2) <= bx1
        assert by0 <= max(y0, cy - size / 2) and min(y1, cy + size / 2) <= by1
