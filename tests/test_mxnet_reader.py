"""MXNet's NDArray-list and symbol formats, read by models/mxnet_reader.py without MXNet.

The byte strings are laid out from MXNet's documented serialisation
(``src/ndarray/ndarray.cc``: list magic 0x112, per-array V2 magic 0xF993FAC9,
storage type, int64 shape, context, dtype flag, data; then the names), not
written by our own code. The last test reads the real MobileFace V2 weights
when ``../shared/models-src`` is present and checks the committed TFLite file
against the numpy forward pass on real aligned faces.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from mxnet_reader import MXNetFormatError, conv2d, forward, read_params, read_symbol

MOBILEFACE_SRC = Path(__file__).resolve().parents[2] / "shared" / "models-src" / "mobileface-v2"


def _v2_array(a: np.ndarray, flag: int) -> bytes:
    head = struct.pack("<IiI", 0xF993FAC9, 0, a.ndim) + struct.pack(f"<{a.ndim}q", *a.shape)
    return head + struct.pack("<iii", 1, 0, flag) + a.tobytes()


def _legacy_array(a: np.ndarray, flag: int) -> bytes:
    head = struct.pack("<I", a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape)
    return head + struct.pack("<iii", 1, 0, flag) + a.tobytes()


def _names(names: list[str]) -> bytes:
    out = struct.pack("<Q", len(names))
    for n in names:
        out += struct.pack("<Q", len(n)) + n.encode()
    return out


def test_reads_v2_and_legacy_arrays(tmp_path: Path) -> None:
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    m = np.array([1.5, -2.0], np.float32)
    k = np.array([7, -1, 3], np.int32)
    blob = (struct.pack("<QQQ", 0x112, 0, 3) + _v2_array(w, 0) + _legacy_array(m, 0)
            + _v2_array(k, 4) + _names(["arg:conv_weight", "aux:bn_moving_mean", "arg:k"]))
    path = tmp_path / "x.params"
    path.write_bytes(blob)
    got = read_params(path)
    assert list(got) == ["conv_weight", "bn_moving_mean", "k"]
    np.testing.assert_array_equal(got["conv_weight"], w)
    np.testing.assert_array_equal(got["bn_moving_mean"], m)
    assert got["k"].dtype == np.int32 and got["k"].tolist() == [7, -1, 3]


def test_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "x.params"
    path.write_bytes(struct.pack("<QQQ", 0x113, 0, 0))
    with pytest.raises(MXNetFormatError, match="magic"):
        read_params(path)
    a = np.zeros(4, np.float32)
    path.write_bytes(struct.pack("<QQQ", 0x112, 0, 1) + _v2_array(a, 0)[:-4])
    with pytest.raises(MXNetFormatError, match="ends early"):
        read_params(path)
    sparse = struct.pack("<IiI", 0xF993FAC9, 1, 1) + struct.pack("<q", 4)
    path.write_bytes(struct.pack("<QQQ", 0x112, 0, 1) + sparse)
    with pytest.raises(MXNetFormatError, match="sparse"):
        read_params(path)


def test_forward_follows_mxnet_semantics(tmp_path: Path) -> None:
    """A two-node graph computed by hand: (x - 1) * 2 -> 3x3 conv, pad 1, stride 2 -> BN."""
    nodes = [
        {"op": "null", "name": "data", "inputs": []},
        {"op": "_minus_scalar", "name": "m", "attrs": {"scalar": "1"}, "inputs": [[0, 0, 0]]},
        {"op": "_mul_scalar", "name": "s", "attrs": {"scalar": "2"}, "inputs": [[1, 0, 0]]},
        {"op": "null", "name": "c_weight", "inputs": []},
        {"op": "Convolution", "name": "c", "attrs": {"kernel": "(3, 3)", "num_filter": "1",
         "pad": "(1, 1)", "stride": "(2, 2)", "no_bias": "True"}, "inputs": [[2, 0, 0], [3, 0, 0]]},
        *({"op": "null", "name": f"bn_{p}", "inputs": []}
          for p in ("gamma", "beta", "moving_mean", "moving_var")),
        {"op": "BatchNorm", "name": "bn", "attrs": {"fix_gamma": "False"},
         "inputs": [[4, 0, 0], [5, 0, 0], [6, 0, 0], [7, 0, 0], [8, 0, 0]]},
    ]
    sym = tmp_path / "g-symbol.json"
    sym.write_text(json.dumps({"nodes": nodes, "heads": [[9, 0, 0]]}))
    params = {"c_weight": np.ones((1, 1, 3, 3), np.float32),
              "bn_gamma": np.array([2.0], np.float32), "bn_beta": np.array([1.0], np.float32),
              "bn_moving_mean": np.array([0.5], np.float32),
              "bn_moving_var": np.array([4.0 - 1e-3], np.float32)}
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    y = forward(read_symbol(sym), params, x)
    z = (x - 1) * 2
    zp = np.pad(z[0, 0], 1)
    conv = np.array([[zp[r:r + 3, c:c + 3].sum() for c in (0, 2)] for r in (0, 2)])
    np.testing.assert_allclose(y[0, 0], (conv - 0.5) / 2.0 * 2.0 + 1.0, rtol=1e-6)


def test_depthwise_and_grouped_convolution() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 4, 5, 5))
    w = rng.normal(size=(4, 1, 3, 3))
    dw = conv2d(x, w, None, (1, 1), (1, 1), 4)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.array([[[(xp[0, c, r:r + 3, q:q + 3] * w[c, 0]).sum() for q in range(5)]
                      for r in range(5)] for c in range(4)])
    np.testing.assert_allclose(dw[0], want, rtol=1e-9)
    g2 = conv2d(x, rng.normal(size=(2, 2, 1, 1)), None, (1, 1), (0, 0), 2)
    assert g2.shape == (1, 2, 5, 5)


@pytest.mark.skipif(not MOBILEFACE_SRC.is_dir(), reason="../shared/models-src is not mounted")
def test_mobileface_tflite_matches_the_numpy_graph(testdata: Path, models_dir: Path) -> None:
    from edge.perception.analyzer import ChipEmbedder, detect_with_close_up
    from edge.perception.cli import load_image
    from edge.perception.detector import BlazeFaceDetector

    params = read_params(MOBILEFACE_SRC / "MobileFace_Identification_V2-0000.params")
    graph = read_symbol(MOBILEFACE_SRC / "MobileFace_Identification_V2-symbol.json")
    assert sum(v.size for v in params.values()) == 892384
    det = BlazeFaceDetector.from_models_dir(models_dir, variant="float32")
    ours = ChipEmbedder.from_models_dir(models_dir, "float", family="mobileface_v2")
    for name in ("obama.jpg", "biden.jpg", "Tom_Hanks_54745.png"):
        image = load_image(testdata / name)
        (face,) = detect_with_close_up(det, image)
        chips, emb = ours.from_keypoints(image, [face.keypoints])
        ref = forward(graph, params, chips.transpose(0, 3, 1, 2).astype(np.float64))[0]
        cos = float(emb[0] @ (ref / np.linalg.norm(ref)))
        assert cos >= 0.9999, (name, cos)
