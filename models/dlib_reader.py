"""Read dlib's serialised face-recognition ResNet (``anet_type``) in pure Python.

dlib writes a network as nested wrappers: every ``add_layer``/``add_tag_layer``/
``add_skip_layer`` first writes an integer version, then its whole sub-network,
and only then (for ``add_layer``) its own layer details and bookkeeping tensors.
The stream is therefore not self-describing about which wrapper comes next; we
walk it with the known ``anet_type`` definition from dlib's
``dnn_face_recognition_ex.cpp`` and check every layer's version string and
hyper-parameters against it, so a different file fails loudly instead of being
misread.

Encodings (from dlib/serialize.h, float_details.h, cuda/tensor.h):
- integers: one control byte (low nibble = byte count, 0x80 = negative),
  then that many little-endian bytes;
- floats/doubles: an int64 mantissa and an int16 exponent, value = m * 2**e;
- strings: unsigned length, then the bytes; bools: ASCII '0'/'1';
- tensors: int version (2), four int64 dims (n, k, nr, nc), then little-endian
  float32 data; alias tensors: version 1 and the four dims only.

The result is a flat list of operations in input-to-output order plus a numpy
forward pass (:func:`forward`) that follows dlib's semantics (zero padding 0
for strided layers, ``add_prev`` zero-padding the smaller operand at the high
end), used to check the TensorFlow rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


class DlibFormatError(ValueError):
    """The byte stream does not hold the expected dlib network."""


# --- primitive decoding -------------------------------------------------------------


class _Stream:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of file at byte {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8:
            raise DlibFormatError(f"bad integer control byte 0x{ctrl:02x} at {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if ctrl & 0x80 else value

    def real(self) -> float:
        if self.data[self.pos] & 0x70:
            raise DlibFormatError("old ASCII float encoding is not supported")
        mantissa = self.integer()
        exponent = self.integer()
        if exponent >= 32000:  # is_inf, is_ninf, is_nan
            return {32000: float("inf"), 32001: float("-inf")}.get(exponent, float("nan"))
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        n = self.integer()
        return self._take(n).decode("ascii")

    def boolean(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool byte {ch!r} at {self.pos - 1}")
        return ch == b"1"

    def tensor(self) -> F32:
        if (version := self.integer()) != 2:
            raise DlibFormatError(f"tensor version {version}, expected 2")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        if (version := self.integer()) != 1:
            raise DlibFormatError(f"alias tensor version {version}, expected 1")
        n, k, nr, nc = (self.integer() for _ in range(4))
        return n, k, nr, nc

    def expect(self, *versions: str) -> str:
        version = self.string()
        if version not in versions:
            raise DlibFormatError(f"found layer {version!r}, expected one of {versions}")
        return version


# --- operations (input-to-output order) ---------------------------------------------


@dataclass
class Op:
    kind: str  # input conv affine relu max_pool avg_pool tag skip add_prev fc
    stride: int = 1
    size: int = 0  # kernel/pool size; 0 for avg_pool means "everything"
    pad: int = 0
    ref: int = 0  # tag id for tag/skip/add_prev
    weights: F32 | None = None  # conv: (O, I, kh, kw); fc: (in, out)
    bias: F32 | None = None
    gamma: F32 | None = None
    beta: F32 | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # input: per-channel mean (RGB)
    extra: dict[str, float] = field(default_factory=dict)


# The anet_type definition, outermost wrapper first. Tuples: (wrapper, spec).
Spec = tuple[str, tuple[int, ...]]


def _ares(n: int) -> list[Spec]:
    # relu<add_prev1<affine<con<n,3,3,1,1,relu<affine<con<n,3,3,1,1,tag1<...>>>>>>>>>
    return [("relu", ()), ("add_prev", (1,)), ("affine", ()), ("conv", (n, 3, 1)),
            ("relu", ()), ("affine", ()), ("conv", (n, 3, 1)), ("tag", (1,))]


def _ares_down(n: int) -> list[Spec]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block(n, stride 2)<tag1<...>>>>>>>>
    return [("relu", ()), ("add_prev", (2,)), ("avg_pool", (2, 2)), ("skip", (1,)),
            ("tag", (2,)), ("affine", ()), ("conv", (n, 3, 1)), ("relu", ()),
            ("affine", ()), ("conv", (n, 3, 2)), ("tag", (1,))]


def anet_spec() -> list[Spec]:
    """Wrappers of dlib's face recognition ``anet_type``, outermost first."""
    spec: list[Spec] = [("fc", (128,)), ("avg_pool", (0, 1))]
    spec += _ares_down(256)  # alevel0
    spec += _ares(256) + _ares(256) + _ares_down(256)  # alevel1
    spec += _ares(128) + _ares(128) + _ares_down(128)  # alevel2
    spec += _ares(64) + _ares(64) + _ares(64) + _ares_down(64)  # alevel3
    spec += _ares(32) + _ares(32) + _ares(32)  # alevel4
    spec += [("max_pool", (3, 2)), ("relu", ()), ("affine", ()), ("conv", (32, 7, 2))]
    return spec


def _default_pad(size: int, stride: int) -> int:
    # dlib's default for con_, max_pool_ and avg_pool_: size/2 when stride is 1, else 0.
    return size // 2 if stride == 1 else 0


def _read_details(s: _Stream, kind: str, args: tuple[int, ...]) -> Op:
    if kind == "conv":
        n, size, stride = args
        version = s.expect("con_4", "con_5", "con_6")
        params = s.tensor().reshape(-1)
        num_filters = s.integer()
        nr, nc, sy, sx, py, px = (s.integer() for _ in range(6))
        fshape = s.alias_tensor()
        bshape = s.alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            s.real()
        use_bias = s.boolean() if version in ("con_5", "con_6") else True
        use_relu = s.boolean() if version == "con_6" else False
        pad = _default_pad(size, stride)
        if (num_filters, nr, nc, sy, sx, py, px) != (n, size, size, stride, stride, pad, pad):
            raise DlibFormatError(f"conv hyper-parameters {num_filters, nr, nc, sy, sx, py, px}")
        if use_relu:
            raise DlibFormatError("fused conv+relu (con_6 use_relu) is not expected here")
        nf = int(np.prod(fshape))
        w = params[:nf].reshape(fshape)
        b = params[nf : nf + n].copy() if use_bias else np.zeros(n, np.float32)
        if use_bias and int(np.prod(bshape)) != n:
            raise DlibFormatError(f"conv bias shape {bshape}")
        return Op("conv", stride=stride, size=size, pad=pad, weights=w, bias=b)
    if kind == "affine":
        version = s.expect("affine_", "affine_2", "bn_con2")
        if version == "bn_con2":
            return _affine_from_bn(s)
        params = s.tensor().reshape(-1)
        gshape = s.alias_tensor()
        s.alias_tensor()
        mode = s.integer()
        disabled = s.boolean() if version == "affine_2" else False
        if mode != 0:
            raise DlibFormatError("affine layer in FC mode where CONV mode was expected")
        k = int(np.prod(gshape))
        if disabled:
            return Op("affine", gamma=np.ones(0, np.float32), beta=np.zeros(0, np.float32))
        return Op("affine", gamma=params[:k].copy(), beta=params[k : 2 * k].copy())
    if kind == "relu":
        version = s.expect("relu_", "relu_2")
        disabled = s.boolean() if version == "relu_2" else False
        return Op("identity" if disabled else "relu")
    if kind in ("max_pool", "avg_pool"):
        size, stride = args
        s.expect(f"{kind}_2")
        nr, nc, sy, sx, py, px = (s.integer() for _ in range(6))
        pad = _default_pad(size, stride) if size else 0
        if (nr, nc, sy, sx, py, px) != (size, size, stride, stride, pad, pad):
            raise DlibFormatError(f"{kind} hyper-parameters {nr, nc, sy, sx, py, px}")
        return Op(kind, size=size, stride=stride, pad=pad)
    if kind == "add_prev":
        s.expect("add_prev_")
        return Op("add_prev", ref=args[0])
    if kind == "fc":
        version = s.expect("fc_2", "fc_3")
        num_outputs = s.integer()
        num_inputs = s.integer()
        params = s.tensor()
        wshape = s.alias_tensor()
        s.alias_tensor()
        bias_mode = s.integer()
        for _ in range(4):
            s.real()
        use_bias = s.boolean() if version == "fc_3" else True
        if num_outputs != args[0] or bias_mode != 1:  # FC_NO_BIAS == 1
            raise DlibFormatError(f"fc outputs {num_outputs}, bias mode {bias_mode}")
        del use_bias  # no bias in fc_no_bias whatever the flag says
        fc_w = params.reshape(-1)[: num_inputs * num_outputs].reshape(num_inputs, num_outputs)
        if wshape[:2] != (num_inputs, num_outputs):
            raise DlibFormatError(f"fc weight alias {wshape}")
        return Op("fc", weights=fc_w.copy())
    raise DlibFormatError(f"unknown layer kind {kind}")


def _affine_from_bn(s: _Stream) -> Op:
    # A bn_ layer stored where an affine_ is expected: use its running statistics,
    # exactly as dlib's affine_(const bn_&) constructor does.
    params = s.tensor().reshape(-1)
    gshape = s.alias_tensor()
    s.alias_tensor()
    s.tensor()  # means (training batch)
    s.tensor()  # invstds (training batch)
    running_means = s.tensor().reshape(-1)
    running_vars = s.tensor().reshape(-1)
    s.integer()  # num_updates
    s.integer()  # running_stats_window_size
    for _ in range(4):
        s.real()
    eps = s.real()
    k = int(np.prod(gshape))
    gamma = params[:k] / np.sqrt(running_vars + eps)
    beta = params[k : 2 * k] - gamma * running_means
    return Op("affine", gamma=gamma.astype(np.float32), beta=beta.astype(np.float32))


def _read_trailer(s: _Stream, version: int, *, first: bool) -> None:
    """Skip add_layer's bookkeeping: flags and gradient/cache tensors."""
    for _ in range(3):
        s.boolean()
    s.tensor()  # x_grad
    s.tensor()  # cached_output
    if first:
        s.tensor()  # grad_final
        if version >= 3:
            s.integer()  # sample expansion factor
    elif version == 2:
        s.tensor()  # params_grad


@dataclass
class DlibNet:
    ops: list[Op]
    loss: str
    margin: float
    distance_threshold: float

    @property
    def mean_rgb(self) -> tuple[float, float, float]:
        return self.ops[0].mean


def read_dlib_net(path: Path | str) -> DlibNet:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` into input-to-output ops."""
    s = _Stream(Path(path).read_bytes())
    if s.integer() != 1:
        raise DlibFormatError("add_loss_layer version")
    loss = s.expect("loss_metric_", "loss_metric_2")
    margin, thresh = (s.real(), s.real()) if loss == "loss_metric_2" else (0.1, 0.75)
    spec = anet_spec()
    versions = [s.integer() for _ in spec]  # one version per wrapper, outermost first
    s.expect("input_rgb_image_sized")
    mean = (s.real(), s.real(), s.real())
    if (s.integer(), s.integer()) != (150, 150):
        raise DlibFormatError("input size is not 150x150")
    ops: list[Op] = [Op("input", mean=mean)]
    innermost = True
    for (kind, args), version in zip(reversed(spec), reversed(versions), strict=True):
        if kind in ("tag", "skip"):
            ops.append(Op(kind, ref=args[0]))
            continue
        ops.append(_read_details(s, kind, args))
        _read_trailer(s, version, first=innermost)
        innermost = False
    if s.pos != len(s.data):
        raise DlibFormatError(f"{len(s.data) - s.pos} trailing bytes")
    return DlibNet(ops=ops, loss=loss, margin=margin, distance_threshold=thresh)


# --- numpy reference forward pass (NCHW, one sample at a time, dlib semantics) -----


def _conv(x: F32, w: F32, b: F32, stride: int, pad: int) -> F32:
    c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - k) // stride + 1
    ow = (wd + 2 * pad - k) // stride + 1
    cols = np.empty((c, k, k, oh, ow), np.float32)
    for i in range(k):
        for j in range(k):
            cols[:, i, j] = xp[:, i : i + stride * oh : stride, j : j + stride * ow : stride]
    out = w.reshape(o, -1) @ cols.reshape(c * k * k, oh * ow)
    return (out.reshape(o, oh, ow) + b[:, None, None]).astype(np.float32)


def _pool(x: F32, size: int, stride: int, how: str) -> F32:
    if size == 0:
        mean: F32 = x.mean(axis=(1, 2), keepdims=True)
        return mean
    _, h, w = x.shape
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    win = np.stack([x[:, i : i + stride * oh : stride, j : j + stride * ow : stride]
                    for i in range(size) for j in range(size)])
    out: F32 = (win.max(axis=0) if how == "max" else win.mean(axis=0)).astype(np.float32)
    return out


def _add_padded(a: F32, b: F32) -> F32:
    shape = tuple(max(p, q) for p, q in zip(a.shape, b.shape, strict=True))
    out = np.zeros(shape, np.float32)
    out[: a.shape[0], : a.shape[1], : a.shape[2]] += a
    out[: b.shape[0], : b.shape[1], : b.shape[2]] += b
    return out


def forward(net: DlibNet, chip: npt.NDArray[np.uint8]) -> F32:
    """dlib's descriptor (unnormalised, 128 floats) for one 150x150 RGB chip."""
    mean = np.asarray(net.mean_rgb, np.float32)
    x: F32 = ((chip.astype(np.float32) - mean) / 256.0).transpose(2, 0, 1).copy()
    tags: dict[int, F32] = {}
    for op in net.ops[1:]:
        if op.kind == "conv":
            assert op.weights is not None and op.bias is not None
            x = _conv(x, op.weights, op.bias, op.stride, op.pad)
        elif op.kind == "affine" and op.gamma is not None and op.gamma.size:
            assert op.beta is not None
            x = x * op.gamma[:, None, None] + op.beta[:, None, None]
        elif op.kind == "relu":
            x = np.maximum(x, 0)
        elif op.kind == "max_pool":
            x = _pool(x, op.size, op.stride, "max")
        elif op.kind == "avg_pool":
            x = _pool(x, op.size, op.stride, "avg")
        elif op.kind == "tag":
            tags[op.ref] = x
        elif op.kind == "skip":
            x = tags[op.ref]
        elif op.kind == "add_prev":
            x = _add_padded(x, tags[op.ref])
        elif op.kind == "fc":
            assert op.weights is not None
            x = (x.reshape(-1) @ op.weights).astype(np.float32)
    return x.reshape(-1)

