"""Comparing two TFLite models by what they compute: ops, options, operands, tensor types,
shapes, quantization and weights; tensor names left out (Keras counters differ between processes)."""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .tflite_edit import flatbuffer_tools, opcode_name


def op_list(tflite: bytes) -> list[tuple[str, str]]:
    """(op name, output dtype) for every op, in execution order."""
    schema_fb, fu = flatbuffer_tools()
    model = fu.read_model_from_bytearray(bytearray(tflite))
    types = {v: k for k, v in vars(schema_fb.TensorType).items() if not k.startswith("_")}
    sg = model.subgraphs[0]
    return [(opcode_name(model, op), types.get(sg.tensors[op.outputs[0]].type, "?") if len(op.outputs) else "")
            for op in sg.operators]


def structure(tflite: bytes) -> list:
    """Everything that defines what a TFLite model computes, tensor names left out: ops with
    their options and operands, tensor types, shapes, quantization and weights."""
    _, fu = flatbuffer_tools()
    model = fu.read_model_from_bytearray(bytearray(tflite))
    out = []
    for sg in model.subgraphs:
        tensors = []
        for t in sg.tensors:
            q = t.quantization
            quant = None
            if q is not None and q.scale is not None:
                quant = (tuple(np.asarray(q.scale).tolist()), tuple(np.asarray(q.zeroPoint).tolist()),
                         q.quantizedDimension)
            data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
            digest = hashlib.sha256(bytes(np.asarray(data, np.uint8))).hexdigest() \
                if data is not None and len(data) else None
            shape_sig = None if t.shapeSignature is None else tuple(np.asarray(t.shapeSignature).tolist())
            tensors.append((t.type, tuple(np.asarray(t.shape).tolist()) if t.shape is not None else (),
                            shape_sig, quant, digest))
        ops = [(opcode_name(model, op), tuple(np.asarray(op.inputs).tolist()),
                tuple(np.asarray(op.outputs).tolist()), _options(op.builtinOptions)) for op in sg.operators]
        out.append((tensors, ops, tuple(np.asarray(sg.inputs).tolist()), tuple(np.asarray(sg.outputs).tolist())))
    return out


def _options(options) -> Any:
    if options is None:
        return None
    return tuple(sorted((k, repr(v)) for k, v in vars(options).items()))


def same_model(a: bytes, b: bytes) -> bool:
    """True when two TFLite models compute the same thing (tensor names may differ)."""
    return a == b or structure(a) == structure(b)
