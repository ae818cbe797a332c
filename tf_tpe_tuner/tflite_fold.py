"""Float16 and sparse constants of a shipped float model, folded to plain float32 constants.

Pretrained models that packages ship (MediaPipe's, say) store their weights as float16 behind
DEQUANTIZE ops, some also sparse behind DENSIFY. The converter's quantizer fails on them as
shipped (an f16/f32 type clash, "scale out of expressed type range"); with those constants
folded to float32 (the values the interpreter computes from them, so the outputs are the same)
it calibrates and quantizes them like any converter-made float model.

- A DEQUANTIZE of a float16 constant: its output becomes a float32 constant holding the values
  (float16 -> float32 is exact).
- A DENSIFY of a sparse constant: its output becomes a dense constant. The dense values are read
  from LiteRT itself (one invoke with every tensor preserved, no delegate) instead of a decoder
  of the sparsity format of our own: TensorFlow offers no public densifier, and the interpreter
  is the reference for what the op computes.

The folded ops are removed, their readers read the new constants; buffers no tensor uses any
more are emptied in place (not removed: the model's metadata refers to buffers by index).
"""
from __future__ import annotations

import numpy as np

from .tflite_graph import _tools

FOLDED_OPS = ("DEQUANTIZE", "DENSIFY")


def foldable_ops(model) -> list[int]:
    """Indices of the ops `fold` removes: DENSIFY of a constant, and DEQUANTIZE of a float16
    constant (or of a DENSIFY output of one). A DEQUANTIZE of an int8 tensor is quantization,
    not storage, and stays."""
    schema_fb, fu = _tools()
    sg = model.subgraphs[0]
    producer = {int(t): i for i, op in enumerate(sg.operators) for t in op.outputs}
    found: list[int] = []
    folded_outputs: set[int] = set()
    for i, op in enumerate(sg.operators):
        kind = fu.opcode_to_name(model, op.opcodeIndex)
        if kind not in FOLDED_OPS or not len(op.inputs):
            continue
        t = int(op.inputs[0])
        constant = t not in producer and _has_data(model, sg.tensors[t])
        if not (constant or t in folded_outputs):
            continue
        if kind == "DEQUANTIZE" and sg.tensors[t].type != schema_fb.TensorType.FLOAT16:
            continue
        if kind == "DENSIFY" and sg.tensors[t].type not in (schema_fb.TensorType.FLOAT16,
                                                            schema_fb.TensorType.FLOAT32):
            continue
        found.append(i)
        folded_outputs.add(int(op.outputs[0]))
    return found


def _has_data(model, tensor) -> bool:
    data = model.buffers[tensor.buffer].data if tensor.buffer else None
    return data is not None and len(data) > 0


def _constant(model, tensor) -> np.ndarray:
    schema_fb, _ = _tools()
    dtype = np.float16 if tensor.type == schema_fb.TensorType.FLOAT16 else np.float32
    raw = np.asarray(model.buffers[tensor.buffer].data, dtype=np.uint8)
    return raw.view(dtype).reshape([int(d) for d in tensor.shape])


def _densified(tflite: bytes, tensors: list[int]) -> dict[int, np.ndarray]:
    """The dense values LiteRT computes for these DENSIFY outputs (one invoke on zeros)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=tflite, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    return {t: np.array(interpreter.get_tensor(t)) for t in tensors}


def fold(tflite: bytes) -> bytes:
    """`tflite` with its float16 and sparse constants as float32 constants (the same bytes when
    it has none). The model must be one LiteRT can run when it has DENSIFY ops."""
    _, fu = _tools()
    model = fu.read_model_from_bytearray(bytearray(tflite))
    return bytes(fu.convert_object_to_bytearray(model)) if fold_model(model, tflite) else tflite


def fold_model(model, tflite: bytes) -> bool:
    """`fold` on the model object (`tflite`: its bytes, for the interpreter), in place; True
    when anything was folded."""
    schema_fb, fu = _tools()
    ops = foldable_ops(model)
    if not ops:
        return False
    sg = model.subgraphs[0]
    kinds = {i: fu.opcode_to_name(model, sg.operators[i].opcodeIndex) for i in ops}
    dense = _densified(tflite, [int(sg.operators[i].outputs[0]) for i in ops if kinds[i] == "DENSIFY"]) \
        if "DENSIFY" in kinds.values() else {}
    values: dict[int, np.ndarray] = {}
    for i in ops:  # in graph order: a DENSIFY comes before the DEQUANTIZE that reads it
        op = sg.operators[i]
        src, out = int(op.inputs[0]), int(op.outputs[0])
        if kinds[i] == "DENSIFY":
            values[out] = dense[out]
        else:
            values[out] = (values[src] if src in values else _constant(model, sg.tensors[src])).astype(np.float32)
    drop = set(ops)
    readers = {int(t) for k, op in enumerate(sg.operators) if k not in drop for t in op.inputs}
    for out, value in values.items():
        if out not in readers:
            continue  # an intermediate of a DENSIFY -> DEQUANTIZE chain
        tensor = sg.tensors[out]
        buffer = schema_fb.BufferT()
        buffer.data = np.frombuffer(np.ascontiguousarray(value).tobytes(), dtype=np.uint8)
        model.buffers.append(buffer)
        tensor.buffer = len(model.buffers) - 1
        tensor.type = schema_fb.TensorType.FLOAT32 if value.dtype == np.float32 else schema_fb.TensorType.FLOAT16
        tensor.sparsity = None
    sg.operators = [op for k, op in enumerate(sg.operators) if k not in drop]
    from .tflite_edit import _drop_tensors

    ins, outs = [int(t) for t in sg.inputs], [int(t) for t in sg.outputs]
    _drop_tensors(sg, set(range(len(sg.tensors))))  # those no op reads any more
    for sig in model.signatureDefs or []:  # signatures name io tensors by index: renumbered too
        for maps, old, new in ((sig.inputs, ins, sg.inputs), (sig.outputs, outs, sg.outputs)):
            for m in maps or []:
                m.tensorIndex = int(new[old.index(int(m.tensorIndex))])
    _empty_unused_buffers(model)
    _drop_unused_opcodes(model)
    return True


def _empty_unused_buffers(model) -> None:
    """Empty the buffers no tensor refers to any more (the float16 and sparse originals)."""
    used = {int(t.buffer) for sg in model.subgraphs for t in sg.tensors}
    used |= {int(m.buffer) for m in (model.metadata or [])}
    used |= {int(b) for b in (model.metadataBuffer if model.metadataBuffer is not None else [])}
    for index, buffer in enumerate(model.buffers):
        if index and index not in used:
            buffer.data = None


def _drop_unused_opcodes(model) -> None:
    """Remove operator codes no op uses (the calibrator's resolver refuses some it would never
    run: "Didn't find op for builtin opcode 'DEQUANTIZE' version '2'")."""
    used = sorted({int(op.opcodeIndex) for sg in model.subgraphs for op in sg.operators})
    new_index = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for sg in model.subgraphs:
        for op in sg.operators:
            op.opcodeIndex = new_index[int(op.opcodeIndex)]
