"""Static Edge TPU compatibility of a ``.tflite`` file, without the compiler.

``edgetpu_compiler`` maps an op to the Edge TPU only if the op is in Coral's
supported-operations table and meets the constraints listed there; the first op
that does not, and every op after it, runs on the CPU. This module reads the
model's flatbuffer (the TFLite schema from ``ai_edge_litert``) and applies the
same table, so a model change that would fall back to the CPU is caught by
``make test`` on any machine, not on the build host that has the compiler.

Checked, as Coral documents them:

* every activation tensor is 8-bit (int8/uint8) with a static shape, and at
  most its three innermost dimensions are larger than 1; parameters are
  compile-time constants (int32 allowed for biases);
* the op is in :data:`SUPPORTED` and meets its constraint (same dilation in x
  and y for convolutions, no fused activation on pools and concatenation, no
  batch-dimension reductions, pads, splits or transposes, unit strides for
  STRIDED_SLICE, 1-D softmax of at most 16,000 elements, ...);
* the parameters fit the Edge TPU's 8 MB of on-chip SRAM (beyond it the
  compiler streams them from the host on every inference).

Coral's table gives no kernel-size or stride limit for CONV_2D,
DEPTHWISE_CONV_2D or the pools, so none is applied; their kernel and stride
are reported (``OpReport.detail``) so that the compiler's own log can be
compared against them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.errors import ModelError

# The Edge TPU's on-chip SRAM for parameters (Coral USB Accelerator / M.2 datasheets).
ON_CHIP_BYTES = 8 * 1024 * 1024
SOFTMAX_MAX_ELEMENTS = 16_000

# Coral "TensorFlow models on the Edge TPU", supported operations (compiler 16).
SUPPORTED = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
    "EXPAND_DIMS", "FULLY_CONNECTED", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC",
    "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM",
    "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU",
    "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR",
    "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
})
_EIGHT_BIT = ("INT8", "UINT8")


@dataclass(frozen=True)
class OpReport:
    index: int
    op: str
    problems: tuple[str, ...]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class CompatibilityReport:
    """Per-op verdicts for one model; ``ok`` when the whole graph would map."""

    ops: tuple[OpReport, ...]
    parameter_bytes: int
    problems: tuple[str, ...] = field(default=())  # model-level (memory, subgraphs)

    @property
    def ok(self) -> bool:
        return not self.problems and all(o.ok for o in self.ops)

    @property
    def op_counts(self) -> dict[str, int]:
        return dict(Counter(o.op for o in self.ops))

    def failures(self) -> list[str]:
        out = list(self.problems)
        out += [f"op {o.index} {o.op}: {'; '.join(o.problems)}" for o in self.ops if not o.ok]
        return out


class _Graph:
    """Read-only view of subgraph 0 with names for enum values."""

    def __init__(self, data: bytes) -> None:
        from ai_edge_litert import schema_py_generated as schema

        try:
            self.model: Any = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
        except Exception as e:  # the flatbuffer reader raises anything on garbage
            raise ModelError(f"not a TFLite flatbuffer: {type(e).__name__}: {e}") from e
        if not self.model.subgraphs:
            raise ModelError("TFLite model without a subgraph")
        self.schema = schema
        self.sub: Any = self.model.subgraphs[0]
        self.data = data
        self._op_names = _names(schema.BuiltinOperator)
        self._type_names = _names(schema.TensorType)

    def op_name(self, op: Any) -> str:
        code = self.model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        if builtin == self.schema.BuiltinOperator.CUSTOM:
            return f"CUSTOM:{(code.customCode or b'').decode(errors='replace')}"
        return self._op_names.get(builtin, f"BUILTIN_{builtin}")

    def tensor(self, i: int) -> Any:
        return self.sub.tensors[i]

    def type_name(self, t: Any) -> str:
        return self._type_names.get(int(t.type), str(t.type))

    def shape(self, i: int) -> list[int]:
        t = self.tensor(i)
        return [] if t.shape is None else [int(d) for d in t.shape]

    def constant(self, i: int) -> np.ndarray[Any, Any] | None:
        """The constant data of tensor ``i`` (1-D, raw dtype), None for an activation."""
        t = self.tensor(i)
        buf = self.model.buffers[t.buffer] if t.buffer < len(self.model.buffers) else None
        if buf is None:
            return None
        if buf.data is not None and len(buf.data):
            raw = np.asarray(buf.data, dtype=np.uint8)
        elif getattr(buf, "offset", 0) > 1 and getattr(buf, "size", 0):
            raw = np.frombuffer(self.data, np.uint8, int(buf.size), int(buf.offset))
        else:
            return None
        dtype = {"INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32, "INT64": np.int64,
                 "FLOAT32": np.float32, "INT16": np.int16}.get(self.type_name(t), np.uint8)
        return raw.view(dtype)

    def options(self, op: Any) -> Any:
        return op.builtinOptions


def _names(enum_cls: type) -> dict[int, str]:
    return {int(v): k for k, v in vars(enum_cls).items()
            if not k.startswith("_") and isinstance(v, int)}


def check_model(data: bytes) -> CompatibilityReport:
    """Apply Coral's supported-ops table to a ``.tflite`` file's bytes."""
    g = _Graph(data)
    problems: list[str] = []
    if len(g.model.subgraphs) > 1:
        problems.append(f"{len(g.model.subgraphs)} subgraphs: the compiler maps one")
    params = 0
    for i in range(len(g.sub.tensors)):
        c = g.constant(i)
        if c is not None:
            params += int(c.nbytes)
    if params > ON_CHIP_BYTES:
        problems.append(f"parameters {params / 2**20:.2f} MiB exceed the {ON_CHIP_BYTES / 2**20:.0f} "
                        "MiB on-chip memory (they would stream from the host each inference)")
    ops = tuple(_check_op(g, k, op) for k, op in enumerate(g.sub.operators))
    return CompatibilityReport(ops=ops, parameter_bytes=params, problems=tuple(problems))


def _check_op(g: _Graph, index: int, op: Any) -> OpReport:
    name = g.op_name(op)
    inputs = [int(i) for i in (op.inputs if op.inputs is not None else []) if i >= 0]
    outputs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
    problems: list[str] = []
    if name not in SUPPORTED:
        problems.append("not in the Edge TPU's supported operations")
    for i in inputs + outputs:
        problems += _tensor_problems(g, i)
    rule = _RULES.get(name)
    detail = ""
    if rule is not None and name in SUPPORTED:
        more, detail = rule(g, op, inputs, outputs)
        problems += more
    return OpReport(index, name, tuple(dict.fromkeys(problems)), detail)


def _tensor_problems(g: _Graph, i: int) -> list[str]:
    t = g.tensor(i)
    name = (t.name or b"").decode(errors="replace") if isinstance(t.name, bytes) else str(t.name)
    kind = g.type_name(t)
    out = []
    if g.constant(i) is not None:
        if kind not in (*_EIGHT_BIT, "INT32"):
            out.append(f"constant {name} is {kind}, not 8-bit (or int32 bias)")
        return out
    if kind not in _EIGHT_BIT:
        out.append(f"tensor {name} is {kind}, not int8/uint8")
    sig = t.shapeSignature
    if sig is not None and any(int(d) < 0 for d in sig):
        out.append(f"tensor {name} has a dynamic shape {list(map(int, sig))}")
    shape = g.shape(i)
    if any(d > 1 for d in shape[:-3]):
        out.append(f"tensor {name} {shape}: only the 3 innermost dimensions may exceed 1")
    return out


_Rule = Callable[[_Graph, Any, Sequence[int], Sequence[int]], tuple[list[str], str]]


def _fused(g: _Graph, op: Any) -> bool:
    o = g.options(op)
    return o is not None and int(getattr(o, "fusedActivationFunction", 0)) != 0


def _conv(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
    o = g.options(op)
    problems = []
    if o is not None and int(o.dilationWFactor) != int(o.dilationHFactor):
        problems.append(f"dilation {o.dilationHFactor}x{o.dilationWFactor}: must be the same in x and y")
    kernel = g.shape(ins[1])
    kh, kw = (kernel[1], kernel[2]) if len(kernel) == 4 else (0, 0)
    stride = f"{o.strideH}x{o.strideW}" if o is not None else "?"
    return problems, f"kernel {kh}x{kw} stride {stride}"


def _pool(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
    o = g.options(op)
    problems = ["fused activation function"] if _fused(g, op) else []
    detail = f"filter {o.filterHeight}x{o.filterWidth} stride {o.strideH}x{o.strideW}" if o else ""
    return problems, detail


def _concat(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
    problems = ["fused activation function"] if _fused(g, op) else []
    consts = [c for c in (g.constant(i) for i in ins) if c is not None]
    if consts and (len(ins) != 2 or any(np.any(c != 0) for c in consts)):
        problems.append("a constant input is only mapped as the zero half of a 2-input concat")
    return problems, ""


def _axes(g: _Graph, ins: Sequence[int]) -> list[int]:
    c = g.constant(ins[1]) if len(ins) > 1 else None
    rank = len(g.shape(ins[0]))
    return [] if c is None else sorted({int(a) % max(rank, 1) for a in c.tolist()})


def _reduce(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
    axes = _axes(g, ins)
    shape = g.shape(ins[0])
    problems = []
    if 0 in axes:
        problems.append("reduces the batch dimension")
    if len(shape) == 4 and 3 in axes and shape[3] % 4:
        problems.append(f"z-reduction over depth {shape[3]}, not a multiple of 4")
    return problems, f"axes {axes}"


def _not_batch(what: str) -> _Rule:
    def rule(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
        axes = _axes(g, ins)
        return ([f"{what} the batch dimension"] if 0 in axes else []), f"axes {axes}"
    return rule


def _pad(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
    pads = g.constant(ins[1]) if len(ins) > 1 else None
    if pads is None:
        return ["paddings are not a compile-time constant"], ""
    p = pads.reshape(-1, 2)
    return (["pads the batch dimension"] if np.any(p[0] != 0) else []), f"paddings {p.tolist()}"


def _split(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
    axis = g.constant(ins[0])  # SPLIT: (axis, input)
    rank = len(g.shape(ins[1])) if len(ins) > 1 else 0
    if axis is not None and rank and int(axis[0]) % rank == 0:
        return ["splits the batch dimension"], ""
    return [], ""


def _pack(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
    o = g.options(op)
    return (["packs in the batch dimension"] if o is not None and int(o.axis) == 0 else []), ""


def _transpose(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
    perm = g.constant(ins[1]) if len(ins) > 1 else None
    if perm is not None and int(perm[0]) != 0:
        return ["transposes the batch dimension"], f"perm {perm.tolist()}"
    return [], ""


def _strided(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
    o = g.options(op)
    strides = g.constant(ins[3]) if len(ins) > 3 else None
    problems = []
    if strides is None or np.any(strides != 1):
        problems.append("strides other than 1")
    if o is not None and (int(o.ellipsisMask) or int(o.newAxisMask)):
        problems.append("ellipsis or new-axis mask")
    return problems, ""


def _fully_connected(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]
                     ) -> tuple[list[str], str]:
    o = g.options(op)
    problems = []
    if o is not None and int(o.weightsFormat) != 0:
        problems.append("non-default weights format")
    if sum(1 for d in g.shape(outs[0]) if d > 1) > 1:
        problems.append(f"output {g.shape(outs[0])} is not one-dimensional")
    return problems, ""


def _prelu(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
    alpha = g.shape(ins[1]) if len(ins) > 1 else []
    wide = any(d > 1 for d in alpha[:-1])
    return ([f"alpha {alpha}: only its innermost dimension may exceed 1"] if wide else []), ""


def _resize(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
    for i in (ins[0], outs[0]):
        s = g.shape(i)
        if len(s) == 4 and s[0] != 1:
            return [f"tensor {s} is not 3-dimensional (batch 1)"], ""
    return [], ""


def _softmax(g: _Graph, op: Any, ins: Sequence[int], outs: Sequence[int]) -> tuple[list[str], str]:
    s = g.shape(ins[0])
    n = int(np.prod(s)) if s else 0
    problems = []
    if sum(1 for d in s if d > 1) > 1:
        problems.append(f"input {s} is not one-dimensional")
    if n > SOFTMAX_MAX_ELEMENTS:
        problems.append(f"{n} elements, more than {SOFTMAX_MAX_ELEMENTS}")
    return problems, ""


_RULES: dict[str, _Rule] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _conv,
    "AVERAGE_POOL_2D": _pool,
    "MAX_POOL_2D": _pool,
    "CONCATENATION": _concat,
    "MEAN": _reduce,
    "SUM": _reduce,
    "REDUCE_MAX": _not_batch("reduces"),
    "REDUCE_MIN": _not_batch("reduces"),
    "PAD": _pad,
    "SPLIT": _split,
    "PACK": _pack,
    "TRANSPOSE": _transpose,
    "STRIDED_SLICE": _strided,
    "FULLY_CONNECTED": _fully_connected,
    "PRELU": _prelu,
    "RESIZE_BILINEAR": _resize,
    "RESIZE_NEAREST_NEIGHBOR": _resize,
    "SOFTMAX": _softmax,
}
