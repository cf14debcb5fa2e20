"""dlib's portable serialisation, decoded by models/dlib_reader.py.

The byte strings are copied from the head of
``dlib_face_recognition_resnet_model_v1.dat`` and from dlib's documented
format (serialize.h, cuda/tensor.h), not produced by our own code.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from dlib_reader import DlibFormatError, _Stream, anet_spec


def test_file_head_loss_layer() -> None:
    # add_loss_layer version 1, "loss_metric_2", margin 0.04, distance threshold 0.6
    head = bytes.fromhex("0101010d") + b"loss_metric_2" + bytes.fromhex(
        "030ad7a3811c" "039a99998118")
    s = _Stream(head)
    assert s.integer() == 1
    assert s.string() == "loss_metric_2"
    assert s.real() == pytest.approx(0.04, rel=1e-7)
    assert s.real() == pytest.approx(0.6, rel=1e-7)
    assert s.pos == len(head)


def test_integers_signs_and_sizes() -> None:
    s = _Stream(bytes.fromhex("0100" "822c01" "0402000080" "81ff"))
    assert [s.integer() for _ in range(4)] == [0, -300, 0x80000002, -255]
    with pytest.raises(DlibFormatError):
        _Stream(bytes.fromhex("00")).integer()  # size 0 is invalid
    with pytest.raises(DlibFormatError):
        _Stream(bytes.fromhex("02ff")).integer()  # truncated


def test_tensor_and_bool() -> None:
    data = struct.pack("<3f", 1.5, -2.0, 0.25)
    raw = bytes.fromhex("0102" "0101" "0103" "0101" "0101") + data + b"10"
    s = _Stream(raw)
    t = s.tensor()
    assert t.shape == (1, 3, 1, 1)
    np.testing.assert_array_equal(t.reshape(-1), [1.5, -2.0, 0.25])
    assert s.boolean() is True and s.boolean() is False
    with pytest.raises(DlibFormatError):
        _Stream(bytes.fromhex("0103")).tensor()  # tensor version must be 2


def test_anet_layout() -> None:
    spec = anet_spec()
    convs = [a for k, a in spec if k == "conv"]
    assert len(convs) == 29  # 1 stem + 14 residual blocks x 2
    assert convs[-1] == (32, 7, 2) and convs[0] == (256, 3, 1)
    assert sum(1 for k, _ in spec if k == "add_prev") == 14
    assert spec[0] == ("fc", (128,))
