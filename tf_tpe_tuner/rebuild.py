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

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .conf import Conf
from .data import ArrayData, as_array_data, check_against_model
from .errors import TunerInputError
from .evaluate import make_metric
from .batching import fixed_batch
from .best_config import load_best_config
from .realizers import make_realizer
from .tflite_edit import QuantizedIOModel, apply_io_options, io_tensor_names
from .walker import ModelGraph

IO_TYPES = ("float32", "int8")
BATCHES = ("dynamic", "1")


class ReproductionError(Exception):
    """The rebuilt model is not the one recorded (different int8 units or accuracy)."""


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
    graph: Any = field(default=None, repr=False)  # the walked model it was rebuilt on
    # the float model the tuning compared with (its outputs: the labels of outputs without any,
    # and each output's baseline), made only when check_accuracy needs it
    float_model: Callable[[], bytes] | None = field(default=None, repr=False)

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
            graph: ModelGraph | None = None, q_func=None) -> ExportedModel:
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
        q_func: the hook the tuning ran on the quantize-applied model, when it had one
            (`realization.q_func: true`): a yaml file cannot carry it.
    Raises:
        TunerInputError: the config does not fit the model or data, or an option cannot apply.
    """
    import time

    from .run_setup import model_graph

    config = load_best_config(config)
    if config["realization"].get("q_func") and q_func is None:
        raise TunerInputError(
            "best_config.yaml was tuned with a q_func (a Python function run on each quantized Keras "
            "model), which a yaml file cannot carry: the model cannot be rebuilt from it alone; "
            "from Python, pass the same function: rebuild(model, config, calib_data, q_func=...)")
    io = _io_options(config["io"], input_type, output_type, batch)
    io["keras_io_names"] = bool(keras_io_names)
    clock = time.perf_counter()
    graph = graph or model_graph(model, config["realization"]["backend"])
    fixed = fixed_batch(graph.input_shapes)
    if fixed is not None:
        if batch is not None and io["batch"] != str(fixed):  # asked for (a record may predate this)
            raise TunerInputError(
                f"batch {io['batch']}: the model fixes its batch at {fixed} (its inputs have no "
                "dynamic batch dimension, and such models can hold the batch inside the graph, "
                f"where resizing gives wrong outputs without an error); it can only be exported with "
                f"batch {fixed}" + (" (--batch=1, the default for it)" if fixed == 1 else ""))
        io["batch"] = str(fixed)
    _check_units(config, graph)
    calib_conf = config["realization"]["calibration"]
    calib = check_against_model(as_array_data(calib_data, graph.input_names, "calibration data"),
                                graph.input_shapes, "calibration data")
    wanted = calib_conf["sampling_size"]
    if len(calib) < wanted:
        raise TunerInputError(
            f"calibration data has {len(calib)} samples, the model was calibrated on {wanted}: give "
            "the calibration data used for tuning")
    realizer = make_realizer(config["realization"]["backend"], graph, calib.take(wanted),
                             calib_conf["batch_size"], q_func)
    int8 = [u for u in graph.unit_names if config["units"][u] == "int8"]
    realization = realizer.realize(int8)
    seconds = {"realize": time.perf_counter() - clock}
    clock = time.perf_counter()
    input_names = list(getattr(model, "input_names", None) or graph.input_names)
    output_names = list(getattr(model, "output_names", None) or
                        [f"output_{i}" for i in range(len(graph.output_shapes))])
    tflite = apply_io_options(realization.tflite_model,
                              io if fixed is None else {**io, "batch": "dynamic"},  # fixed already
                              input_names if keras_io_names else None,
                              output_names if keras_io_names else None)
    seconds["io"] = time.perf_counter() - clock
    sample = [a[:1] for a in calib.x]
    _check_same_outputs(realization.tflite_model, tflite, sample)
    return ExportedModel(
        tflite_model=tflite, config=config,
        int8_units=sorted(realization.int8_units, key=graph.unit_names.index), io=io,
        input_names=io_tensor_names(tflite)[0], output_names=io_tensor_names(tflite)[1],
        realized_model=realization.tflite_model, seconds=seconds, graph=graph,
        float_model=lambda: realizer.realize_float().tflite_model)


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


def evaluate_accuracy(tflite: bytes, eval_data: Any, conf: "Conf | str | Mapping | None" = None,
                      input_names: list[str] | None = None,
                      input_shapes: list[tuple] | None = None, *, graph=None,
                      float_model: bytes | None = None) -> float:
    """The accuracy of a TFLite model on evaluation data, with the conf's metric (default top-1).

    With `graph` (the walked model) and `float_model` (the float model the tuning compared
    with), scored exactly as the tuning scored it: every output's metric and criterion,
    `combine`, outputs without labels compared with the float model's outputs, several outputs
    as the worst share of tolerance. Without them, one output against labels (`y`)."""
    conf = conf if isinstance(conf, Conf) else Conf(conf)
    runner = QuantizedIOModel(tflite)
    batch = conf.get("evaluation.accuracy.batch_size")
    if graph is not None and float_model is not None:
        return _as_tuned(runner, eval_data, conf, graph, float_model, batch)
    names = input_names or [d["name"] for d in runner._inputs]
    data = as_array_data(eval_data, names, "evaluation data")
    if input_shapes is not None:
        data = check_against_model(data, input_shapes, "evaluation data")
    if data.y is None:
        raise TunerInputError("evaluation data has no labels (y)")
    metric = make_metric(conf.metric_name, conf.metric_topk)
    return float(metric.compute(runner.predict(ArrayData([np.asarray(a, np.float32) for a in data.x],
                                                         data.y), batch), data.y))


def _as_tuned(runner, eval_data: Any, conf: Conf, graph, float_model: bytes, batch: int) -> float:
    """`run_setup.prepare`'s evaluation path: the data checked and labelled, then scored."""
    from .evaluate import Evaluator
    from .outputs import check_not_degenerate, input_dtypes, resolve_scoring
    from .run_setup import against_float, check_labels

    scoring = resolve_scoring(conf, graph)
    data = check_against_model(as_array_data(eval_data, graph.input_names, "evaluation data"),
                               graph.input_shapes, "evaluation data", input_dtypes(graph))
    data, scoring = against_float(check_labels(data, scoring, graph), scoring, float_model, batch)
    check_not_degenerate(scoring, data.source or "the evaluation data")
    metric = scoring.outputs[0].metric
    evaluator = Evaluator(make_metric(metric.name, metric.topk, metric.threshold), data, batch_size=batch,
                          scoring=scoring)
    return evaluator.scores(runner)[0]


def check_accuracy(exported: ExportedModel, eval_data: Any, conf: "Conf | str | Mapping | None" = None,
                   tolerance: float = 0.0, graph: ModelGraph | None = None) -> bool:
    """Evaluate the rebuilt model as the tuning did (`evaluate_accuracy` with the graph and the
    float model); True when it gives the accuracy recorded in best_config within `tolerance`
    (absolute). Sets `exported.accuracy`."""
    graph = graph if graph is not None else exported.graph
    float_model = exported.float_model() if graph is not None and exported.float_model is not None else None
    exported.accuracy = evaluate_accuracy(exported.tflite_model, eval_data, conf, graph=graph,
                                          float_model=float_model)
    recorded = exported.recorded_accuracy
    if recorded is None:
        raise TunerInputError("best_config.yaml records no accuracy to check against")
    return abs(exported.accuracy - float(recorded)) <= tolerance + 1e-9
