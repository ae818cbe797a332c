"""A quantized model given back the face of the float model it was made from.

The quantizer (on the folded float model, `tflite_fold`) keeps the graph's computation but not
everything that users of a shipped model rely on: `keep_interface` puts back, from the model as
given,

- the input and output tensor names, in the model's order (the quantizer renames an int8 op that
  writes an output with a trailing `1`; the order of the subgraph's inputs/outputs is checked);
- the TFLite metadata: every `metadata` entry (MediaPipe reads `TFLITE_METADATA`: normalization,
  labels, output meanings), byte for byte, and the `metadataBuffer` list the quantizer drops;
  the quantized model's own `min_runtime_version` is kept (it is computed for its ops);
- the SignatureDefs, renumbered onto the quantized model's io tensors;
- float16 storage for the weights of ops that stay float, when the model as given stored them so
  (`FLOAT16_WEIGHTS`): each such float32 constant becomes a float16 constant behind a DEQUANTIZE,
  as in the shipped file. Exact (the values came from float16), the file stays small, and
  LiteRT's XNNPACK delegate unpacks such weights once at load, so the speed is the same.
"""
from __future__ import annotations

import functools

import numpy as np

from .tflite_fold import _empty_unused_buffers, foldable_ops
from .tflite_graph import _text, _tools

FLOAT16_WEIGHTS = True  # the choice recorded in BUILD_NOTES.md ("Shipped models")
_DEQUANTIZE_FP16_VERSION = 3  # DEQUANTIZE's version for a float16 input (TFLite op versioning)


def _copy_buffer(model, data) -> int:
    schema_fb, _ = _tools()
    buffer = schema_fb.BufferT()
    buffer.data = None if data is None else np.array(data, dtype=np.uint8)
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def keep_interface(quantized: bytes, shipped: bytes, float16_weights: bool = FLOAT16_WEIGHTS) -> bytes:
    """`quantized` with the io names and order, metadata and signatures of `shipped` (the
    float model it was made from), and float16 weights for its float ops where `shipped`
    stored float16 weights. The same bytes when there is nothing to restore."""
    schema_fb, fu = _tools()
    interface, has_float16 = _shipped_interface(shipped)
    if not (float16_weights and has_float16) and _has_interface(quantized, interface):
        return quantized  # read lazily: unpacking a model per trial costs more than quantizing it
    q = fu.read_model_from_bytearray(bytearray(quantized))
    s = fu.read_model_from_bytearray(bytearray(shipped))
    changed = _io_names(q, s) | _metadata(q, s) | _signatures(q, s)
    if float16_weights:
        changed |= _float16_weights(q, s)
    return bytes(fu.convert_object_to_bytearray(q)) if changed else quantized


def _interface(model_bytes: bytes) -> tuple:
    """(input names, output names, {metadata name: bytes}, has a metadataBuffer, signatures as
    (key, [(name, io position)], [(name, io position)])), read with the lazy flatbuffer API."""
    schema_fb, _ = _tools()
    model = schema_fb.Model.GetRootAsModel(model_bytes, 0)
    sg = model.Subgraphs(0)
    inputs, outputs = [int(t) for t in sg.InputsAsNumpy()], [int(t) for t in sg.OutputsAsNumpy()]
    metadata = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        data = model.Buffers(entry.Buffer()).DataAsNumpy()
        metadata[entry.Name().decode()] = bytes(data) if not isinstance(data, int) else b""
    signatures = []
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        ins = [(sig.Inputs(j).Name().decode(), inputs.index(sig.Inputs(j).TensorIndex()))
               for j in range(sig.InputsLength())]
        outs = [(sig.Outputs(j).Name().decode(), outputs.index(sig.Outputs(j).TensorIndex()))
                for j in range(sig.OutputsLength())]
        signatures.append((sig.SignatureKey().decode(), ins, outs))
    names = lambda ts: [sg.Tensors(t).Name().decode() for t in ts]  # noqa: E731
    return names(inputs), names(outputs), metadata, model.MetadataBufferLength() > 0, signatures


@functools.lru_cache(maxsize=4)
def _shipped_interface(shipped: bytes) -> tuple[tuple, bool]:
    """The shipped model's interface, and whether it stores float16 weights (once per model)."""
    schema_fb, fu = _tools()
    s = fu.read_model_from_bytearray(bytearray(shipped))
    has_float16 = any(fu.opcode_to_name(s, s.subgraphs[0].operators[i].opcodeIndex) == "DEQUANTIZE"
                      for i in foldable_ops(s))
    return _interface(shipped), has_float16


def _has_interface(quantized: bytes, interface: tuple) -> bool:
    """Whether `quantized` already has everything `keep_interface` would put back."""
    inputs, outputs, metadata, metadata_buffer, signatures = _interface(quantized)
    want_in, want_out, want_meta, want_buffer, want_sigs = interface
    same_meta = all(metadata.get(k) == v for k, v in want_meta.items() if k != "min_runtime_version")
    return (inputs == want_in and outputs == want_out and same_meta and (metadata_buffer or not want_buffer)
            and (not want_sigs or signatures == want_sigs))


def _io_names(q, s) -> bool:
    qg, sg = q.subgraphs[0], s.subgraphs[0]
    changed = False
    for which in ("inputs", "outputs"):
        ours, theirs = list(getattr(qg, which)), list(getattr(sg, which))
        if len(ours) != len(theirs):
            raise RuntimeError(f"the quantized model has {len(ours)} {which}, the float model "
                               f"{len(theirs)} (a bug)")
        wanted = [_text(sg.tensors[t].name) for t in theirs]
        names = [_text(qg.tensors[t].name) for t in ours]
        if sorted(names) == sorted(wanted) and names != wanted:  # same names, another order
            setattr(qg, which, np.asarray([ours[names.index(w)] for w in wanted], dtype=np.int32))
            changed = True
        for t, name in zip(getattr(qg, which), wanted):
            if _text(qg.tensors[t].name) != name:
                qg.tensors[t].name = name.encode()
                changed = True
    return changed


def _metadata(q, s) -> bool:
    schema_fb, _ = _tools()
    changed = False
    ours = {_text(m.name): m for m in (q.metadata or [])}
    for entry in s.metadata or []:
        name = _text(entry.name)
        data = s.buffers[entry.buffer].data
        if name == "min_runtime_version" and name in ours:
            continue  # the quantized model's own: it is computed for its ops
        if name in ours:
            mine = q.buffers[ours[name].buffer].data
            if mine is not None and data is not None and bytes(mine) == bytes(data):
                continue
            ours[name].buffer = _copy_buffer(q, data)
        else:
            m = schema_fb.MetadataT()
            m.name, m.buffer = entry.name, _copy_buffer(q, data)
            q.metadata = list(q.metadata or []) + [m]
        changed = True
    if s.metadataBuffer is not None and len(s.metadataBuffer) and \
            (q.metadataBuffer is None or not len(q.metadataBuffer)):
        q.metadataBuffer = np.asarray([_copy_buffer(q, s.buffers[int(b)].data) for b in s.metadataBuffer],
                                      dtype=np.int32)
        changed = True
    return changed


def _signatures(q, s) -> bool:
    if not s.signatureDefs:
        return False
    schema_fb, _ = _tools()
    if _signature_view(q) == _signature_view(s):
        return False
    qg, sg = q.subgraphs[0], s.subgraphs[0]

    def remap(maps, theirs, ours):
        out = []
        for m in maps or []:
            t = schema_fb.TensorMapT()
            t.name = m.name
            t.tensorIndex = int(ours[list(theirs).index(int(m.tensorIndex))])
            out.append(t)
        return out
    sigs = []
    for sig in s.signatureDefs:
        new = schema_fb.SignatureDefT()
        new.signatureKey, new.subgraphIndex = sig.signatureKey, 0
        new.inputs = remap(sig.inputs, sg.inputs, qg.inputs)
        new.outputs = remap(sig.outputs, sg.outputs, qg.outputs)
        sigs.append(new)
    q.signatureDefs = sigs
    return True


def _signature_view(model) -> list:
    """Signatures as (key, inputs, outputs), each io as (name, position in the io list)."""
    sg = model.subgraphs[0]
    out = []
    for sig in model.signatureDefs or []:
        ins = [(_text(m.name), list(sg.inputs).index(int(m.tensorIndex))) for m in sig.inputs or []]
        outs = [(_text(m.name), list(sg.outputs).index(int(m.tensorIndex))) for m in sig.outputs or []]
        out.append((_text(sig.signatureKey), ins, outs))
    return out


def _float16_weights(q, s) -> bool:
    """Float32 constants of float ops, stored as float16 in `s`, back to float16 + DEQUANTIZE."""
    schema_fb, fu = _tools()
    sg = s.subgraphs[0]
    stored = {_text(sg.tensors[int(sg.operators[i].outputs[0])].name) for i in foldable_ops(s)
              if fu.opcode_to_name(s, sg.operators[i].opcodeIndex) == "DEQUANTIZE"}
    if not stored:
        return False
    qg = q.subgraphs[0]
    readers: dict[int, list] = {}
    for op in qg.operators:
        for t in op.inputs:
            if int(t) >= 0:
                readers.setdefault(int(t), []).append(op)
    io = {int(t) for t in list(qg.inputs) + list(qg.outputs)}
    new_ops = []
    for index, tensor in enumerate(qg.tensors):
        if tensor.type != schema_fb.TensorType.FLOAT32 or index in io or _text(tensor.name) not in stored:
            continue
        data = q.buffers[tensor.buffer].data if tensor.buffer else None
        if data is None or not len(data) or index not in readers:
            continue
        if any(fu.opcode_to_name(q, op.opcodeIndex) in ("QUANTIZE", "DEQUANTIZE") for op in readers[index]):
            continue
        values = np.asarray(data, dtype=np.uint8).view(np.float32)
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values):
            continue  # not float16 values (the quantizer made them): keep float32
        packed = schema_fb.TensorT()
        packed.name = tensor.name[:-len(b"_dequantize")] if tensor.name.endswith(b"_dequantize") \
            else tensor.name + b"_fp16"
        packed.shape, packed.type = np.array(tensor.shape), schema_fb.TensorType.FLOAT16
        packed.buffer = _copy_buffer(q, np.frombuffer(half.tobytes(), dtype=np.uint8))
        tensor.buffer = 0  # now computed by the DEQUANTIZE below (buffers may be shared)
        qg.tensors.append(packed)
        op = schema_fb.OperatorT()
        op.opcodeIndex = _dequantize_fp16_opcode(q)
        op.inputs = np.asarray([len(qg.tensors) - 1], dtype=np.int32)
        op.outputs = np.asarray([index], dtype=np.int32)
        new_ops.append(op)
    qg.operators = new_ops + list(qg.operators)  # constants first: the graph stays in order
    _empty_unused_buffers(q)
    return bool(new_ops)


def _dequantize_fp16_opcode(model) -> int:
    schema_fb, _ = _tools()
    code = schema_fb.BuiltinOperator.DEQUANTIZE
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == code and c.version == _DEQUANTIZE_FP16_VERSION:
            return i
    new = schema_fb.OperatorCodeT()
    new.builtinCode, new.deprecatedBuiltinCode, new.version = code, code, _DEQUANTIZE_FP16_VERSION
    model.operatorCodes.append(new)
    return len(model.operatorCodes) - 1
