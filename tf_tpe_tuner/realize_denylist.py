"""Realizing a configuration through the TFLite converter: calibrate once, re-quantize per trial.

`DenylistRealizer` has the interface of `realize.AnnotationRealizer` (`name`, `realize`,
`realize_float`, `calib`, `batch_size`, `q_func`) and is the fast path:

- Once, the flat float model (`graph.model`) is converted through a concrete function, as
  `realize.convert` does, in the converter's calibrate-only mode with the calibration samples as
  representative dataset: a float TFLite model that carries every tensor's min/max.
- Per configuration, that calibrated model is quantized again by the converter's MLIR quantizer
  (`mlir_quantize`) with a denylist: the TFLite ops of every fp32 unit (and of every layer that is
  not a unit and not a pass-through, which stays float as on the annotation path) keep running in
  float; quantize/dequantize ops are placed at the boundaries by the quantizer. This takes tens of
  milliseconds instead of seconds (no tfmot, no Keras, no conversion).

The quantizer does not honour the denylist for same-scale ops (AVERAGE_POOL_2D, MEAN, ...): it
propagates their int8 input's scale through them (measured: an fp32 AveragePooling after an int8
Add came out int8, with the denylist, with `denylisted_ops` and with its output statistics removed).
Such an op is made float afterwards in the flatbuffer (`force_float`): DEQUANTIZE before it,
QUANTIZE after it, and a QUANTIZE -> pass-through ops -> DEQUANTIZE chain that this leaves is run
in float instead.

TFLite names an op's output tensor after the TF ops fused into it (`;`-joined, each
`tpe_flat/<layer>/<op>`); an op named after no layer of the model (the model's output, for
instance, is renamed `Identity`) belongs to the layer of the op that produces its input, so a
softmax goes with its Dense. The quantizer silently ignores names it does not know, so what is
int8 is always read back from the quantized model (`realize.int8_flat_layers`).

`q_func` (a hook on the quantize-applied Keras model) has no meaning here: there is no Keras
model per trial. It needs `quantization.backend: annotate`.
"""
from __future__ import annotations

import time
import warnings
from typing import Callable, Iterable

import numpy as np

from ._native import native_stderr_silenced
from ._tf import tf
from .data import ArrayData
from .errors import TunerInputError
from .realization import Realization, convert, int8_flat_layers
from .walker import FLAT_MODEL_NAME, ModelGraph

REALIZATION_NAME = "denylist"
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


def _concrete_converter(graph: ModelGraph):
    """The converter `realize.convert` uses: a concrete function of the flat model, dynamic batch."""
    model = graph.model
    specs = [tf.TensorSpec((None,) + tuple(shape[1:]), t.dtype, name=name)  # the inputs' own dtypes
             for shape, name, t in zip(graph.input_shapes, graph.input_names, model.inputs)]

    def serve(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    concrete = tf.function(serve, input_signature=specs).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.experimental_lower_to_saved_model = False
    return converter


def calibrate_with_converter(graph: ModelGraph, calib: ArrayData, batch_size: int) -> bytes:
    """A float TFLite model of `graph.model` carrying min/max of every tensor over `calib`."""
    converter = _concrete_converter(graph)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    dtypes = [t.dtype.as_numpy_dtype for t in graph.model.inputs]

    def representative():
        for batch in calib.batches(batch_size):
            yield [np.asarray(a, dtype=d) for a, d in zip(batch, dtypes)]

    converter.representative_dataset = representative
    converter._experimental_calibrate_only = True  # pylint: disable=protected-access
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


def _op_layers(name: str, known: set[str]) -> set[str]:
    """The flat-graph layers named in a TFLite tensor name (`tpe_flat/<layer>/...;...`)."""
    found = set()
    for part in name.split(";"):
        pieces = part.split("/")
        if len(pieces) >= 3 and pieces[0] == FLAT_MODEL_NAME and pieces[1] in known:
            found.add(pieces[1])
    return found


def tflite_node_layers(tflite_model: bytes, layer_names: Iterable[str],
                       output_layers: list[str] | None = None) -> dict[str, set[str]]:
    """{TFLite node name (its op's first output tensor name): flat-graph layers it computes}.

    An op whose name names no layer belongs to the Keras layer of the model output it writes
    (`output_layers`, in the model's output order: TFLite renames an output op `Identity`), else
    to the layers of the ops producing its inputs.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow.lite.python import schema_py_generated as fb

    known = set(layer_names)
    outputs_in_order = [int(t) for t in fb.Model.GetRootAsModel(tflite_model, 0).Subgraphs(0).OutputsAsNumpy()]
    layer_of_output = dict(zip(outputs_in_order, output_layers or []))
    interpreter = Interpreter(
        model_content=tflite_model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops = interpreter._get_ops_details()  # pylint: disable=protected-access
    for op in reversed(ops):  # an output read through QUANTIZE/DEQUANTIZE ops is that output too
        if op["op_name"] in _BOUNDARY_OPS and len(op["outputs"]) and int(op["outputs"][0]) in layer_of_output:
            layer_of_output.setdefault(int(op["inputs"][0]), layer_of_output[int(op["outputs"][0])])
    layers_of_tensor: dict[int, set[str]] = {}
    nodes: dict[str, set[str]] = {}
    for op in ops:
        outputs = [int(t) for t in op["outputs"]]
        if op["op_name"] in _BOUNDARY_OPS or not outputs:
            continue
        name = interpreter._get_tensor_details(outputs[0], 0)["name"]  # pylint: disable=protected-access
        layers = _op_layers(name, known)
        if not layers and outputs[0] in layer_of_output:
            layers = {layer_of_output[outputs[0]]}
        if not layers:
            for t in op["inputs"]:
                layers |= layers_of_tensor.get(int(t), set())
        for t in outputs:
            layers_of_tensor[t] = layers
        nodes[name] = nodes.get(name, set()) | layers
    return nodes


def _int8_nodes(tflite_model: bytes) -> set[str]:
    """Names of the (non QUANTIZE/DEQUANTIZE) ops of subgraph 0 whose output is int8."""
    from tensorflow.lite.python import schema_py_generated as fb

    model = fb.Model.GetRootAsModel(tflite_model, 0)
    sub = model.Subgraphs(0)
    codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    boundary = {fb.BuiltinOperator.QUANTIZE, fb.BuiltinOperator.DEQUANTIZE}
    found = set()
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        if codes[op.OpcodeIndex()] in boundary or op.OutputsLength() == 0:
            continue
        tensor = sub.Tensors(op.Outputs(0))
        if tensor.Type() == fb.TensorType.INT8:
            found.add(tensor.Name().decode())
    return found


def _passthrough_neighbours(graph: ModelGraph) -> dict[str, set[str]]:
    """{pass-through layer: the units it reads from or feeds, through other pass-throughs}."""
    from .walker import producers

    model, passthrough = graph.model, graph.passthrough
    readers: dict[str, list[str]] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:  # pylint: disable=protected-access
            for parent in node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers]:
                readers.setdefault(parent.name, []).append(layer.name)

    def walk(name: str, step) -> set[str]:
        seen, todo, units = set(), [name], set()
        while todo:
            for nxt in step(todo.pop()):
                if nxt in seen:
                    continue
                seen.add(nxt)
                if nxt in graph.unit_of_layer:
                    units.add(graph.unit_of_layer[nxt])
                elif nxt in passthrough:
                    todo.append(nxt)
        return units

    up = lambda n: [p.name for p in producers(model.get_layer(n))]  # noqa: E731
    down = lambda n: readers.get(n, [])  # noqa: E731
    return {name: walk(name, up) | walk(name, down) for name in passthrough}


def _int8_denylisted(tflite_model: bytes, nodes: set[str]) -> list[int]:
    """Indices of the ops of subgraph 0 named in `nodes` whose output is int8 anyway."""
    from tensorflow.lite.python import schema_py_generated as fb

    model = fb.Model.GetRootAsModel(tflite_model, 0)
    sub = model.Subgraphs(0)
    codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    boundary = {fb.BuiltinOperator.QUANTIZE, fb.BuiltinOperator.DEQUANTIZE}
    hits = []
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        if codes[op.OpcodeIndex()] in boundary or op.OutputsLength() == 0:
            continue
        tensor = sub.Tensors(op.Outputs(0))
        if tensor.Type() == fb.TensorType.INT8 and tensor.Name().decode() in nodes:
            hits.append(i)
    return hits


def force_float(tflite_model: bytes, op_indices: list[int]) -> bytes:
    """Run the given int8 ops of subgraph 0 in float: DEQUANTIZE their int8 activation inputs,
    QUANTIZE their outputs back for int8 readers; then fold QUANTIZE -> int8 same-shape
    pass-through ops -> DEQUANTIZE chains into the float pass-through ops."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_model))
    sub = model.subgraphs[0]

    def opcode(code: int, version: int) -> int:
        for i, oc in enumerate(model.operatorCodes):
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
                return i
        oc = fb.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), version
        model.operatorCodes.append(oc)
        return len(model.operatorCodes) - 1

    def code_of(op) -> int:
        oc = model.operatorCodes[op.opcodeIndex]
        return max(oc.builtinCode, oc.deprecatedBuiltinCode)

    def float_twin(index: int, name: bytes) -> int:
        src = sub.tensors[index]
        t = fb.TensorT()
        t.shape, t.shapeSignature, t.hasRank = src.shape, src.shapeSignature, src.hasRank
        t.type, t.name = fb.TensorType.FLOAT32, name
        buf = fb.BufferT()
        model.buffers.append(buf)
        t.buffer = len(model.buffers) - 1
        sub.tensors.append(t)
        return len(sub.tensors) - 1

    def boundary_op(code: int, src: int, dst: int):
        op = fb.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode(code, 2), [src], [dst]
        return op

    def is_activation(index: int) -> bool:
        t = sub.tensors[index]
        return index >= 0 and t.type == fb.TensorType.INT8 and not (
            model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data))

    targets = {id(sub.operators[i]) for i in op_indices}
    rebuilt = []
    for op in sub.operators:
        if id(op) not in targets:
            rebuilt.append(op)
            continue
        inputs = list(op.inputs)
        for k, index in enumerate(inputs):
            if is_activation(index):
                twin = float_twin(index, sub.tensors[index].name + b"/dequantized")
                rebuilt.append(boundary_op(fb.BuiltinOperator.DEQUANTIZE, index, twin))
                inputs[k] = twin
        op.inputs = inputs
        rebuilt.append(op)
        outputs = list(op.outputs)
        for k, index in enumerate(outputs):
            if sub.tensors[index].type == fb.TensorType.INT8:
                name = sub.tensors[index].name
                sub.tensors[index].name = name + b"/requantized"
                twin = float_twin(index, name)
                outputs[k] = twin
                rebuilt.append(boundary_op(fb.BuiltinOperator.QUANTIZE, twin, index))
        op.outputs = outputs
    sub.operators = rebuilt
    _fold_requantize_chains(model, sub, code_of)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


_PASS_THROUGH_CODES = {"RESHAPE", "MAX_POOL_2D", "SQUEEZE"}


def _fold_requantize_chains(model, sub, code_of) -> None:
    """QUANTIZE(f) -> t ; P1..Pn int8 pass-throughs (one reader each) ; DEQUANTIZE -> g
    becomes P1..Pn in float reading f and writing g."""
    from tensorflow.lite.python import schema_py_generated as fb

    names = {getattr(fb.BuiltinOperator, n) for n in _PASS_THROUGH_CODES}
    changed = True
    while changed:
        changed = False
        readers: dict[int, list] = {}
        for op in sub.operators:
            for t in op.inputs:
                readers.setdefault(int(t), []).append(op)
        outputs = set(int(t) for t in sub.outputs)
        for q in sub.operators:
            if code_of(q) != fb.BuiltinOperator.QUANTIZE or sub.tensors[q.inputs[0]].type != fb.TensorType.FLOAT32:
                continue
            chain, t = [], int(q.outputs[0])
            while t not in outputs and len(readers.get(t, [])) == 1:
                nxt = readers[t][0]
                if code_of(nxt) in names and int(nxt.inputs[0]) == t:
                    chain.append(nxt)
                    t = int(nxt.outputs[0])
                    continue
                if code_of(nxt) == fb.BuiltinOperator.DEQUANTIZE and chain:
                    src = int(q.inputs[0])
                    for p in chain:  # run the pass-throughs in float
                        out = int(p.outputs[0])
                        sub.tensors[out].type = fb.TensorType.FLOAT32
                        sub.tensors[out].quantization = None
                        p.inputs = [src] + list(p.inputs[1:])
                        src = out
                    last = int(chain[-1].outputs[0])
                    final = int(nxt.outputs[0])
                    # the DEQUANTIZE's readers now read the last pass-through's float output
                    for op in sub.operators:
                        op.inputs = [last if int(i) == final else i for i in op.inputs]
                    sub.operators = [op for op in sub.operators if op is not q and op is not nxt]
                    changed = True
                break
            if changed:
                break


class Requantizing:
    """What both denylist realizers share: calibrated once (the time charged to the first
    realization's `calibrate` step), then per configuration `quantize()` and `_read_back()`."""

    def realize(self, int8_units: Iterable[str]) -> Realization:
        int8_units = frozenset(int8_units)
        if not int8_units:
            return self.realize_float()
        seconds: dict[str, float] = {}
        self.calibrate()
        if self._unpaid_setup:
            seconds["calibrate"] = sum(self.setup_seconds.values())
            self._unpaid_setup = False
        start = time.perf_counter()
        tflite = self.quantize(int8_units)
        mid = time.perf_counter()
        seconds["quantize"] = mid - start
        units, display = self._read_back(tflite)
        seconds["inspect"] = time.perf_counter() - mid
        return Realization(tflite, units, display, seconds)


class DenylistRealizer(Requantizing):
    """Realizes configurations of one model by re-quantizing a calibrated TFLite model.

    Same interface as `AnnotationRealizer`. Calibration happens on first use (`calibrate()`), its
    time is in `setup_seconds` and is charged to the first realization's `calibrate` step.
    Pickled (to a Ray worker), it carries the calibrated and the float TFLite models and the
    op/unit mapping, not the Keras model or the calibration samples: a worker needs neither.
    """

    name = REALIZATION_NAME
    per_channel_dense = False  # as tfmot does on the annotate path (the converter default is True)

    def __init__(self, graph: ModelGraph, calib: ArrayData, batch_size: int = 32,
                 q_func: Callable | None = None):
        if q_func is not None:
            raise TunerInputError(
                "q_func is called on the quantize-applied Keras model, which only the annotation "
                "path builds; set quantization.backend: annotate to use it (the denylist backend "
                "quantizes the TFLite model directly)")
        self.graph = graph
        self.calib = calib
        self.batch_size = batch_size
        self.q_func = None
        self._units = [(u.name, tuple(u.layers)) for u in graph.units]
        self._unit_of_layer = dict(graph.unit_of_layer)
        self._display = dict(graph.display_names)
        self._unit_layers = [layer for _, layers in self._units for layer in layers]
        self._calibrated: bytes | None = None
        self._float: bytes | None = None
        self._nodes: dict[str, set[str]] = {}
        self._always_float: set[str] = set()
        self.setup_seconds: dict[str, float] = {}
        self._unpaid_setup = False

    def __getstate__(self) -> dict:
        self.calibrate()
        self.realize_float()
        return {k: v for k, v in self.__dict__.items() if k not in ("graph", "calib")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, graph=None, calib=None)

    # -- once ----------------------------------------------------------------------------
    def calibrate(self) -> bytes:
        """Calibrate once (idempotent); returns the calibrated float TFLite model."""
        if self._calibrated is None:
            start = time.perf_counter()
            self._calibrated = calibrate_with_converter(self.graph, self.calib.for_calibration(self.batch_size),
                                                        self.batch_size)
            mid = time.perf_counter()
            model = self.graph.model
            self._output_layers = [t._keras_history.layer.name for t in model.outputs]  # pylint: disable=protected-access
            self._layer_names = [layer.name for layer in model.layers]
            self._nodes = tflite_node_layers(self._calibrated, self._layer_names, self._output_layers)
            not_searched = {f.layer for f in self.graph.float_layers if not f.passthrough}
            self._always_float = {node for node, layers in self._nodes.items() if layers & not_searched}
            self._passthrough_units = _passthrough_neighbours(self.graph)
            self.setup_seconds = {"calibrate": mid - start, "map": time.perf_counter() - mid}
            self._unpaid_setup = True
        return self._calibrated

    def denylist(self, int8_units: Iterable[str]) -> list[str]:
        """The TFLite node names that stay float when exactly `int8_units` are asked int8."""
        self.calibrate()
        int8_units = set(int8_units)
        fp32_layers = {layer for name, layers in self._units if name not in int8_units for layer in layers}
        # A pass-through op (MaxPool, Reshape, ...) runs in its input's precision on the annotation
        # path: int8 when an int8 unit feeds it or reads it, float between float units (the
        # quantizer would otherwise run it in int8 between two float ops, with a Q/DQ pair).
        float_passthrough = {layer for layer, near in self._passthrough_units.items()
                             if not near & int8_units}
        return sorted(node for node, layers in self._nodes.items()
                      if node in self._always_float or layers & fp32_layers
                      or (layers and layers <= float_passthrough))

    # -- per configuration ------------------------------------------------------------------
    def realize_float(self) -> Realization:
        start = time.perf_counter()
        if self._float is None:
            self._float = convert(self.graph.model, self.graph.input_shapes, self.graph.input_names, False)
        return Realization(self._float, frozenset(), (), {"convert": time.perf_counter() - start})

    def quantize(self, int8_units: Iterable[str]) -> bytes:
        """The TFLite model with exactly the nodes of `int8_units` allowed to be int8."""
        from tensorflow.lite.python.convert import mlir_quantize

        calibrated = self.calibrate()
        denylist = self.denylist(int8_units)
        with native_stderr_silenced():  # it prints "fully_quantize: 0, ..." on every call
            tflite = mlir_quantize(calibrated, denylisted_nodes=denylist,
                                   input_data_type=tf.float32, output_data_type=tf.float32,
                                   disable_per_channel_for_dense_layers=not self.per_channel_dense)
        stubborn = _int8_denylisted(tflite, set(denylist))
        return force_float(tflite, stubborn) if stubborn else tflite

    def _read_back(self, tflite: bytes) -> tuple[frozenset[str], tuple[str, ...]]:
        layers = int8_flat_layers(tflite, self._unit_layers)
        unit_layers = set(self._unit_layers)
        nameless = [node for node in _int8_nodes(tflite) if not _op_layers(node, unit_layers)]
        if nameless:  # an op TFLite renamed (the model's output op, `Identity`): by structure
            found = tflite_node_layers(tflite, self._layer_names, self._output_layers)
            for node in nameless:
                layers |= found.get(node, set()) & unit_layers
        units = frozenset(self._unit_of_layer[layer] for layer in layers)
        display = tuple(self._display[layer] for layer in self._unit_layers if layer in layers)
        return units, display
