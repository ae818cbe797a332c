"""Reproducible export: the tuned TFLite model again, from best_config.yaml, the model and the
calibration data, without searching.

    from tf_tpe_tuner.rebuild import rebuild, check_accuracy
    exported = rebuild(model, "out/best_config.yaml", "calib.npz", input_type="int8", batch=1)
    check_accuracy(exported, "eval.npz")          # the accuracy recorded for that configuration?
    open("model.tflite", "wb").write(exported.tflite_model)

The model is realized by the realizer named in `realization.backend` (the one that produced it
during tuning), on the first `realization.calibration.sampling_size` calibration samples with
the recorded batch size: the same path, so the same ops, weights and quantization parameters.
(Tensor names can differ in a counter suffix that Keras adds, `quantize_layer_3`.)

Export options are applied afterwards, on the converted model, the same way for every backend:

- `input_type` / `output_type` "int8": the QUANTIZE op after a model input (DEQUANTIZE before an
  output) is removed and the int8 tensor becomes the input (output), with its scale and zero
  point; this needs the unit reading the input (writing the output) to be int8.
- `batch=1`: a fixed batch of one instead of a dynamic batch.
- `keras_io_names`: inputs and outputs named after the Keras model's inputs and outputs, and a
  `serving_default` signature with those names.
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import yaml

from .conf import Conf
from .data import ArrayData, as_array_data, check_against_model
from .errors import TunerInputError
from .evaluate import TFLiteModel, make_metric
from .walker import ModelGraph, walk

IO_TYPES = ("float32", "int8")
BATCHES = ("dynamic", "1")
_IO_DEFAULTS = {"input_type": "float32", "output_type": "float32", "batch": "dynamic"}


class ReproductionError(Exception):
    """The rebuilt model is not the one recorded (different int8 units or accuracy)."""


# -- best_config.yaml ---------------------------------------------------------------------
def load_best_config(source: "str | os.PathLike | Mapping") -> dict:
    """Read and check best_config.yaml (or the dict export.best_config() returns)."""
    if isinstance(source, Mapping):
        config, where = copy.deepcopy(dict(source)), "best_config"
    else:
        path = os.fspath(source)
        where = f"config file {path}"
        if not os.path.isfile(path):
            raise TunerInputError(f"{where} does not exist" if not os.path.exists(path)
                                  else f"{where} is not a file")
        try:
            with open(path, encoding="utf-8") as f:
                config = yaml.safe_load(f)
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TunerInputError(f"{where} is not a readable yaml file: {first}") from None
    if not isinstance(config, Mapping):
        raise TunerInputError(f"{where} must be a mapping (a best_config.yaml written by tf-tpe-tune)")
    units = config.get("units")
    if not isinstance(units, Mapping) or not units:
        raise TunerInputError(f"{where} has no `units` mapping (unit name -> int8 | fp32)")
    bad = {u: d for u, d in units.items() if d not in ("int8", "fp32")}
    if bad:
        unit, dtype = next(iter(bad.items()))
        raise TunerInputError(f"{where}: units.{unit} must be int8 or fp32, got {dtype!r}")
    realization = config.get("realization")
    if not isinstance(realization, Mapping) or not isinstance(realization.get("backend"), str):
        raise TunerInputError(f"{where} has no realization.backend (which realizer built the model)")
    calib = realization.get("calibration")
    if not isinstance(calib, Mapping):
        raise TunerInputError(f"{where} has no realization.calibration (sampling_size, batch_size)")
    for key in ("sampling_size", "batch_size"):
        value = calib.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TunerInputError(
                f"{where}: realization.calibration.{key} must be a whole number >= 1, got {value!r}")
    io = config.get("io") or {}
    if not isinstance(io, Mapping):
        raise TunerInputError(f"{where}: io must be a mapping")
    config["io"] = {**_IO_DEFAULTS, **{k: str(v) for k, v in io.items()}}
    return config


def realizer_class(backend: str):
    """The realizer class for `realization.backend`, among those this installation has.

    A backend `NAME` is the class whose `name` is NAME, in `tf_tpe_tuner.realize` or in
    `tf_tpe_tuner.realize_NAME` (or listed in a `REALIZERS` dict of either module).
    """
    found = []
    for module_name in ("realize", f"realize_{backend}"):
        try:
            module = importlib.import_module(f".{module_name}", __package__)
        except ModuleNotFoundError as err:
            if err.name and err.name.endswith(module_name):
                continue
            raise
        registry = getattr(module, "REALIZERS", None)
        if isinstance(registry, Mapping) and backend in registry:
            return registry[backend]
        for value in vars(module).values():
            if isinstance(value, type) and getattr(value, "name", None) == backend \
                    and callable(getattr(value, "realize", None)):
                return value
        found.extend(getattr(v, "name") for v in vars(module).values()
                     if isinstance(v, type) and isinstance(getattr(v, "name", None), str)
                     and callable(getattr(v, "realize", None)))
    known = ", ".join(sorted(set(found))) or "none"
    raise TunerInputError(
        f"realization backend {backend!r} is not available in this installation (available: {known})")


# -- rebuilding -----------------------------------------------------------------------------
@dataclass
class ExportedModel:
    """A rebuilt TFLite model and what was checked about it."""

    tflite_model: bytes
    config: dict  # the best_config it was rebuilt from
    int8_units: list[str]  # what really is int8 in the rebuilt model
    io: dict  # input_type, output_type, batch, keras_io_names
    input_names: list[str]
    output_names: list[str]
    realized_model: bytes = b""  # the realizer's own output, before the io options
    accuracy: float | None = None  # set by check_accuracy
    seconds: dict = field(default_factory=dict)

    @property
    def recorded_int8_units(self) -> list[str]:
        return list(self.config.get("int8_units") or [])

    @property
    def int8_units_match(self) -> bool:
        """The same units are int8 as in the tuned model (when best_config recorded them)."""
        if "int8_units" not in self.config:
            return True
        return set(self.int8_units) == set(self.recorded_int8_units)

    @property
    def recorded_accuracy(self) -> float | None:
        return self.config.get("accuracy")


def rebuild(model, config: "str | os.PathLike | Mapping", calib_data: Any, *,
            input_type: str | None = None, output_type: str | None = None,
            batch: "str | int | None" = None, keras_io_names: bool = False,
            graph: ModelGraph | None = None) -> ExportedModel:
    """Rebuild the TFLite model that best_config.yaml describes.

    Args:
        model: the tf_keras model that was tuned (the same weights).
        config: best_config.yaml's path, or its content as a dict.
        calib_data: the calibration data used for tuning (array, (x, y), dict, dataset, .npz);
            its first `realization.calibration.sampling_size` samples are used, as in tuning.
        input_type, output_type: "float32" or "int8"; default: as recorded (`io`), float32.
        batch: 1 or "dynamic"; default: as recorded, dynamic.
        keras_io_names: name the inputs and outputs after the Keras model's.
        graph: the walked model, if the caller has it already.
    Raises:
        TunerInputError: the config does not fit the model or data, or an option cannot apply.
    """
    import time

    config = load_best_config(config)
    io = _io_options(config["io"], input_type, output_type, batch)
    io["keras_io_names"] = bool(keras_io_names)
    clock = time.perf_counter()
    graph = graph or walk(model)
    _check_units(config, graph)
    calib_conf = config["realization"]["calibration"]
    calib = check_against_model(as_array_data(calib_data, graph.input_names, "calibration data"),
                                graph.input_shapes, "calibration data")
    wanted = calib_conf["sampling_size"]
    if len(calib) < wanted:
        raise TunerInputError(
            f"calibration data has {len(calib)} samples, the model was calibrated on {wanted}: give "
            "the calibration data used for tuning")
    realizer = realizer_class(config["realization"]["backend"])(
        graph, calib.take(wanted), calib_conf["batch_size"])
    int8 = [u for u in graph.unit_names if config["units"][u] == "int8"]
    realization = realizer.realize(int8)
    seconds = {"realize": time.perf_counter() - clock}
    clock = time.perf_counter()
    input_names = list(getattr(model, "input_names", None) or graph.input_names)
    output_names = list(getattr(model, "output_names", None) or
                        [f"output_{i}" for i in range(len(graph.output_shapes))])
    tflite = apply_io_options(realization.tflite_model, io,
                              input_names if keras_io_names else None,
                              output_names if keras_io_names else None)
    seconds["io"] = time.perf_counter() - clock
    sample = [a[:1] for a in calib.x]
    _check_same_outputs(realization.tflite_model, tflite, sample)
    return ExportedModel(
        tflite_model=tflite, config=config,
        int8_units=sorted(realization.int8_units, key=graph.unit_names.index), io=io,
        input_names=_io_tensor_names(tflite)[0], output_names=_io_tensor_names(tflite)[1],
        realized_model=realization.tflite_model, seconds=seconds)


def _io_options(recorded: Mapping, input_type, output_type, batch) -> dict:
    io = {"input_type": input_type or recorded.get("input_type", "float32"),
          "output_type": output_type or recorded.get("output_type", "float32"),
          "batch": str(batch if batch is not None else recorded.get("batch", "dynamic"))}
    aliases = {"float": "float32", "fp32": "float32", "float32": "float32", "int8": "int8"}
    for key in ("input_type", "output_type"):
        value = aliases.get(str(io[key]).lower())
        if value is None:
            raise TunerInputError(f"{key} must be one of {', '.join(IO_TYPES)}, got {io[key]!r}")
        io[key] = value
    if io["batch"].lower() in ("none", "dynamic", "-1"):
        io["batch"] = "dynamic"
    if io["batch"] not in BATCHES:
        raise TunerInputError(f"batch must be 1 or dynamic, got {io['batch']!r}")
    return io


def _check_units(config: Mapping, graph: ModelGraph) -> None:
    given, known = set(config["units"]), set(graph.unit_names)
    if given == known:
        return
    parts = []
    if known - given:
        parts.append("the model's units " + ", ".join(u for u in graph.unit_names if u not in given)
                     + " are not in the config")
    if given - known:
        parts.append("the config's units " + ", ".join(sorted(given - known)) + " are not in the model")
    raise TunerInputError("best_config.yaml does not describe this model: " + "; ".join(parts))


# -- io options on the converted model --------------------------------------------------------
def _fb():
    from tensorflow.lite.python import schema_py_generated as schema_fb
    from tensorflow.lite.tools import flatbuffer_utils

    return schema_fb, flatbuffer_utils


def _name(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opcode(model, op) -> str:
    _, fu = _fb()
    return fu.opcode_to_name(model, op.opcodeIndex)


def apply_io_options(tflite: bytes, io: Mapping, input_names: list[str] | None = None,
                     output_names: list[str] | None = None) -> bytes:
    """int8 inputs/outputs, a fixed batch of one, and names, on a converted model."""
    int8_in, int8_out = io["input_type"] == "int8", io["output_type"] == "int8"
    fixed = io["batch"] == "1"
    if not (int8_in or int8_out or fixed or input_names or output_names):
        return tflite
    schema_fb, fu = _fb()
    model = fu.read_model_from_bytearray(bytearray(tflite))
    sg = model.subgraphs[0]
    drop: set[int] = set()
    if int8_in:
        for pos, t in enumerate(list(sg.inputs)):
            readers = [op for op in sg.operators if t in list(op.inputs)]
            if len(readers) != 1 or _opcode(model, readers[0]) != "QUANTIZE" or \
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
            if len(writers) != 1 or _opcode(model, writers[0]) != "DEQUANTIZE" or \
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
    schema_fb = _fb()[0]
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


def _io_tensor_names(tflite: bytes) -> tuple[list[str], list[str]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite)
    ins = sorted(interpreter.get_input_details(), key=lambda d: d["index"])
    outs = sorted(interpreter.get_output_details(), key=lambda d: d["index"])
    return [d["name"] for d in ins], [d["name"] for d in outs]


def _check_same_outputs(realized: bytes, exported: bytes, sample: list[np.ndarray]) -> None:
    """The io options must not change what the model computes (up to the int8 io step)."""
    if realized is exported:
        return
    a = _as_list(QuantizedIOModel(realized)(sample))
    b = _as_list(QuantizedIOModel(exported)(sample))
    for x, y in zip(a, b):
        if x.shape != y.shape or not np.allclose(x, y, rtol=1e-5, atol=1e-6):
            raise RuntimeError("applying the export options changed the model's outputs (a bug)")


def _as_list(value) -> list[np.ndarray]:
    return value if isinstance(value, list) else [value]


# -- running and checking an exported model ---------------------------------------------------
class QuantizedIOModel(TFLiteModel):
    """A TFLiteModel that takes and returns float values whatever its io types: int8 inputs
    are quantized with the input's scale and zero point, int8 outputs dequantized. A model with
    a fixed batch of one runs sample by sample."""

    def __init__(self, tflite_model: bytes, num_threads: int = 1):
        super().__init__(tflite_model, num_threads)
        self.fixed_batch = all(int(d["shape_signature"][0]) == 1 for d in self._inputs
                               if len(d["shape_signature"]))

    def __call__(self, *inputs):
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            inputs = tuple(inputs[0])
        n = int(np.shape(inputs[0])[0])
        if self.fixed_batch and n != 1:
            parts = [self(*[a[i:i + 1] for a in inputs]) for i in range(n)]
            if isinstance(parts[0], list):
                return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
            return np.concatenate(parts)
        if len(inputs) != len(self._inputs):
            raise ValueError(f"the model takes {len(self._inputs)} inputs, got {len(inputs)}")
        if not self.fixed_batch:
            self._resize(n)
        elif self._batch is None:
            self._interpreter.allocate_tensors()
            self._batch = 1
        for detail, value in zip(self._inputs, inputs):
            self._interpreter.set_tensor(detail["index"], _quantize(np.asarray(value, np.float32), detail))
        self._interpreter.invoke()
        outs = [_dequantize(self._interpreter.get_tensor(d["index"]), d) for d in self._outputs]
        return outs[0] if len(outs) == 1 else outs


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


def evaluate_accuracy(tflite: bytes, eval_data: Any, conf: "Conf | str | Mapping | None" = None,
                      input_names: list[str] | None = None,
                      input_shapes: list[tuple] | None = None) -> float:
    """The accuracy of a TFLite model on labelled data, with the conf's metric (default top-1)."""
    conf = conf if isinstance(conf, Conf) else Conf(conf)
    runner = QuantizedIOModel(tflite)
    names = input_names or [d["name"] for d in runner._inputs]
    data = as_array_data(eval_data, names, "evaluation data")
    if input_shapes is not None:
        data = check_against_model(data, input_shapes, "evaluation data")
    if data.y is None:
        raise TunerInputError("evaluation data has no labels (y)")
    metric = make_metric(conf.metric_name, conf.metric_topk)
    batch = conf.get("evaluation.accuracy.batch_size")
    return float(metric.compute(runner.predict(ArrayData([np.asarray(a, np.float32) for a in data.x],
                                                         data.y), batch), data.y))


def check_accuracy(exported: ExportedModel, eval_data: Any, conf: "Conf | str | Mapping | None" = None,
                   tolerance: float = 0.0, graph: ModelGraph | None = None) -> bool:
    """Evaluate the rebuilt model; True when it gives the accuracy recorded in best_config
    within `tolerance` (absolute). Sets `exported.accuracy`."""
    shapes = graph.input_shapes if graph is not None else None
    names = graph.input_names if graph is not None else None
    exported.accuracy = evaluate_accuracy(exported.tflite_model, eval_data, conf, names, shapes)
    recorded = exported.recorded_accuracy
    if recorded is None:
        raise TunerInputError("best_config.yaml records no accuracy to check against")
    return abs(exported.accuracy - float(recorded)) <= tolerance + 1e-9


# -- comparing two TFLite models ----------------------------------------------------------------
def op_list(tflite: bytes) -> list[tuple[str, str]]:
    """(op name, output dtype) for every op, in execution order."""
    schema_fb, fu = _fb()
    model = fu.read_model_from_bytearray(bytearray(tflite))
    types = {v: k for k, v in vars(schema_fb.TensorType).items() if not k.startswith("_")}
    sg = model.subgraphs[0]
    return [(_opcode(model, op), types.get(sg.tensors[op.outputs[0]].type, "?") if len(op.outputs) else "")
            for op in sg.operators]


def structure(tflite: bytes) -> list:
    """Everything that defines what a TFLite model computes, tensor names left out: ops with
    their options and operands, tensor types, shapes, quantization and weights."""
    _, fu = _fb()
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
        ops = [(_opcode(model, op), tuple(np.asarray(op.inputs).tolist()),
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
