"""The one image-file reader (``edge embed``, ``edge verify``, enrolment).

A compressed image can declare far more pixels than its file size suggests: a
100 KB PNG of 30000 x 30000 pixels decodes to gigabytes. The width and height are
therefore read from the header (PNG ``IHDR``, JPEG start-of-frame) and checked
against ``max_pixels`` before the decoder sees a byte. Only JPEG and PNG are read,
the formats whose headers are checked here; anything else is refused.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Final

import numpy as np

from edge.errors import ImageError
from edge.perception.types import RGBImage

DEFAULT_MAX_PIXELS: Final = 50_000_000  # a 50 Mpx photograph; config key images.max_pixels
_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...): not C4, C8, CC
_SOF: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# markers that stand alone, without a length field
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD9)})


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageError("JPEG header is corrupt (no marker where one is due)")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise ImageError("JPEG header is corrupt (segment length below 2)")
        if marker in _SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack_from(">HH", data, pos + 5)
            if width == 0 or height == 0:
                raise ImageError("JPEG frame header gives no size")
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + length
    raise ImageError("JPEG has no frame header")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG or PNG header, without decoding; ``ImageError`` otherwise."""
    if data.startswith(_PNG_MAGIC):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageError("PNG has no IHDR header")
        width, height = struct.unpack_from(">II", data, 16)
        if width == 0 or height == 0:
            raise ImageError("PNG header gives no size")
        return width, height
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    raise ImageError("not a JPEG or PNG file")


def load_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> RGBImage:
    """Read a JPEG or PNG file as RGB uint8 after checking its pixel count; else ``ImageError``."""
    import cv2  # heavy; only the commands that read files need it

    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: no such file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageError(f"{p}: cannot read: {e.strerror}") from e
    try:
        width, height = image_size(data)
    except ImageError as e:
        raise ImageError(f"{p}: {e}") from e
    if width * height > max_pixels:
        raise ImageError(f"{p}: {width} x {height} = {width * height} pixels, above the limit of"
                         f" {max_pixels} (config images.max_pixels); not decoded")
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise ImageError(f"{p}: cannot decode: {e}") from e
    if bgr is None:
        raise ImageError(f"{p}: not a readable image")
    if bgr.shape[0] * bgr.shape[1] > max_pixels:  # the decoder read another frame than the header
        raise ImageError(f"{p}: decoded size does not match its header")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
