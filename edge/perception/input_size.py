"""A fully convolutional TFLite model rewritten for another input size. Pure: bytes in, bytes out.

BlazeFace is convolutional up to its last layers, so it can look at a 512x288 picture in
one call as well as at a 192x192 one; the tiled detector uses that to cover a region of
interest with a few wide strips instead of many overlapping squares (`tiling`). Two
kinds of op pin the size in the file and are rewritten here; anything else that would
is refused with a ``ModelError``:

* ``RESIZE_BILINEAR`` / ``RESIZE_NEAREST_NEIGHBOR`` with a constant output size (the
  feature-pyramid upsampling): the size is scaled with the input, which must divide
  evenly;
* ``RESHAPE`` of the heads to ``[1, anchors, values]``: allowed only where the anchor
  count is already ``-1`` (inferred), as in both BlazeFace files.

Every other shape follows from the input when the interpreter allocates its tensors.
The input must stay a multiple of :func:`input_multiple` (the model's total stride), or
a pooling step would round and the upsampled maps would no longer line up.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.errors import BackendError, ModelError

_RESIZE_OPS = ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as e:  # tflite-runtime alone has no schema module
        raise BackendError(f"resizing a model needs ai-edge-litert's TFLite schema ({e}); "
                           "use [detection] layout = \"tiles\"") from e
    return schema


def _load(data: bytes) -> tuple[Any, Any, dict[int, str]]:
    schema = _schema()
    if data[4:8] != b"TFL3":
        raise ModelError("not a TFLite model (no TFL3 file identifier)")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    except Exception as e:  # a flatbuffer that does not parse raises anything
        raise ModelError(f"not a TFLite model: {type(e).__name__}: {e}") from e
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    subgraphs = model.subgraphs if model.subgraphs is not None else []
    if len(subgraphs) != 1 or subgraphs[0].inputs is None or len(subgraphs[0].inputs) != 1:
        raise ModelError("only a model with one subgraph and one input can change its input size")
    return model, model.subgraphs[0], names


def _input_hw(sg: Any) -> tuple[int, int]:
    shape = [int(v) for v in sg.tensors[sg.inputs[0]].shape]
    if len(shape) != 4 or shape[0] != 1:
        raise ModelError(f"input shape {shape} is not (1, height, width, channels)")
    return shape[1], shape[2]


def _shape_ops(model: Any, sg: Any, names: dict[int, str]) -> list[tuple[str, Any]]:
    """The resize ops with their constant size buffer, to be rescaled; ``ModelError`` for
    an op that pins the input size and cannot follow it."""
    out: list[tuple[str, Any]] = []
    for op in sg.operators:
        name = names.get(model.operatorCodes[op.opcodeIndex].builtinCode, "?")
        if name in _RESIZE_OPS:
            buf = model.buffers[sg.tensors[op.inputs[1]].buffer]
            if buf.data is None or len(buf.data) != 8:
                raise ModelError(f"{name} with a computed output size cannot be rescaled")
            out.append((name, buf))
        elif name == "RESHAPE":
            new_shape = getattr(op.builtinOptions, "newShape", None)
            if new_shape is None or -1 not in [int(v) for v in new_shape]:
                raise ModelError("a RESHAPE with a fixed shape pins the input size")
    return out


def input_multiple(data: bytes) -> int:
    """The model's total stride (its input height over its smallest feature map's height);
    ``ModelError`` if the model cannot change its input size at all."""
    model, sg, names = _load(data)
    _shape_ops(model, sg, names)
    return _multiple(model, sg)


def _multiple(model: Any, sg: Any) -> int:
    h, _w = _input_hw(sg)

    def activation(t: Any) -> bool:  # computed at run time, not a weight in the file
        data = model.buffers[t.buffer].data
        return t.shape is not None and len(t.shape) == 4 and (data is None or len(data) == 0)

    heights = [int(t.shape[1]) for t in sg.tensors if activation(t) and int(t.shape[1]) > 0]
    return h // min(heights)


def with_input_size(data: bytes, height: int, width: int) -> bytes:
    """The same model for a ``(1, height, width, C)`` input; ``ModelError`` if it cannot be."""
    import flatbuffers  # ai-edge-litert's own dependency (in the device lock)

    model, sg, names = _load(data)
    h0, w0 = _input_hw(sg)
    ops = _shape_ops(model, sg, names)
    multiple = _multiple(model, sg)
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise ModelError(f"input {height}x{width} is not a positive multiple of the model's "
                         f"total stride {multiple}")
    for name, buf in ops:
        oh, ow = (int(v) for v in np.frombuffer(bytes(buf.data), np.int32))
        if (oh * height) % h0 or (ow * width) % w0:
            raise ModelError(f"{name} to {oh}x{ow} does not scale to input {height}x{width}")
        buf.data = np.array([oh * height // h0, ow * width // w0], np.int32).tobytes()
    shape = sg.tensors[sg.inputs[0]].shape
    sg.tensors[sg.inputs[0]].shape = np.array([1, height, width, int(shape[3])], np.int32)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
