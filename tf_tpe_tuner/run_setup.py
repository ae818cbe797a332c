"""From what a user hands over to what a run needs: the walked model, the search space, the
`TrialSpec` (prepared realizer + evaluation settings) and the run's fingerprint.

Everything the user gave is checked here, before any trial: the conf's op_wise against the
units, the data against the model's inputs, the labels against its outputs, the backend against
`q_func`.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable

from .checks import warn_if_ranges_differ
from .conf import Conf
from .data import ArrayData, as_array_data, check_against_model
from .errors import TunerInputError
from .evaluate import Evaluator, make_metric
from .realizers import make_realizer, resolve_backend
from .samplers.base import SearchSpace
from .trial import CHOICES, EvaluationSpec, TrialSpec
from .walker import ModelGraph, apply_op_wise, unit_edges, walk


@dataclass
class PreparedRun:
    graph: ModelGraph
    space: SearchSpace
    spec: TrialSpec
    calib: ArrayData
    fingerprint: dict  # what makes trials comparable across a resume


def model_graph(model, backend: str = "denylist"):
    """The model as its search space: for the annotation backend, a tf_keras model walked by
    the Keras walker (`walker.walk`); for the default backend, every kind's float TFLite model
    (`frontends.float_tflite`: tf_keras, Keras 3, a plain SavedModel, a float `.tflite`) read by
    `tflite_graph.read_graph`, units named after the Keras layers where there is a graph."""
    from .frontends import float_tflite, is_keras3
    from .tflite_graph import TfliteGraph, read_graph

    if isinstance(model, (ModelGraph, TfliteGraph)):
        return model
    if isinstance(model, (str, os.PathLike)):  # a file or directory, as --model names it
        from .model_io import load_model

        model = load_model(os.fspath(model))
    if backend == "annotate" and not isinstance(model, (bytes, bytearray)) and not is_keras3(model):
        return walk(model)
    floating = float_tflite(model)
    return read_graph(floating.tflite, scopes=floating.scopes)


def edges_of(graph) -> list:
    """Tensors between units (`walker.unit_edges`), for the surrogate's latency model."""
    return graph.edges if getattr(graph, "kind", None) == "tflite" else unit_edges(graph)


def prepare(model, conf: Conf, calib_data: Any, eval_data: Any = None, eval_func: Callable | None = None,
            q_func: Callable | None = None, latency_func: Callable | None = None) -> PreparedRun:
    backend = resolve_backend(conf.get("quantization.backend"), q_func)
    graph = model_graph(model, backend)
    if conf.get("tuning.executor.name") == "ray":
        from .ray_executor import import_ray

        import_ray()  # a missing Ray is bad input: say so before any work
    if eval_data is not None and eval_func is not None:
        raise TunerInputError("give evaluation data (eval_data, --eval_data) or an eval_func, not both")
    fixed = apply_op_wise(graph, conf.op_wise)
    space = SearchSpace(tuple(graph.unit_names), {u: CHOICES for u in graph.unit_names}, fixed)
    names, shapes = graph.input_names, graph.input_shapes
    calib = check_against_model(as_array_data(calib_data, names, "calibration data"), shapes, "calibration data")
    calib = calib.take(conf.get("quantization.calibration.sampling_size"))
    if eval_data is not None:
        eval_data = check_against_model(as_array_data(eval_data, names, "evaluation data"), shapes,
                                        "evaluation data")
        warn_if_ranges_differ(calib, eval_data)
    perf = conf.get("evaluation.performance")
    settings = dict(metric_name=conf.metric_name, metric_topk=conf.metric_topk, eval_data=eval_data,
                    eval_func=eval_func, batch_size=conf.get("evaluation.accuracy.batch_size"),
                    warmup=perf["warmup"], iterations=perf["iteration"], num_threads=perf["num_threads"],
                    latency_func=latency_func)
    checker = Evaluator(make_metric(conf.metric_name, conf.metric_topk), eval_data, eval_func)
    checker.check_labels(graph.output_shapes)
    batch_size = conf.get("quantization.calibration.batch_size")
    realizer = make_realizer(backend, graph, calib, batch_size, q_func)
    float_model = realizer.realize_float().tflite_model
    spec = TrialSpec(backend, realizer, EvaluationSpec(**settings, reference=float_model), list(graph.unit_names))
    fingerprint = {
        "float_model_sha256": hashlib.sha256(float_model).hexdigest(),
        "backend": backend,
        "calibration": {"sampling_size": len(calib), "batch_size": batch_size},
        "op_wise": dict(sorted(conf.op_wise.items())),
        "metric": "eval_func" if eval_func is not None else f"{conf.metric_name}:{conf.metric_topk}",
        "criterion": {"kind": conf.criterion[0], "tolerance": conf.criterion[1],
                      "higher_is_better": conf.higher_is_better},
    }
    return PreparedRun(graph, space, spec, calib, fingerprint)


def differences(recorded: dict, now: dict) -> list[str]:
    """The fingerprint entries that differ, as `name (history: a, now: b)`."""
    out = []
    for key in sorted(set(recorded) | set(now)):
        if recorded.get(key) != now.get(key):
            out.append(f"{key} (history: {recorded.get(key)!r}, now: {now.get(key)!r})")
    return out


def sensitivity_measure(prepared: PreparedRun, conf: Conf, latency_func: Callable | None):
    """A function (expired) -> Sensitivity over the searched units, measured through the
    denylist path (the tuning's own realizer when it is the denylist one); `expired()` True
    stops it part-way."""
    from .sensitivity import unit_sensitivity

    def measure(expired):
        realizer = prepared.spec.realizer
        if realizer.name != "denylist":
            realizer = make_realizer("denylist", prepared.graph, prepared.calib,
                                     conf.get("quantization.calibration.batch_size"))
        perf = conf.get("evaluation.performance")
        timing = None  # the latency of each one-unit model too, unless latency does not count
        if latency_func is None and float(conf.get("tuning.strategy.latency_weight")) > 0:
            timing = (perf["warmup"], perf["iteration"], perf["num_threads"])
        return unit_sensitivity(prepared.graph, prepared.calib, prepared.space.searched, realizer,
                                latency=timing, expired=expired)

    return measure
