"""Edits of a converted TFLite model's inputs and outputs, with the flatbuffer tools that ship
with TensorFlow (`tensorflow.lite.tools.flatbuffer_utils`; the converter's
`modify_model_interface` is not in the 2.21 wheel), and a runner for models with int8 io:

- int8 input (output): the QUANTIZE op after a model input (DEQUANTIZE before an output) is
  removed and the int8 tensor becomes the input (output), with its scale and zero point;
- batch 1: a fixed batch of one instead of a dynamic batch;
- names: inputs and outputs renamed, and a `serving_default` signature with those names.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .errors import TunerInputError
from .evaluate import TFLiteModel


def flatbuffer_tools():
    from tensorflow.lite.python import schema_py_generated as schema_fb
    from tensorflow.lite.tools import flatbuffer_utils

    return schema_fb, flatbuffer_utils


def _name(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def opcode_name(model, op) -> str:
    _, fu = flatbuffer_tools()
    return fu.opcode_to_name(model, op.opcodeIndex)


def apply_io_options(tflite: bytes, io: Mapping, input_names: list[str] | None = None,
                     output_names: list[str] | None = None) -> bytes:
    """int8 inputs/outputs, a fixed batch of one, and names, on a converted model."""
    int8_in, int8_out = io["input_type"] == "int8", io["output_type"] == "int8"
    fixed = io["batch"] == "1"
    if not (int8_in or int8_out or fixed or input_names or output_names):
        return tflite
    schema_fb, fu = flatbuffer_tools()
    model = fu.read_model_from_bytearray(bytearray(tflite))
    sg = model.subgraphs[0]
    drop: set[int] = set()
    if int8_in:
        for pos, t in enumerate(list(sg.inputs)):
            readers = [op for op in sg.operators if t in list(op.inputs)]
            if len(readers) != 1 or opcode_name(model, readers[0]) != "QUANTIZE" or \
                    sg.tensors[readers[0].outputs[0]].type != schema_fb.TensorType.INT8:
                raise TunerInputError(
                    f"input_type int8: model input {_name(sg.tensors[t].name)!r} is read by a float "
                    "op (the unit reading it is fp32 in this configuration); keep float32 input")
            op = readers[0]
            new = int(op.outputs[0])
            sg.tensors[new].name = sg.tensors[t].name
            sg.tensors[new].shapeSignature = sg.tensors[t].shapeSignature
            sg.inputs[pos] = new
            sg.operators.remove(op)
            drop.add(int(t))
    if int8_out:
        for pos, t in enumerate(list(sg.outputs)):
            writers = [op for op in sg.operators if t in list(op.outputs)]
            if len(writers) != 1 or opcode_name(model, writers[0]) != "DEQUANTIZE" or \
                    sg.tensors[writers[0].inputs[0]].type != schema_fb.TensorType.INT8:
                raise TunerInputError(
                    f"output_type int8: model output {_name(sg.tensors[t].name)!r} is written by a "
                    "float op (the unit writing it is fp32 in this configuration); keep float32 output")
            op = writers[0]
            new = int(op.inputs[0])
            if any(new == int(o) for o in sg.outputs):
                raise TunerInputError("output_type int8: two outputs share one int8 tensor")
            sg.tensors[new].name = sg.tensors[t].name
            sg.outputs[pos] = new
            sg.operators.remove(op)
            drop.add(int(t))
    if fixed:
        _fix_batch_one(sg)
    if input_names:
        for t, name in zip(sg.inputs, input_names):
            sg.tensors[t].name = name.encode()
    if output_names:
        for t, name in zip(sg.outputs, output_names):
            sg.tensors[t].name = name.encode()
    if drop:
        _drop_tensors(sg, drop)
    if input_names or output_names:
        sig = schema_fb.SignatureDefT(signatureKey="serving_default", subgraphIndex=0)
        sig.inputs = [_tensor_map(schema_fb, _name(sg.tensors[t].name), t) for t in sg.inputs]
        sig.outputs = [_tensor_map(schema_fb, _name(sg.tensors[t].name), t) for t in sg.outputs]
        model.signatureDefs = [sig]
    elif model.signatureDefs:
        model.signatureDefs = [_remap_signature(s, sg) for s in model.signatureDefs]
    return bytes(fu.convert_object_to_bytearray(model))


def _tensor_map(schema_fb, name: str, index: int):
    m = schema_fb.TensorMapT()
    m.name, m.tensorIndex = name, int(index)
    return m


def _remap_signature(sig, sg):
    # The converter's own signature (if any) names the io by position; keep it consistent.
    schema_fb = flatbuffer_tools()[0]
    sig.inputs = [_tensor_map(schema_fb, _name(m.name), t) for m, t in zip(sig.inputs or [], sg.inputs)]
    sig.outputs = [_tensor_map(schema_fb, _name(m.name), t) for m, t in zip(sig.outputs or [], sg.outputs)]
    return sig


def _fix_batch_one(sg) -> None:
    """Batch 1: the inputs' batch dimension set to 1; when the batch is the only dynamic
    dimension of every input, the whole model becomes static (no shape signatures)."""
    only_batch = True
    for t in sg.inputs:
        tensor = sg.tensors[t]
        sig = list(tensor.shapeSignature) if tensor.shapeSignature is not None else list(tensor.shape)
        if any(d == -1 for d in sig[1:]):
            only_batch = False
        if len(sig):
            sig[0] = 1
            shape = list(tensor.shape)
            shape[0] = 1
            tensor.shape = np.asarray(shape, dtype=np.int32)
            tensor.shapeSignature = np.asarray(sig, dtype=np.int32)
    if only_batch:
        for tensor in sg.tensors:
            tensor.shapeSignature = None


def _drop_tensors(sg, drop: set[int]) -> None:
    """Remove tensors no op uses any more, renumbering every reference."""
    used = {int(i) for op in sg.operators for i in list(op.inputs) + list(op.outputs) if i >= 0}
    used |= {int(i) for i in sg.inputs} | {int(i) for i in sg.outputs}
    drop = {t for t in drop if t not in used}
    if not drop:
        return
    keep = [i for i in range(len(sg.tensors)) if i not in drop]
    new_index = {old: new for new, old in enumerate(keep)}

    def remap(indices):
        return np.asarray([new_index[int(i)] if i >= 0 else int(i) for i in indices], dtype=np.int32)

    sg.tensors = [sg.tensors[i] for i in keep]
    for op in sg.operators:
        op.inputs = remap(op.inputs)
        op.outputs = remap(op.outputs)
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = remap(op.intermediates)
    sg.inputs = remap(sg.inputs)
    sg.outputs = remap(sg.outputs)


def io_tensor_names(tflite: bytes) -> tuple[list[str], list[str]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite)
    ins, outs = interpreter.get_input_details(), interpreter.get_output_details()  # the model's order
    return [d["name"] for d in ins], [d["name"] for d in outs]


class QuantizedIOModel(TFLiteModel):
    """A TFLiteModel that takes and returns float values whatever its io types: int8 inputs
    are quantized with the input's scale and zero point, int8 outputs dequantized. A model with
    a fixed batch runs batch by batch of that size (`TFLiteModel`)."""

    def _run(self, inputs) -> list[np.ndarray]:
        self._resize(int(np.shape(inputs[0])[0]))
        for detail, value in zip(self._inputs, inputs):
            self._interpreter.set_tensor(detail["index"], _quantize(np.asarray(value, np.float32), detail))
        self._interpreter.invoke()
        return [_dequantize(self._interpreter.get_tensor(d["index"]), d) for d in self._outputs]


def _quantize(x: np.ndarray, detail: Mapping) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    q = x / np.float32(scale)
    q = np.sign(q) * np.floor(np.abs(q) + 0.5) + zero  # round half away from zero, as TFLite
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: Mapping) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * np.float32(scale)
