"""Decompression bombs (issue 11, item 17): the pixel count is read from the header and
checked against the configured limit before anything is decoded, by the one reader that
``edge embed``/``edge verify`` and enrolment share."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.authority.enrol import read_rgb
from edge.config import parse
from edge.errors import ConfigError, ImageError
from edge.perception.cli import load_image
from edge.perception.imageio import DEFAULT_MAX_PIXELS, image_size


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, side: int) -> int:
    """A valid all-black greyscale PNG of side x side pixels, compressed row by row."""
    z = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    chunks = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path.stat().st_size


def test_a_png_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    size = png_bomb(bomb, 4000)  # 16 Mpx (48 MB decoded) from about 16 KB
    assert size < 50_000
    limit = 10_000_000
    for reader in (load_image, read_rgb):
        with pytest.raises(ImageError, match="16000000 pixels") as info:
            reader(bomb, max_pixels=limit)
        assert "10000000" in str(info.value)
    # the same file under a limit above it decodes (the check is on the header, not a guess)
    assert load_image(bomb, max_pixels=20_000_000).shape == (4000, 4000, 3)


def test_header_sizes_match_the_decoder_and_other_formats_are_refused(tmp_path: Path, testdata: Path) -> None:
    for name in ("obama.jpg", "astronaut.png", "t1.jpg", "brick.png"):
        data = (testdata / name).read_bytes()
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image_size(data) == (decoded.shape[1], decoded.shape[0]), name
        assert read_rgb(testdata / name).shape == decoded.shape
    # a JPEG whose frame header claims 60000 x 60000 is refused without decoding
    ok, enc = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    jpeg = enc.tobytes()  # no thumbnail: the first baseline frame header is the image's
    sof = jpeg.find(b"\xff\xc0")
    assert image_size(jpeg) == (64, 64) and sof > 0
    bomb = jpeg[: sof + 5] + struct.pack(">HH", 60000, 60000) + jpeg[sof + 9:]
    (tmp_path / "bomb.jpg").write_bytes(bomb)
    with pytest.raises(ImageError, match="3600000000 pixels"):
        load_image(tmp_path / "bomb.jpg")
    ok, bmp = cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))
    assert ok
    (tmp_path / "x.bmp").write_bytes(bmp.tobytes())
    with pytest.raises(ImageError, match="JPEG or PNG"):
        load_image(tmp_path / "x.bmp")
    for junk in (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00", b"\xff\xd8" + b"\xff\x01" * 5):
        (tmp_path / "junk").write_bytes(junk)
        with pytest.raises(ImageError):
            load_image(tmp_path / "junk")


def test_the_limit_is_a_config_key() -> None:
    device = {"id": "cam-1", "camera_id": "cam0", "site": "s"}
    assert parse({"device": device}).images.max_pixels == DEFAULT_MAX_PIXELS
    assert parse({"device": device, "images": {"max_pixels": 1000}}).images.max_pixels == 1000
    with pytest.raises(ConfigError, match=r"images\.max_pixels"):
        parse({"device": device, "images": {"max_pixels": 0}})
