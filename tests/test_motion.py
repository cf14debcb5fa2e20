"""Motion gate: still scenes go quiet, a moving face's tile lights up, others stay dark."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.pipeline.motion import MotionGate, to_lores_grey

W, H = 1280, 720
TILES = [(x, y, x + 320, y + 360) for y in (0, 360) for x in range(0, W, 320)]


def background(testdata: Path) -> np.ndarray:
    grey = cv2.imread(str(testdata / "gravel.png"), cv2.IMREAD_GRAYSCALE)
    assert grey is not None
    tiled = np.tile(grey, (2, 3))[:H, :W]
    return np.ascontiguousarray(np.repeat(tiled[..., None], 3, axis=2))


def noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def test_first_frame_is_all_active_then_a_still_noisy_scene_is_quiet(testdata: Path) -> None:
    rng = np.random.default_rng(0)
    bg = background(testdata)
    gate = MotionGate((W, H))
    first = gate.update(noisy(bg, rng))
    assert first.forced and all(first.active_tiles(TILES))
    for _ in range(5):
        m = gate.update(noisy(bg, rng))
    assert not m.forced and not any(m.active_tiles(TILES))


def test_moving_face_activates_only_its_tiles(testdata: Path) -> None:
    rng = np.random.default_rng(1)
    bg = background(testdata)
    photo = cv2.imread(str(testdata / "obama.jpg"))
    assert photo is not None
    face = cv2.resize(photo[130:420, 350:630], (60, 60))
    gate = MotionGate((W, H))
    for i in range(8):
        frame = noisy(bg, rng)
        x = 100 + 12 * i  # walking right inside tile 0 (0..320, 0..360)
        frame[150:210, x:x + 60] = face
        m = gate.update(frame)
    flags = m.active_tiles(TILES)
    assert flags[0] and not any(flags[1:]), flags
    assert m.activity((x, 150, x + 60, 210)) > 0.2
    assert m.activity((700, 500, 900, 700)) == 0.0


def test_a_strip_wakes_on_as_much_motion_as_a_tile_would(testdata: Path) -> None:
    rng = np.random.default_rng(2)
    bg = background(testdata)
    photo = cv2.imread(str(testdata / "obama.jpg"))
    assert photo is not None
    face = cv2.resize(photo[130:420, 350:630], (24, 24))  # a small, distant face
    tile, strip = (0, 0, 320, 360), (0, 0, 640, 720)
    plain, windowed = MotionGate((W, H), min_active=0.004), \
        MotionGate((W, H), min_active=0.004, window=320 * 360)
    for i in range(8):
        frame = noisy(bg, rng)
        x = 100 + 5 * i
        frame[150:174, x:x + 24] = face
        a, b = plain.update(frame), windowed.update(frame)
    assert a.active(tile) and b.active(tile)
    # Four tiles' area: the share of it that moved is a quarter, below the threshold...
    assert not a.active(strip)
    # ...but the same moved pixels in a tile-sized window wake the strip.
    assert b.active(strip) and b.activity(strip) == b.activity(tile)
    assert not b.active((640, 0, 1280, 720))


def test_lores_grey_input_and_periodic_refresh(testdata: Path) -> None:
    bg = background(testdata)
    lores = to_lores_grey(bg, 320)
    assert lores.shape == (180, 320)
    gate = MotionGate((W, H), refresh_every=3)
    maps = [gate.update(lores) for _ in range(6)]
    assert [m.forced for m in maps] == [True, False, True, False, False, True]
    assert not maps[1].any_motion


def test_a_lasting_change_is_absorbed_into_the_background(testdata: Path) -> None:
    bg = background(testdata)
    changed = bg.copy()
    changed[400:500, 700:800] = 255  # something left on the pavement
    gate = MotionGate((W, H), alpha_slow=0.05)
    gate.update(bg)
    box = (700, 400, 800, 500)
    assert gate.update(changed).active(box)
    for _ in range(150):
        m = gate.update(changed)
    assert not m.active(box)
