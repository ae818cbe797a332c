"""The search space of a float `.tflite` model, read from its graph alone (no Keras).

Units are what the TFLite quantizer can really run in int8, found by asking it: the model is
calibrated (`Calibrator` on the float model itself) and quantized once with nothing denied;
every op that comes out int8 is quantizable. Each quantizable op is a unit of its own (two ops
are one unit only where choosing them apart can change nothing: an activation fused into its
conv is one TFLite op already), except the pass-through ops that only move or pick values
(reshape, max-pool, transpose, pad, slice, ...): they run in their neighbours' precision. Every
other op stays float, and says why.

Names: a unit is `<op type>:<its output tensor's name>` (the first `;`-part of the name the
converter gave, e.g. `conv_2d:digits_cnn/conv1/Relu`), with `#<op index>` added where two would
be equal: the same for the same model file, across runs. Before anything else every op's first
output tensor gets a unique name (those names are what the quantizer's denylist matches; with
duplicates, denying one name made every op float); model inputs and outputs keep theirs.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import ModelNotSupportedError, TunerInputError
from .layer_names import LayerScopes, layer_unit_names
from .walker import FloatLayer, Unit

# Ops that only move, pick or compare values: the quantizer gives them their input's scale.
PASS_THROUGH = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "MAX_POOL_2D", "PAD", "PADV2",
                "SLICE", "STRIDED_SLICE", "GATHER", "SPLIT", "SPLIT_V", "DEPTH_TO_SPACE",
                "SPACE_TO_DEPTH", "RESIZE_NEAREST_NEIGHBOR", "PACK", "UNPACK", "TILE", "BROADCAST_TO",
                "REDUCE_MAX", "REDUCE_MIN", "ARG_MAX", "ARG_MIN"}
_CONTROL_FLOW = {"WHILE", "IF", "CALL_ONCE", "CALL"}
_BOUNDARY = {"QUANTIZE", "DEQUANTIZE"}
_INT_TYPES = {"INT8", "UINT8", "INT16"}


def _tools():
    from tensorflow.lite.python import schema_py_generated as schema_fb
    from tensorflow.lite.tools import flatbuffer_utils

    return schema_fb, flatbuffer_utils


def _type_names(schema_fb) -> dict[int, str]:
    return {v: k for k, v in vars(schema_fb.TensorType).items() if not k.startswith("_")}


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


@dataclass
class TfliteGraph:
    """A float TFLite model and its units; the interface the tuner reads of a walked model."""

    float_model: bytes  # with unique op output names
    units: list[Unit]
    float_layers: list[FloatLayer]
    display_names: dict[str, str]  # op node name -> unit / op name shown to users
    input_names: list[str]
    input_shapes: list[tuple]
    output_shapes: list[tuple]
    macs: dict[str, int]  # op node name -> multiply-adds (1 per output element for non-matmul ops)
    edges: list[tuple[str | None, str | None, int]] = field(default_factory=list)
    passthrough_units: dict[str, set[str]] = field(default_factory=dict)  # pass-through node -> units near
    output_nodes: list[str] = field(default_factory=list)  # nodes that write a model output
    unit_of_layer: dict[str, str] = field(default_factory=dict)
    kind: str = "tflite"
    # The model as given (shipped): the float reference for latency and outputs, and what is
    # handed back as "the float model"; `float_model` is what calibration and quantization read
    # (float16 / sparse constants folded, see tflite_fold).
    reference_model: bytes | None = None

    def __post_init__(self) -> None:
        self.unit_of_layer = {node: u.name for u in self.units for node in u.layers}
        if self.reference_model is None:
            self.reference_model = self.float_model

    @property
    def unit_names(self) -> list[str]:
        return [u.name for u in self.units]

    @property
    def passthrough(self) -> set[str]:
        return {f.layer for f in self.float_layers if f.passthrough}

    def unit(self, name: str) -> Unit:
        return next(u for u in self.units if u.name == name)

    def mac_shares(self) -> dict[str, float]:
        """Each unit's share of the model's multiply-adds (ops that are not units: the rest)."""
        total = sum(self.macs.values()) or 1
        return {u.name: sum(self.macs[n] for n in u.layers) / total for u in self.units}

    def describe(self) -> str:
        """The units with their share of the multiply-adds, and why the other ops stay float."""
        shares = self.mac_shares()
        total = sum(self.macs.values()) or 1
        lines = [f"{len(self.units)} quantizable units ({100 * sum(shares.values()):.1f} % of the "
                 f"model's {total:,} multiply-adds):"]
        for u in self.units:
            lines.append(f"  {u.name:<56} {' + '.join(u.layer_types):<20} {100 * shares[u.name]:6.2f} %")
        lines.append(f"{len(self.float_layers)} ops that are not units:")
        for f in self.float_layers:
            lines.append(f"  {f.name:<56} {f.layer_type:<20} {100 * self.macs[f.layer] / total:6.2f} %  {f.reason}")
        return "\n".join(lines)


def load_tflite(source: "bytes | str | os.PathLike") -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise TunerInputError(f"model file {path} does not exist")
    with open(path, "rb") as f:
        data = f.read()
    if data[4:8] != b"TFL3":
        raise TunerInputError(f"model file {path} is not a TFLite flatbuffer (no TFL3 identifier)")
    return data


def _check_float(model, schema_fb, fu) -> None:
    from .tflite_fold import foldable_ops

    if len(model.subgraphs) != 1:
        raise ModelNotSupportedError(
            f"the TFLite model has {len(model.subgraphs)} subgraphs; tf_tpe_tuner tunes single-graph "
            "models only")
    names = _type_names(schema_fb)
    sg = model.subgraphs[0]
    stored = set(foldable_ops(model))  # float16 / sparse weights: storage, folded by read_graph
    for i, op in enumerate(sg.operators):
        kind = fu.opcode_to_name(model, op.opcodeIndex)
        if i in stored:
            continue
        if kind in _CONTROL_FLOW:
            raise ModelNotSupportedError(f"the TFLite model has control flow ({kind}); tf_tpe_tuner "
                                         "tunes models without it")
        if kind == "CUSTOM":
            code = model.operatorCodes[op.opcodeIndex].customCode
            raise ModelNotSupportedError(f"the TFLite model has a custom op {_text(code)!r} that LiteRT "
                                         "cannot run without its own kernel")
        if kind in _BOUNDARY or any(names.get(sg.tensors[t].type) in _INT_TYPES for t in op.outputs):
            raise TunerInputError("nothing to tune: the TFLite model is already int8 (quantized); give "
                                  "the float model")


def _unique_names(model) -> list[str]:
    """Give each op's first output tensor a unique name; returns them by op index."""
    sg = model.subgraphs[0]
    keep = {int(t) for t in list(sg.inputs) + list(sg.outputs)}
    taken: dict[str, int] = {}
    for t in keep:
        taken[_text(sg.tensors[t].name)] = 1
    out = []
    for i, op in enumerate(sg.operators):
        t = int(op.outputs[0])
        name = _text(sg.tensors[t].name)
        if t not in keep and (name in taken or not name):
            name = f"{name or 'op'}#{i}"
            sg.tensors[t].name = name.encode()
        taken[name] = 1
        out.append(name)
    return out


def _signature_shape(tensor) -> tuple:
    """A tensor's shape with its dynamic dimensions (-1 in the shape signature) as None."""
    dims = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
    return tuple(None if d < 0 else int(d) for d in np.asarray(dims).tolist())


def _op_macs(model, op, kind: str) -> int:
    sg = model.subgraphs[0]

    def shape(t):
        return [max(1, int(d)) for d in np.asarray(sg.tensors[t].shape).tolist()]
    out = math.prod(shape(op.outputs[0]))
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D"):
        w = shape(op.inputs[1])  # OHWI / 1HWO
        per = math.prod(w[1:-1]) * (w[-1] if kind != "DEPTHWISE_CONV_2D" else 1)
        return out * per
    if kind == "FULLY_CONNECTED":
        return out * shape(op.inputs[1])[-1]
    if kind == "BATCH_MATMUL":
        return out * shape(op.inputs[0])[-1]
    if kind == "TRANSPOSE_CONV":
        w = shape(op.inputs[1])  # OHWI, applied to every input element
        return math.prod(shape(op.inputs[2])) * math.prod(w[:-1])
    return out


def _shown_names(nodes: list[str], kinds: list[str], converter_names: list[str], quantizable: set[str],
                 scopes: LayerScopes | None, output_of: dict[int, int]) -> list[str]:
    """What users see for each op: `<op type>:<output tensor name>`, or, with `scopes`, the
    Keras layer it came from (`layer_names`; float ops as `layer:<op type>`)."""
    shown = [f"{kind.lower()}:{node.split(';')[0]}" for node, kind in zip(nodes, kinds)]
    if scopes is None:
        return shown
    layers = [scopes.layer_of(name, output_of.get(i)) for i, name in enumerate(converter_names)]
    units = [i for i, node in enumerate(nodes) if node in quantizable and kinds[i] not in PASS_THROUGH]
    order = units + [i for i in range(len(nodes)) if i not in set(units)]  # units get the bare names
    for i, name in zip(order, layer_unit_names([(nodes[i], kinds[i], layers[i]) for i in order])):
        shown[i] = name or shown[i]
    return shown


def read_graph(source: "bytes | str | os.PathLike", calib=None, batch_size: int = 32,
               scopes: LayerScopes | None = None) -> TfliteGraph:
    """The units of a float TFLite model; `calib` (`ArrayData`) calibrates the one quantization
    that asks what is quantizable (random inputs of the model's shapes when not given: ranges do
    not decide which ops can be int8). `scopes`: the model was converted from a Keras graph by a
    front-end, and units are named after its layers (`layer_names`)."""
    schema_fb, fu = _tools()
    raw = load_tflite(source)
    model = fu.read_model_from_bytearray(bytearray(raw))
    _check_float(model, schema_fb, fu)
    from .tflite_fold import fold_model

    fold_model(model, raw)  # float16 / sparse weights as float32: the quantizer fails on them
    converter_names = [_text(model.subgraphs[0].tensors[op.outputs[0]].name) for op in model.subgraphs[0].operators]
    nodes = _unique_names(model)
    float_model = bytes(fu.convert_object_to_bytearray(model))
    sg = model.subgraphs[0]
    kinds = [fu.opcode_to_name(model, op.opcodeIndex) for op in sg.operators]
    input_names = [_text(sg.tensors[t].name).split(":")[0] for t in sg.inputs]
    input_shapes = [_signature_shape(sg.tensors[t]) for t in sg.inputs]
    output_shapes = [_signature_shape(sg.tensors[t]) for t in sg.outputs]
    quantizable = quantizable_nodes(float_model, calib, input_shapes, batch_size)
    producer = {int(op.outputs[j]): i for i, op in enumerate(sg.operators) for j in range(len(op.outputs))}
    shown = _shown_names(nodes, kinds, converter_names, quantizable, scopes,
                         {producer[int(t)]: k for k, t in enumerate(sg.outputs) if int(t) in producer})
    units, float_layers, display = [], [], {}
    for i, (node, kind) in enumerate(zip(nodes, kinds)):
        if kind in PASS_THROUGH:
            float_layers.append(FloatLayer(shown[i], node, kind, "moves or picks values: runs in its "
                                           "neighbours' precision", passthrough=True))
        elif node in quantizable:
            units.append(Unit(shown[i], (node,), (kind,)))
        else:
            float_layers.append(FloatLayer(shown[i], node, kind, "the quantizer leaves this op float"))
        display[node] = shown[i]
    names = [u.name for u in units]
    for j, u in enumerate(units):  # the first ;-part can repeat: keep the names unique
        if names.count(u.name) > 1:
            index = nodes.index(u.layers[0])
            units[j] = Unit(f"{u.name}#{index}", u.layers, u.layer_types)
    unit_of_node = {u.layers[0]: u.name for u in units}
    for u in units:
        display[u.layers[0]] = u.name
    macs = {node: _op_macs(model, op, kind) for node, op, kind in zip(nodes, sg.operators, kinds)}
    passthrough = {i for i, kind in enumerate(kinds) if kind in PASS_THROUGH}

    def source_unit(tensor: int) -> str | None:
        """The unit whose output reaches `tensor` through pass-through ops (None: an input,
        a constant or a float op)."""
        while tensor in producer:
            i = producer[tensor]
            if i not in passthrough:
                return unit_of_node.get(nodes[i])
            tensor = int(sg.operators[i].inputs[0])
        return None

    def elements(tensor: int) -> int:
        return math.prod(max(1, int(d)) for d in np.asarray(sg.tensors[tensor].shape).tolist())

    edges = []
    readers: dict[int, list[int]] = {}
    for i, op in enumerate(sg.operators):
        for t in op.inputs:
            if int(t) >= 0:
                readers.setdefault(int(t), []).append(i)
        if nodes[i] in unit_of_node:
            for t in op.inputs:
                t = int(t)
                if t < 0 or (t not in producer and t not in [int(x) for x in sg.inputs]):
                    continue  # a constant (weights)
                edges.append((source_unit(t), unit_of_node[nodes[i]], elements(t)))
    for t in sg.outputs:
        edges.append((source_unit(int(t)), None, elements(int(t))))

    def near(i: int) -> set[str]:
        """The units a pass-through op reads from or feeds, through other pass-throughs."""
        found, todo, seen = set(), [i], set()
        while todo:
            k = todo.pop()
            if k in seen:
                continue
            seen.add(k)
            op = sg.operators[k]
            neighbours = [producer[int(t)] for t in op.inputs if int(t) in producer]
            neighbours += [r for t in op.outputs for r in readers.get(int(t), [])]
            for n in neighbours:
                if n in passthrough:
                    todo.append(n)
                elif nodes[n] in unit_of_node:
                    found.add(unit_of_node[nodes[n]])
        return found
    passthrough_units = {nodes[i]: near(i) for i in passthrough}
    output_nodes = [nodes[producer[int(t)]] for t in sg.outputs if int(t) in producer]
    if not units:
        raise ModelNotSupportedError("the TFLite model has no op that the quantizer can run in int8: "
                                     "there is nothing to tune")
    return TfliteGraph(float_model, units, float_layers, display, input_names, input_shapes, output_shapes,
                       macs, edges, passthrough_units, output_nodes, reference_model=raw)


def calibrate(float_model: bytes, calib, input_shapes: list[tuple], batch_size: int = 32) -> bytes:
    """The float model with every tensor's min/max over `calib` (`ArrayData`; random inputs of
    the model's shapes when None), as the converter's calibrate-only mode writes it. A model
    whose inputs fix the batch (a shape without a dynamic first dimension) is fed batches of
    exactly that size: the calibrator would resize it, and such models can hold their batch
    inside the graph (slice ends, reshapes) and compute garbage at another."""
    from tensorflow.lite.python.optimize import calibrator

    # each input in its own dtype (the calibrator refuses float32 for an int32 input); random
    # integer inputs are zeros, a valid index for a gather or an embedding
    schema_fb, _ = _tools()
    sg = schema_fb.Model.GetRootAsModel(float_model, 0).Subgraphs(0)
    dtypes = [np.dtype(_type_names(schema_fb)[sg.Tensors(int(t)).Type()].lower()) for t in sg.InputsAsNumpy()]
    from .batching import fixed_batch, fixed_batches

    fixed = fixed_batch(input_shapes)

    def batches():
        if calib is None:
            rng = np.random.default_rng(0)
            yield [rng.standard_normal([d or 1 for d in shape]).astype(dtype) if dtype.kind == "f"
                   else np.zeros([d or 1 for d in shape], dtype) for shape, dtype in zip(input_shapes, dtypes)]
            return
        for batch in (calib.batches(batch_size) if fixed is None else fixed_batches(calib.x, fixed)):
            yield [np.asarray(a, dtype=dtype) for a, dtype in zip(batch, dtypes)]
    return calibrator.Calibrator(float_model).calibrate(batches)


def quantize(calibrated: bytes, denylist: list[str]) -> bytes:
    """The calibrated model quantized by the converter's MLIR quantizer, `denylist` ops float."""
    from tensorflow.lite.python.convert import mlir_quantize

    from ._native import native_stderr_silenced
    from ._tf import tf

    with native_stderr_silenced():  # it prints "fully_quantize: 0, ..." on every call
        return mlir_quantize(calibrated, denylisted_nodes=denylist, input_data_type=tf.float32,
                             output_data_type=tf.float32, disable_per_channel_for_dense_layers=True)


def int8_nodes(tflite: bytes, known: set[str]) -> set[str]:
    """The known node names whose op runs in an integer type in a quantized model. The quantizer
    renames an int8 op that writes a model output with a trailing `1`: mapped back."""
    schema_fb, _ = _tools()
    names = _type_names(schema_fb)
    model = schema_fb.Model.GetRootAsModel(tflite, 0)  # lazy: unpacking it all costs as much as quantizing
    sg = model.Subgraphs(0)
    boundary = {getattr(schema_fb.BuiltinOperator, kind) for kind in _BOUNDARY}
    codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    found = set()
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        if codes[op.OpcodeIndex()] in boundary or not op.OutputsLength():
            continue
        tensor = sg.Tensors(op.Outputs(0))
        if names.get(tensor.Type()) not in _INT_TYPES:
            continue
        name = _text(tensor.Name())
        if name not in known and name.endswith("1") and name[:-1] in known:
            name = name[:-1]
        if name in known:
            found.add(name)
    return found


def quantizable_nodes(float_model: bytes, calib, input_shapes: list[tuple], batch_size: int = 32) -> set[str]:
    """The ops the quantizer runs in int8 when nothing is denied."""
    schema_fb, fu = _tools()
    model = fu.read_model_from_bytearray(bytearray(float_model))
    sg = model.subgraphs[0]
    known = {_text(sg.tensors[op.outputs[0]].name) for op in sg.operators if len(op.outputs)}
    return int8_nodes(quantize(calibrate(float_model, calib, input_shapes, batch_size), []), known)
