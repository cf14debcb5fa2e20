"""Read an MXNet model (``-symbol.json`` + ``-NNNN.params``) without MXNet, and run it in numpy.

The ``.params`` file is MXNet's NDArray list format (``mx.nd.save``), read
here from its layout in MXNet's ``src/ndarray/ndarray.cc``, all little-endian:

    uint64 magic 0x112, uint64 reserved
    uint64 count, then per array:
        uint32 magic: 0xF993FAC9 (V2) or 0xF993FACA (V3; both int64 dims), or, in
        the legacy layout, no magic: the uint32 ndim with uint32 dims follows directly
        V2/V3: int32 storage type (0 = dense; sparse arrays are refused here)
        uint32 ndim, ndim x int64 dims (uint32 dims in the legacy layout)
        int32 device type, int32 device id
        int32 dtype flag (0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8, 6 int64)
        the elements, C order
    uint64 count, then per name: uint64 length, bytes ("arg:conv1_weight", "aux:bn1_moving_mean")

The symbol file is MXNet's JSON graph (``nodes`` with ``op``, ``name``,
``attrs`` and ``inputs`` as [node, output, version]; ``heads``). ``forward``
runs that graph in numpy with MXNet's semantics (NCHW, symmetric padding,
BatchNorm with the moving statistics and MXNet's default eps 1e-3, Flatten in
C order of NCHW) for the ops a MobileNet-style embedder uses. It is the
reference the TensorFlow rebuild (``build_mobileface.py``) is checked against.
"""

from __future__ import annotations

import ast
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

LIST_MAGIC = 0x112
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8,
          6: np.int64}
BN_EPS_DEFAULT = 1e-3  # MXNet's BatchNorm default


class MXNetFormatError(ValueError):
    pass


def _read(f: BinaryIO, fmt: str) -> tuple[Any, ...]:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise MXNetFormatError("file ends early")
    return struct.unpack(fmt, data)


def _read_array(f: BinaryIO) -> np.ndarray:
    (first,) = _read(f, "<I")
    if first in (V2_MAGIC, V3_MAGIC):
        (stype,) = _read(f, "<i")
        if stype != 0:
            raise MXNetFormatError(f"sparse storage type {stype} is not supported")
        (ndim,) = _read(f, "<I")
        shape = _read(f, f"<{ndim}q")
    else:  # legacy layout: the word read was ndim
        ndim = first
        shape = _read(f, f"<{ndim}I")
    if ndim == 0:
        return np.zeros((0,), np.float32)
    _read(f, "<ii")  # device type, device id
    (flag,) = _read(f, "<i")
    if flag not in DTYPES:
        raise MXNetFormatError(f"unknown dtype flag {flag}")
    dtype = np.dtype(DTYPES[flag]).newbyteorder("<")
    count = int(np.prod(shape))
    raw = f.read(count * dtype.itemsize)
    if len(raw) != count * dtype.itemsize:
        raise MXNetFormatError("array data ends early")
    return np.frombuffer(raw, dtype).reshape(shape).astype(DTYPES[flag])


def read_params(path: Path) -> dict[str, np.ndarray]:
    """Every array of an NDArray list file by name, the "arg:"/"aux:" prefix removed."""
    with path.open("rb") as f:
        magic, _ = _read(f, "<QQ")
        if magic != LIST_MAGIC:
            raise MXNetFormatError(f"{path.name}: magic {magic:#x} is not an NDArray list")
        (count,) = _read(f, "<Q")
        arrays = [_read_array(f) for _ in range(count)]
        (n_names,) = _read(f, "<Q")
        if n_names != count:
            raise MXNetFormatError(f"{path.name}: {count} arrays but {n_names} names")
        names = []
        for _ in range(n_names):
            (length,) = _read(f, "<Q")
            names.append(f.read(length).decode("utf-8"))
        if f.read(1):
            raise MXNetFormatError(f"{path.name}: trailing bytes")
    return {n.split(":", 1)[-1]: a for n, a in zip(names, arrays, strict=True)}


@dataclass(frozen=True)
class Node:
    op: str
    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    inputs: tuple[int, ...] = ()  # node indices (every op here has one output)

    def tuple_attr(self, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
        raw = self.attrs.get(key)
        if raw is None:
            return default
        value = ast.literal_eval(raw)
        return tuple(int(v) for v in (value if isinstance(value, tuple) else (value,)))

    def float_attr(self, key: str, default: float) -> float:
        return float(self.attrs.get(key, default))

    def flag(self, key: str, default: bool = False) -> bool:
        return self.attrs.get(key, str(default)).lower() in ("true", "1")


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    heads: tuple[int, ...]


def read_symbol(path: Path) -> Graph:
    doc = json.loads(path.read_text(encoding="utf-8"))
    nodes = []
    for n in doc["nodes"]:
        attrs = n.get("attrs", n.get("attr", n.get("param", {}))) or {}
        for _, out, *_ in n["inputs"]:
            if out != 0:
                raise MXNetFormatError(f"{n['name']}: multi-output inputs are not supported")
        nodes.append(Node(n["op"], n["name"], {k: str(v) for k, v in attrs.items()},
                          tuple(int(i[0]) for i in n["inputs"])))
    return Graph(tuple(nodes), tuple(int(h[0]) for h in doc["heads"]))


# --- numpy forward pass ----------------------------------------------------------------


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: tuple[int, int],
           pad: tuple[int, int], groups: int) -> np.ndarray:
    """MXNet Convolution on one NCHW batch: w (O, I/groups, kh, kw), symmetric zero padding."""
    c = x.shape[1]
    o, ipg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    # win: (N, C, OH, OW, kh, kw)
    if groups == 1:
        y = np.einsum("nchwij,ocij->nohw", win, w, optimize=True)
    elif ipg == 1 and o == c == groups:  # depthwise
        y = np.einsum("nchwij,cij->nchw", win, w[:, 0], optimize=True)
    else:
        opg = o // groups
        y = np.concatenate([
            np.einsum("nchwij,ocij->nohw", win[:, g * ipg:(g + 1) * ipg],
                      w[g * opg:(g + 1) * opg], optimize=True)
            for g in range(groups)], axis=1)
    if b is not None:
        y = y + b[None, :, None, None]
    return y.astype(np.float64)


def forward(graph: Graph, params: dict[str, np.ndarray], data: np.ndarray) -> np.ndarray:
    """Run the graph in float64 on ``data`` (N, C, H, W) as MXNet would in inference."""
    vals: dict[int, np.ndarray] = {}
    for i, node in enumerate(graph.nodes):
        args = [vals[j] for j in node.inputs]
        if node.op == "null":
            vals[i] = (np.asarray(data, np.float64) if node.name == "data"
                       else params[node.name].astype(np.float64))
        elif node.op == "_minus_scalar":
            vals[i] = args[0] - node.float_attr("scalar", 0.0)
        elif node.op == "_mul_scalar":
            vals[i] = args[0] * node.float_attr("scalar", 1.0)
        elif node.op == "_maximum_scalar":
            vals[i] = np.maximum(args[0], node.float_attr("scalar", 0.0))
        elif node.op == "_minimum_scalar":
            vals[i] = np.minimum(args[0], node.float_attr("scalar", 0.0))
        elif node.op == "elemwise_add":
            vals[i] = args[0] + args[1]
        elif node.op == "Convolution":
            kernel = node.tuple_attr("kernel", (1, 1))
            if args[1].shape[2:] != kernel:
                raise MXNetFormatError(f"{node.name}: weight {args[1].shape} vs kernel {kernel}")
            stride = node.tuple_attr("stride", (1, 1))
            pad = node.tuple_attr("pad", (0, 0))
            if node.tuple_attr("dilate", (1, 1)) != (1, 1):
                raise MXNetFormatError(f"{node.name}: dilated convolution is not supported")
            bias = None if node.flag("no_bias") else args[2]
            vals[i] = conv2d(args[0], args[1], bias, (stride[0], stride[1]), (pad[0], pad[1]),
                             int(node.attrs.get("num_group", "1")))
        elif node.op == "BatchNorm":
            x, gamma, beta, mean, var = args
            if node.flag("fix_gamma", True):
                gamma = np.ones_like(gamma)
            eps = node.float_attr("eps", BN_EPS_DEFAULT)
            shape = (1, -1) + (1,) * (x.ndim - 2)
            vals[i] = ((x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
                       * gamma.reshape(shape) + beta.reshape(shape))
        elif node.op == "Flatten":
            vals[i] = args[0].reshape(args[0].shape[0], -1)
        elif node.op == "FullyConnected":
            y = args[0].reshape(args[0].shape[0], -1) @ args[1].T
            vals[i] = y if node.flag("no_bias") else y + args[2]
        else:
            raise MXNetFormatError(f"{node.name}: op {node.op} is not supported")
    if len(graph.heads) != 1:
        raise MXNetFormatError(f"expected one output, the graph has {len(graph.heads)}")
    return vals[graph.heads[0]]


__all__ = ["Graph", "MXNetFormatError", "Node", "conv2d", "forward", "read_params", "read_symbol"]
