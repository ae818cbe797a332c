"""The conf's metric keys, parsed: `evaluation.accuracy.metric`, the per-output `outputs` and
`combine` (which outputs count, and how their results make the one accuracy the criterion checks).

No TensorFlow and no model here: output names are checked against the model later
(`outputs.resolve_scoring`); here only the form of each entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .errors import TunerInputError

# name -> higher_is_better. agreement and NRMSE are fidelity metrics: they compare the model's
# outputs with the float model's (labels, or the float model's own outputs when none are given).
METRICS = {"topk": True, "mse": False, "rmse": False, "mae": False, "agreement": True, "nrmse": False}
ERROR_METRICS = frozenset(k for k, hib in METRICS.items() if not hib)
SPELLING = {"topk": "topk", "mse": "MSE", "rmse": "RMSE", "mae": "MAE", "agreement": "agreement",
            "nrmse": "NRMSE"}
COMBINE_WORST = "worst"
_CRITERION_KEYS = ("relative", "absolute", "higher_is_better")


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric: `name` (a METRICS key), `topk` (k for topk), `threshold` (agreement on a
    one-value output: the two sides of it are the two classes)."""

    name: str = "topk"
    topk: int = 1
    threshold: float = 0.5

    @property
    def label(self) -> str:
        """As the user reads it: top1, MSE, agreement, ..."""
        return f"top{self.topk}" if self.name == "topk" else SPELLING[self.name]

    @property
    def short(self) -> str:
        """As report.json has always named it: top1, mse, ..."""
        return f"top{self.topk}" if self.name == "topk" else self.name

    @property
    def key(self) -> str:
        """For the resume fingerprint (as before: "topk:1", "mse:1")."""
        return f"agreement:{self.threshold:g}" if self.name == "agreement" else f"{self.name}:{self.topk}"


@dataclass(frozen=True)
class OutputSetting:
    """`evaluation.accuracy.outputs.<output>`: its metric and criterion, None where not given."""

    metric: MetricSpec | None = None
    criterion: dict | None = None  # {relative | absolute, higher_is_better}, validated


def parse_metric(raw: Any, where: str = "evaluation.accuracy.metric") -> MetricSpec:
    """`{topk: 1}`, `{MSE: {}}`, `{agreement: {threshold: 0.0}}`, `NRMSE`, ... -> MetricSpec."""
    if raw is None:
        return MetricSpec()
    if isinstance(raw, str):
        raw = {raw: 1 if raw.lower() == "topk" else {}}  # a bare name: topk is top-1
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise TunerInputError(f"conf: {where} must name one metric, e.g. {{topk: 1}} or {{MSE: {{}}}}, "
                              f"got {raw!r}")
    (name, arg), = raw.items()
    key = str(name).lower()
    if key not in METRICS:
        raise TunerInputError(f"conf: {where} {name!r} is not supported; use one of "
                              "topk, MSE, RMSE, MAE, agreement, NRMSE")
    if key == "topk":
        if isinstance(arg, bool) or not isinstance(arg, int) or arg < 1:
            raise TunerInputError(f"conf: {where}.topk must be a whole number >= 1, got {arg!r}")
        return MetricSpec("topk", arg)
    if key == "agreement" and isinstance(arg, Mapping) and arg:
        unknown = set(arg) - {"threshold"}
        threshold = arg.get("threshold")
        if unknown:
            raise TunerInputError(f"conf: unknown key {where}.agreement.{sorted(unknown)[0]} "
                                  "(expected threshold)")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TunerInputError(f"conf: {where}.agreement.threshold must be a number, got {threshold!r}")
        return MetricSpec("agreement", threshold=float(threshold))
    if arg not in (None, {}) and not isinstance(arg, Mapping):
        raise TunerInputError(f"conf: {where}.{name} takes no value, got {arg!r}")
    if arg and key != "agreement":
        raise TunerInputError(f"conf: {where}.{name} takes no settings, got {arg!r}")
    return MetricSpec(key)


def _parse_criterion(raw: Any, where: str) -> dict:
    if not isinstance(raw, Mapping):
        raise TunerInputError(f"conf: {where} must be {{relative: 0.01}} or {{absolute: 0.01}}, got {raw!r}")
    for key in raw:
        if key not in _CRITERION_KEYS:
            raise TunerInputError(f"conf: unknown key {where}.{key} (expected relative, absolute or "
                                  "higher_is_better)")
    for key in ("relative", "absolute"):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise TunerInputError(f"conf: {where}.{key} must be a number >= 0, got {value!r}")
    hib = raw.get("higher_is_better")
    if hib is not None and not isinstance(hib, bool):
        raise TunerInputError(f"conf: {where}.higher_is_better must be true or false, got {hib!r}")
    if (raw.get("relative") is None) == (raw.get("absolute") is None):
        raise TunerInputError(f"conf: {where} takes exactly one of relative or absolute")
    return {k: raw.get(k) for k in _CRITERION_KEYS}


def parse_outputs(raw: Any) -> dict[str | int, OutputSetting]:
    """`evaluation.accuracy.outputs`: {output name or position: {metric, accuracy_criterion}}."""
    if raw is None:
        return {}
    where = "evaluation.accuracy.outputs"
    if not isinstance(raw, Mapping):
        raise TunerInputError(f"conf: {where} must map output names (or positions 0, 1, ...) to "
                              f"{{metric: ..., accuracy_criterion: ...}}, got {raw!r}")
    out: dict[str | int, OutputSetting] = {}
    for output, body in raw.items():
        here = f"{where}.{output}"
        if isinstance(output, bool) or not isinstance(output, (str, int)):
            raise TunerInputError(f"conf: {where} keys are output names or positions, got {output!r}")
        if not isinstance(body, Mapping) or not body:
            raise TunerInputError(f"conf: {here} must be {{metric: ..., accuracy_criterion: ...}}, got {body!r}")
        for key in body:
            if key not in ("metric", "accuracy_criterion"):
                raise TunerInputError(f"conf: unknown key {here}.{key} (expected metric or accuracy_criterion)")
        metric = parse_metric(body["metric"], f"{here}.metric") if "metric" in body else None
        criterion = (_parse_criterion(body["accuracy_criterion"], f"{here}.accuracy_criterion")
                     if "accuracy_criterion" in body else None)
        out[output] = OutputSetting(metric, criterion)
    return out


def parse_combine(raw: Any) -> str | int | list:
    """`evaluation.accuracy.combine`: "worst" (every output), an output (name or position), or a
    list of outputs (the worst of those)."""
    if raw is None:
        return COMBINE_WORST
    items = raw if isinstance(raw, list) else [raw]
    if not items or any(isinstance(i, bool) or not isinstance(i, (str, int)) for i in items):
        raise TunerInputError("conf: evaluation.accuracy.combine must be worst, an output's name or "
                              f"position, or a list of them, got {raw!r}")
    return raw
