"""models/build_landmarks.py: dlib's serialised shape predictor decoded into dense arrays.

The head bytes are copied from ``shape_predictor_5_face_landmarks.dat``; the
tiny predictor is written by hand in dlib's portable encoding (integers: a
control byte with the byte count, 0x80 for negative, then little-endian
bytes; floats: mantissa and exponent integers; matrices: -rows, -cols, values).
End-to-end agreement with dlib is tests/test_landmarks.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from build_landmarks import _Reader, read_shape_predictor
from dlib_reader import DlibFormatError

from edge.perception.landmarks import ShapePredictor


def _int(v: int) -> bytes:
    mag = abs(v)
    body = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def _float(v: float) -> bytes:
    mantissa, exponent = float(v).as_integer_ratio()
    shift = exponent.bit_length() - 1  # exponent is a power of two
    return _int(mantissa) + _int(-shift)


def _column(values: list[float]) -> bytes:
    return _int(-len(values)) + _int(-1) + b"".join(_float(v) for v in values)


def test_head_of_the_real_file() -> None:
    head = bytes.fromhex("0101810a8101036eb8c68118030aeab08119")
    s = _Reader(head)
    assert s.integer() == 1  # shape_predictor version
    assert (-s.integer(), -s.integer()) == (10, 1)  # mean shape: 5 points, x and y
    assert s.real32() == pytest.approx(0.77625167, abs=1e-8)
    assert s.real32() == pytest.approx(0.34553558, abs=1e-8)


def _tiny(thresh: float, version: int = 1) -> bytes:
    # One point; one level of one depth-1 tree splitting on pixel 0 minus pixel 1.
    out = _int(version) + _column([0.5, 0.5])
    out += _int(1) + _int(1)  # levels, trees
    out += _int(1) + _int(0) + _int(1) + _float(thresh)  # one split: idx1, idx2, threshold
    out += _int(2) + _column([-0.25, 0.0]) + _column([0.25, 0.0])  # left, right leaf
    out += _int(1) + _int(2) + _int(0) + _int(0)  # anchors: 2 pixels on point 0
    out += _int(1) + _int(2) + _float(-0.25) + _float(0.0) + _float(0.25) + _float(0.0)
    return out


def test_a_hand_written_predictor_decodes_and_walks_its_tree(tmp_path: Path) -> None:
    path = tmp_path / "tiny.dat"
    path.write_bytes(_tiny(10.0))
    arrays = read_shape_predictor(path)
    assert arrays["leaf_values"].shape == (1, 1, 2, 1, 2)
    np.testing.assert_array_equal(arrays["deltas"][0], [[-0.25, 0.0], [0.25, 0.0]])
    sp = ShapePredictor(arrays)
    # Rectangle (0, 0)-(8, 8): pixel 0 reads x = 2, pixel 1 reads x = 6, both on row 4.
    image = np.zeros((9, 9), np.uint8)
    image[4, 2] = 200  # pixel 0 - pixel 1 = 200 > 10: left child, the point moves left
    np.testing.assert_allclose(sp.predict(image, (0, 0, 8, 8)), [[2.0, 4.0]])
    image[4, 6] = 195  # difference 5, not above 10: right child
    np.testing.assert_allclose(sp.predict(image, (0, 0, 8, 8)), [[6.0, 4.0]])


def test_malformed_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.dat"
    for data in (_tiny(1.0, version=2), _tiny(1.0)[:-3], _tiny(1.0) + b"\x01\x00"):
        path.write_bytes(data)
        with pytest.raises(DlibFormatError):
            read_shape_predictor(path)
