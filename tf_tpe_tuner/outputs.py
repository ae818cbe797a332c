"""Models with several outputs: which outputs are scored, with which metric and criterion, where
their labels come from, and how the per-output results make the one accuracy the criterion checks.

- Names. An output is named as the model names it: a Keras model's output names, a TFLite model's
  output tensor names; or by its position (0, 1, ...). In data, the labels of an output are the
  array named after it or `y_<position>`; `y` alone is a one-output model's labels.
- No labels for an output: its labels are the float model's own outputs (fidelity), for every
  metric but topk (classes need labels; `agreement` is topk against the float model).
- One number. A single scored output: its metric, against its criterion, as before. Several
  (`combine: worst`, the default, or a list): each output's drop from its float baseline, as a
  share of its own tolerance; the run's accuracy is the worst (largest) share, lower is better,
  checked by the criterion "absolute 1": a configuration meets it when every output meets its own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from .conf_outputs import COMBINE_WORST, ERROR_METRICS, METRICS, MetricSpec
from .data import ArrayData, _check_finite
from .errors import TunerInputError
from .evaluate import Metric, make_metric, spread
from .study.criterion import _ROUNDING, Criterion

COMBINED_LABEL = "tolerance used (worst output)"
_POSITION = re.compile(r"y_(\d+)")


# -- what the model says about its outputs and inputs --------------------------------------------
def _flatbuffer_io(tflite: bytes):
    from tensorflow.lite.python import schema_py_generated as schema_fb

    return schema_fb, schema_fb.Model.GetRootAsModel(tflite, 0).Subgraphs(0)


def output_names(graph) -> list[str]:
    """The model's output names in its output order (a Keras model's, else the TFLite model's
    output tensor names)."""
    names = getattr(graph, "output_names", None)
    if names:
        return list(names)
    _, sg = _flatbuffer_io(graph.float_model)
    return [sg.Tensors(int(t)).Name().decode() for t in sg.OutputsAsNumpy()]


def input_dtypes(graph) -> list[str]:
    """The model's input dtypes as numpy names ("float32", "int32", ...)."""
    dtypes = getattr(graph, "input_dtypes", None)
    if dtypes:
        return list(dtypes)
    schema_fb, sg = _flatbuffer_io(graph.float_model)
    types = {v: k for k, v in vars(schema_fb.TensorType).items() if not k.startswith("_")}
    return [types[sg.Tensors(int(t)).Type()].lower() for t in sg.InputsAsNumpy()]


def in_model_order(model, outputs) -> list[np.ndarray]:
    """A `TFLiteModel`'s outputs (it lists them by tensor index) in the model's own output
    order, which quantization keeps while it renumbers tensors. `model`: the TFLiteModel that
    gave them, or the model's bytes (outputs then taken as listed by tensor index)."""
    outputs = outputs if isinstance(outputs, list) else [outputs]
    tflite = model if isinstance(model, (bytes, bytearray)) else model.tflite_model
    _, sg = _flatbuffer_io(tflite)
    indices = [int(t) for t in sg.OutputsAsNumpy()]
    details = getattr(model, "_outputs", None)  # the order TFLiteModel really gives them in
    given = [int(d["index"]) for d in details] if details is not None else sorted(indices)
    return [outputs[given.index(t)] for t in indices]


# -- scoring -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputScore:
    """One scored output: its name and position, metric, criterion and float baseline."""

    name: str
    position: int
    metric: MetricSpec
    criterion: Criterion
    baseline: float | None = None

    def metric_fn(self) -> Metric:
        return make_metric(self.metric.name, self.metric.topk, self.metric.threshold)

    def share(self, value: float) -> float:
        """The drop from the float baseline as a share of the tolerance (<= 1: meets)."""
        return self.criterion.drop(self.baseline, value) / max(self.criterion.tolerance, _ROUNDING)


@dataclass(frozen=True)
class Scoring:
    """How a run scores the model's outputs (see the module docstring). Picklable."""

    outputs: tuple[OutputScore, ...]  # the scored ones
    names: tuple[str, ...]  # every output of the model, in order

    @property
    def single(self) -> bool:
        """A model with one output: scored exactly as before (`Evaluator`'s own path)."""
        return len(self.names) == 1

    @property
    def combined(self) -> bool:
        return len(self.outputs) > 1

    @property
    def criterion(self) -> Criterion:
        return Criterion("absolute", 1.0, False) if self.combined else self.outputs[0].criterion

    @property
    def label(self) -> str:
        return COMBINED_LABEL if self.combined else self.outputs[0].metric.label

    def values(self, preds: Sequence[np.ndarray], ys: Sequence) -> dict[str, float]:
        """{output: its metric} from outputs and labels in model order."""
        return {o.name: float(o.metric_fn().compute(preds[o.position], ys[o.position])) for o in self.outputs}

    def evaluate(self, preds: Sequence[np.ndarray], ys: Sequence) -> tuple[float, dict[str, float]]:
        """(the run's accuracy, {output: its metric}) from outputs and labels in model order."""
        values = self.values(preds, ys)
        if not self.combined:
            return values[self.outputs[0].name], values
        return max(o.share(values[o.name]) for o in self.outputs), values

    def score(self, model, outputs, ys: Sequence) -> tuple[float, dict[str, float]]:
        """`evaluate` on the outputs a `TFLiteModel` gave (see `in_model_order`)."""
        return self.evaluate(in_model_order(model, outputs), ys)

    def with_baselines(self, values: dict[str, float]) -> "Scoring":
        return replace(self, outputs=tuple(replace(o, baseline=values[o.name]) for o in self.outputs))

    def fingerprint(self) -> tuple[str, dict]:
        """(metric, criterion) for the resume fingerprint; for one output as before."""
        if self.single:
            o = self.outputs[0]
            return o.metric.key, o.criterion.as_dict()
        metric = ", ".join(f"{o.name}={o.metric.key}" for o in self.outputs)
        return f"outputs: {metric}", {**self.criterion.as_dict(),
                                      "outputs": {o.name: o.criterion.as_dict() for o in self.outputs}}

    def summary(self, fp32: dict | None, best: dict | None) -> list[dict]:
        """Per output: metric, criterion, the float and the handed-back model's value, verdict."""
        rows = []
        for o in self.outputs:
            value = None if best is None else best.get(o.name)
            base = None if fp32 is None else fp32.get(o.name)
            rows.append({"output": o.name, "metric": o.metric.label, "criterion": o.criterion.describe(),
                         "fp32": base, "best": value,
                         "meets": None if value is None or base is None else o.criterion.meets(base, value)})
        return rows


def _find(key, names: Sequence[str], where: str) -> int:
    if isinstance(key, str) and key in names:
        return names.index(key)
    if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
        if int(key) < len(names):
            return int(key)
    raise TunerInputError(f"conf: {where} names no output of the model (outputs: {', '.join(names)}; "
                          f"or by position 0..{len(names) - 1})")


def resolve_scoring(conf, graph) -> Scoring:
    """The conf's metric, outputs and combine keys against the model's outputs."""
    names = output_names(graph)
    settings = {}
    for key, setting in conf.output_settings.items():
        position = _find(key, names, f"evaluation.accuracy.outputs.{key}")
        if position in settings:
            raise TunerInputError(f"conf: evaluation.accuracy.outputs names output {names[position]} twice")
        settings[position] = setting
    combine = conf.combine
    if combine == COMBINE_WORST:
        scored = list(range(len(names)))
    else:
        items = combine if isinstance(combine, list) else [combine]
        scored = sorted({_find(k, names, f"evaluation.accuracy.combine {k!r}") for k in items})
    global_crit = conf.get("tuning.accuracy_criterion")
    outputs = []
    for position in scored:
        setting = settings.get(position)
        metric = setting.metric if setting is not None and setting.metric is not None else conf.metric
        crit = setting.criterion if setting is not None and setting.criterion is not None else global_crit
        hib = crit.get("higher_is_better")
        if hib is None and metric is conf.metric:  # the global higher_is_better is the global metric's
            hib = global_crit.get("higher_is_better")
        kind = "absolute" if crit.get("absolute") is not None else "relative"
        outputs.append(OutputScore(names[position], position, metric, Criterion(
            kind, float(crit[kind]), METRICS[metric.name] if hib is None else bool(hib))))
    return Scoring(tuple(outputs), tuple(names))


# -- labels --------------------------------------------------------------------------------------
def labels_by_output(data: ArrayData, scoring: Scoring) -> ArrayData:
    """`data` with `y` as one entry per output (model order; None: no labels), from `y` (one
    output), arrays named after outputs or `y_<position>`. Refuses arrays that name no output."""
    names, where = list(scoring.names), data.source or "evaluation data"
    ys: list = [None] * len(names)
    if isinstance(data.y, list) and len(names) == 1 and len(data.y) != 1:
        return ArrayData(data.x, [np.asarray(data.y)], data.source, data.npy)  # as before: stacked
    if isinstance(data.y, list):
        if len(data.y) != len(names):
            raise TunerInputError(f"{where}: {len(data.y)} label arrays for a model with {len(names)} outputs "
                                  f"({', '.join(names)})")
        ys = list(data.y)
    elif data.y is not None:
        if len(names) == 1:  # as before: y, whatever else the data holds
            return ArrayData(data.x, [data.y], data.source, data.npy)
        else:
            raise TunerInputError(
                f"{where} has one label array (y), but the model has {len(names)} outputs ({', '.join(names)}): "
                f"name each output's labels after it, or y_0..y_{len(names) - 1} by position")
    for key, array in data.named.items():
        match = _POSITION.fullmatch(key)
        if key in names:
            position = names.index(key)
        elif match and int(match.group(1)) < len(names):
            position = int(match.group(1))
        elif len(names) == 1:  # as before: a one-output model's .npz may hold other arrays
            continue
        else:
            raise TunerInputError(
                f"{where} has an array named {key!r}, which names no input or output of the model "
                f"(outputs: {', '.join(names)}; or y_0..y_{len(names) - 1} by position)")
        if ys[position] is not None:
            raise TunerInputError(f"{where} gives the labels of output {names[position]} twice")
        ys[position] = array
    for position, y in enumerate(ys):
        if y is None:
            continue
        if len(y) != len(data):
            raise TunerInputError(f"{where}: the labels of output {names[position]} number {len(y)} for "
                                  f"{len(data)} samples")
        if np.issubdtype(np.asarray(y).dtype, np.number):
            _check_finite(np.asarray(y), f"{where}: the labels of output {names[position]}")
    return ArrayData(data.x, ys, data.source, data.npy)


def check_output_labels(data: ArrayData, scoring: Scoring, output_shapes: Sequence[tuple]) -> None:
    """Refuse labels that cannot match their output (shape, class indices, no spread for NRMSE)."""
    from .evaluate import _check_class_indices

    where = data.source or "evaluation data"
    for o in scoring.outputs:
        y = data.y[o.position]
        if y is None:
            _require_labels(o, scoring, where)
            continue
        y = np.asarray(y)
        shape = tuple(output_shapes[o.position])
        width = shape[-1] if len(shape) > 1 else 1
        size = int(np.prod([d for d in shape[1:] if d]))
        what = f"{where}: the labels of output {o.name}"
        if scoring.single:  # checked as before, by Evaluator.check_labels
            pass
        elif o.metric.name == "topk" and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
            _check_class_indices(y, width, where)
            if width and width > 1 and (y.min() < 0 or y.max() >= width):
                raise TunerInputError(f"{what} range over {int(y.min())}..{int(y.max())} but the output has "
                                      f"{width} classes")
        elif (y.shape[-1] != width) if o.metric.name == "topk" else (y.reshape(len(y), -1).shape[1] != size):
            raise TunerInputError(f"{what} have shape {y.shape[1:]}, the output is {shape[1:]}")
        if o.metric.name == "nrmse" and spread(y) == 0:
            raise TunerInputError(
                f"{what} do not vary (their spread is 0), and NRMSE divides by it: use RMSE or MAE with "
                "an absolute criterion for this output")


def _require_labels(o: OutputScore, scoring: Scoring, where: str) -> None:
    if o.metric.name == "topk":
        which = "y" if scoring.single else f"{o.name} or y_{o.position}"
        of = "" if scoring.single else f" for output {o.name}"
        raise TunerInputError(
            f"{where} has no labels ({which}){of}; the topk metric needs class labels: give them, or "
            "use the agreement metric, which compares the top class with the float model's own outputs")


def fill_from_float(data: ArrayData, scoring: Scoring, float_outputs: list[np.ndarray]) -> ArrayData:
    """Outputs without labels get the float model's outputs as labels; topk needs real labels."""
    ys = list(data.y)
    for o in scoring.outputs:
        if ys[o.position] is None:
            _require_labels(o, scoring, data.source or "evaluation data")
            ys[o.position] = float_outputs[o.position]
    return ArrayData(data.x, ys, data.source, data.npy)


def check_not_degenerate(scoring: Scoring, where: str) -> None:
    """Refuse a relative criterion on an error metric whose float baseline is exactly 0: a share
    of 0 allows no error at all (the labels are the float model's own outputs, typically)."""
    for o in scoring.outputs:
        if o.criterion.kind != "relative" or o.metric.name not in ERROR_METRICS or o.baseline != 0.0:
            continue
        what = o.metric.label if scoring.single else f"output {o.name}'s {o.metric.label}"
        instead = ("an absolute criterion: with NRMSE, {absolute: 0.02} lets the error reach 2 % of the "
                   "float outputs' spread" if o.metric.name == "nrmse" else
                   f"an absolute criterion, a bound on the {o.metric.label} in the output's units, or NRMSE with "
                   "an absolute criterion ({absolute: 0.02}: the error may reach 2 % of the float outputs' spread)")
        raise TunerInputError(
            f"conf: a relative criterion cannot work for {what}: the float model's {o.metric.label} on {where} "
            "is exactly 0 (the labels are the float model's own outputs), and a fraction of 0 allows no error "
            f"at all; use {instead}, or agreement for a classifier output")


def markdown_lines(rows: list[dict], test_rows: list[dict] | None = None) -> list[str]:
    """report.md's per-output table (`Scoring.summary` rows; with test data, its values too)."""
    def num(v):
        return "-" if v is None else f"{v:.4g}"

    test = {r["output"]: r for r in test_rows or []}
    head = "| output | metric | criterion | fp32 | tuned | meets |" + (" test fp32 | test tuned |" if test else "")
    lines = ["## Outputs", "", "Each output is checked against its own criterion; the accuracy above is the worst "
             "output's drop as a share of its tolerance (at most 1 meets)." if len(rows) > 1 else
             "Only this output is scored.", "", head, "|---" * (8 if test else 6) + "|"]
    for r in rows:
        t = test.get(r["output"], {})
        meets = "-" if r["meets"] is None else "meets" if r["meets"] else "misses"
        lines.append(f"| {r['output']} | {r['metric']} | {r['criterion']} | {num(r['fp32'])} | {num(r['best'])} | "
                     f"{meets} |" + (f" {num(t.get('fp32'))} | {num(t.get('best'))} |" if test else ""))
    return lines + [""]
