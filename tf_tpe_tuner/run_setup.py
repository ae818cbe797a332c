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
from typing import Any, Callable, Mapping

from .checks import warn_if_ranges_differ
from .conf import Conf
from .conf_outputs import ERROR_METRICS
from .data import ArrayData, as_array_data, check_against_model
from .errors import TunerInputError
from .evaluate import Evaluator, TFLiteModel, make_metric
from .outputs import (Scoring, check_not_degenerate, check_output_labels, fill_from_float, in_model_order,
                      input_dtypes, labels_by_output, resolve_scoring)
from .realizers import make_realizer, resolve_backend
from .samplers.base import SearchSpace
from .study.criterion import Criterion
from .trial import CHOICES, EvaluationSpec, TrialSpec
from .walker import ModelGraph, apply_op_wise, unit_edges, walk


@dataclass
class PreparedRun:
    graph: ModelGraph
    space: SearchSpace
    spec: TrialSpec
    calib: ArrayData
    fingerprint: dict  # what makes trials comparable across a resume
    criterion: Criterion | None = None  # the run's: one output's, or every output within its own
    scoring: Scoring | None = None  # which outputs count, and how (None with an eval_func)


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
    graph = read_graph(floating.tflite, scopes=floating.scopes)
    keras_names = list(getattr(model, "output_names", None) or []) if not isinstance(model, (bytes, bytearray)) else []
    if len(keras_names) == len(graph.output_shapes):  # a Keras model: its outputs keep their Keras names
        graph.output_names = keras_names
    return graph


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
    names, shapes, dtypes = graph.input_names, graph.input_shapes, input_dtypes(graph)
    calib = check_against_model(as_array_data(calib_data, names, "calibration data"), shapes, "calibration data",
                                dtypes)
    calib = calib.take(conf.get("quantization.calibration.sampling_size"))
    scoring = resolve_scoring(conf, graph) if eval_func is None else None
    if eval_data is not None:
        eval_data = check_against_model(as_array_data(eval_data, names, "evaluation data"), shapes,
                                        "evaluation data", dtypes)
        warn_if_ranges_differ(calib, eval_data)
        eval_data = check_labels(eval_data, scoring, graph)
    elif eval_func is None:
        raise TunerInputError("give evaluation data (eval_data) or an eval_func")
    metric = scoring.outputs[0].metric if scoring is not None else conf.metric
    perf = conf.get("evaluation.performance")
    settings = dict(metric_name=metric.name, metric_topk=metric.topk, metric_threshold=metric.threshold,
                    eval_func=eval_func, batch_size=conf.get("evaluation.accuracy.batch_size"),
                    warmup=perf["warmup"], iterations=perf["iteration"], num_threads=perf["num_threads"],
                    latency_func=latency_func)
    batch_size = conf.get("quantization.calibration.batch_size")
    realizer = make_realizer(backend, graph, calib, batch_size, q_func)
    float_model = realizer.realize_float().tflite_model
    if eval_data is not None:
        eval_data, scoring = against_float(eval_data, scoring, float_model, settings["batch_size"])
        check_not_degenerate(scoring, eval_data.source or "the evaluation data")
    evaluation = EvaluationSpec(**settings, eval_data=eval_data, reference=float_model, scoring=scoring)
    spec = TrialSpec(backend, realizer, evaluation, list(graph.unit_names))
    criterion = scoring.criterion if scoring is not None else Criterion.from_conf(conf)
    metric_key, criterion_key = scoring.fingerprint() if scoring is not None else ("eval_func", criterion.as_dict())
    fingerprint = {
        "float_model_sha256": hashlib.sha256(float_model).hexdigest(),
        "backend": backend,
        "calibration": {"sampling_size": len(calib), "batch_size": batch_size},
        "op_wise": dict(sorted(conf.op_wise.items())),
        "metric": metric_key,
        "criterion": criterion_key,
    }
    return PreparedRun(graph, space, spec, calib, fingerprint, criterion, scoring)


def check_labels(data: ArrayData, scoring: Scoring, graph) -> ArrayData:
    """Labels per output (`outputs.labels_by_output`), refused where they cannot match; a
    one-output model's as before (`Evaluator.check_labels`)."""
    data = labels_by_output(data, scoring)
    check_output_labels(data, scoring, graph.output_shapes)
    if scoring.single and data.y[0] is not None:
        o = scoring.outputs[0]
        checker = Evaluator(make_metric(o.metric.name, o.metric.topk, o.metric.threshold),
                            ArrayData(data.x, data.y[0], data.source, data.npy))
        checker.check_labels(graph.output_shapes)
    return data


def against_float(data: ArrayData, scoring: Scoring, float_model: bytes, batch_size: int) -> tuple[ArrayData, Scoring]:
    """The float model's outputs as the labels of outputs that have none, and its per-output
    values as the baselines; a one-output model's data gets its `y` back as one array."""
    needs_float = not scoring.single or any(y is None for y in data.y) or any(  # else: as before
        o.criterion.kind == "relative" and o.metric.name in ERROR_METRICS for o in scoring.outputs)
    if needs_float:
        runner = TFLiteModel(float_model)
        outputs = in_model_order(runner, runner.predict(data, batch_size))
        data = fill_from_float(data, scoring, outputs)
        scoring = scoring.with_baselines(scoring.values(outputs, data.y))
    if scoring.single:
        data = ArrayData(data.x, data.y[0], data.source, data.npy)
    return data, scoring


def prepare_test_data(prepared: PreparedRun, test_data: Any) -> ArrayData | None:
    """Test data read, checked and labelled like the evaluation data (the float model's outputs
    where it has no labels), before the search: a bad file is refused at once."""
    if test_data is None or prepared.scoring is None:
        return None
    graph = prepared.graph
    data = check_against_model(as_array_data(test_data, graph.input_names, "test data"), graph.input_shapes,
                               "test data", input_dtypes(graph))
    data = check_labels(data, prepared.scoring, graph)
    spec = prepared.spec.evaluation
    return against_float(data, prepared.scoring, spec.reference, spec.batch_size)[0]


def test_scores(prepared: PreparedRun, data: ArrayData, tflite: bytes | None) -> dict:
    """report.json's test entry: the float and the handed-back model on the test data (several
    outputs: their shares of tolerance against the float model's values on the test data)."""
    spec = prepared.spec.evaluation
    scoring = prepared.scoring
    if not scoring.single:
        runner = TFLiteModel(spec.reference)
        float_outputs = in_model_order(runner, runner.predict(data, spec.batch_size))
        scoring = scoring.with_baselines(scoring.values(float_outputs, data.y))
    metric = make_metric(spec.metric_name, spec.metric_topk, spec.metric_threshold)
    evaluator = Evaluator(metric, data, batch_size=spec.batch_size, scoring=scoring)
    fp32, fp32_outputs = evaluator.scores(TFLiteModel(spec.reference))
    best, best_outputs = evaluator.scores(TFLiteModel(tflite)) if tflite is not None else (None, None)
    out = {"samples": len(data), "metric": scoring.label, "fp32_accuracy": fp32, "best_accuracy": best}
    if not scoring.single:
        out["outputs"] = scoring.summary(fp32_outputs, best_outputs)
    return out


def differences(recorded: dict, now: dict) -> list[str]:
    """The fingerprint entries that differ, as `name (history: a, now: b)`."""
    out = []
    for key in sorted(set(recorded) | set(now)):
        if recorded.get(key) != now.get(key):
            out.append(f"{key} (history: {recorded.get(key)!r}, now: {now.get(key)!r})")
    return out


def sensitivity_measure(prepared: PreparedRun, conf: Conf, latency_func: Callable | None, timed: bool = True):
    """A function (expired) -> Sensitivity over the searched units, measured through the
    denylist path (the tuning's own realizer when it is the denylist one); `expired()` True
    stops it part-way. `timed`: the one-unit models' latency too (not needed with a
    `LatencyModel`)."""
    from .sensitivity import unit_sensitivity

    def measure(expired):
        realizer = prepared.spec.realizer
        if realizer.name != "denylist":
            realizer = make_realizer("denylist", prepared.graph, prepared.calib,
                                     conf.get("quantization.calibration.batch_size"))
        perf = conf.get("evaluation.performance")
        timing = None  # the latency of each one-unit model too, unless latency does not count
        if timed and latency_func is None and float(conf.get("tuning.strategy.latency_weight")) > 0:
            timing = (perf["warmup"], perf["iteration"], perf["num_threads"])
        return unit_sensitivity(prepared.graph, prepared.calib, prepared.space.searched, realizer,
                                latency=timing, expired=expired)

    return measure


def latency_model_measure(prepared: PreparedRun, conf: Conf, latency_func: Callable | None,
                          save_to: str | None = None, resumed_readings: Mapping | None = None):
    """A function (evaluator) -> the run's `LatencyModel` (`latency_model.py`), or None when the
    search ranks trials by their own readings: a `latency_func` (its precision is the user's),
    latency that does not count, the annotation backend, or choices other than int8/fp32.
    The readings are written to `save_to`. A resumed run refits its model from the readings of
    the run it continues (`resumed_readings`): measured again, the model would rank the finished
    trials differently, and the resumed run would not be the same run."""
    from .latency_model import SINGLES_BUDGET_S, from_graph, load, measure, save

    space, realizer = prepared.space, prepared.spec.realizer
    if latency_func is not None or float(conf.get("tuning.strategy.latency_weight")) <= 0 \
            or realizer.name != "denylist" or getattr(prepared.graph, "kind", None) != "tflite" \
            or len(space.searched) < 2 or any(tuple(space.choices[u]) != CHOICES for u in space.searched):
        return None

    def run(evaluator: Evaluator):
        model = from_graph(prepared.graph, space.searched, space.fixed)
        if not (resumed_readings and load(model, resumed_readings)):
            def ratio(a: bytes, b: bytes) -> float:
                return TFLiteModel(a, evaluator.num_threads).latency_ratio(
                    TFLiteModel(b, evaluator.num_threads), evaluator.warmup, evaluator.iterations)
            # each unit alone float too, where that is cheap (small, fast models: where one
            # cost per op type misses most, and where per-unit readings cost seconds)
            cheap = len(model.units) * (evaluator.reference_ms or float("inf")) / 1000 * evaluator.iterations \
                <= SINGLES_BUDGET_S
            measure(model, lambda int8: realizer.realize(list(int8)).tflite_model, ratio,
                    evaluator.reference_bytes, singles=model.units if cheap else ())
        if save_to:
            save(model, save_to)
        return model

    return run
