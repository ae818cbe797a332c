"""One trial, described once: `TrialSpec` says how to run a trial, `TrialRunner` runs them.

The spec is a plain picklable value: the realizer, prepared so that it carries what its backend
needs (denylist: the calibrated float TFLite model and the op/unit mapping, no Keras model;
annotate: the flat Keras model as config + weights, the calibration samples and `q_func`), and
the evaluation settings (data and metric or `eval_func`, latency settings and `latency_func`,
the fp32 model as the latency reference). The tuning process and every Ray worker build their
runner from it the same way (`spec.runner()`); the search never builds realizers or evaluators.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from .data import ArrayData
from .errors import UserCodeError
from .evaluate import Evaluation, Evaluator, make_metric

INT8, FP32 = "int8", "fp32"
CHOICES = (INT8, FP32)  # a unit's choices today; the search keeps them as a list per unit
ORIGIN_USER, ORIGIN_TOOL = "user", "tool"
ORIGIN_LOST = "lost"  # the worker running it died: the configuration may be tried again


def int8_units(config: Mapping[str, str]) -> frozenset[str]:
    """The units a configuration asks to run in int8."""
    return frozenset(u for u, choice in config.items() if choice == INT8)


def tie_rule_key(floats: Iterable[bool]) -> tuple:
    """How a tie between configurations is settled (`floats`: per unit in model order, whether
    it runs float): fewer float units first, then int8 on the earlier units."""
    floats = tuple(bool(f) for f in floats)
    return sum(floats), floats


@dataclass
class TrialOutcome:
    """What running one configuration gave: a model and its scores, or an error."""

    ok: bool
    tflite_model: bytes | None = None
    accuracy: float | None = None
    outputs: dict[str, float] | None = None  # each scored output's metric (several outputs)
    latency_ms: float | None = None
    latency_ratio: float | None = None  # latency / fp32 latency, measured where the trial ran
    latency_source: str | None = None
    int8_units: list[str] = field(default_factory=list)
    int8_layers: list[str] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    error_origin: str | None = None  # ORIGIN_USER, ORIGIN_TOOL or ORIGIN_LOST
    traceback: str | None = None  # for the tool's own errors
    worker: dict | None = None  # where it ran, on Ray: {"host", "pid", "node"}; None in this process


@dataclass
class EvaluationSpec:
    """How trials are scored: everything an `Evaluator` is built from, plus the fp32 model
    that latency is measured against."""

    metric_name: str
    metric_topk: int
    eval_data: ArrayData | None
    eval_func: Callable | None
    batch_size: int
    warmup: int
    iterations: int
    num_threads: int
    latency_func: Callable[[bytes], float] | None
    reference: bytes  # the fp32 TFLite model
    metric_threshold: float = 0.5  # the agreement metric's, on a one-value output
    scoring: Any = None  # outputs.Scoring: which outputs count, and how (several outputs)

    def evaluator(self) -> Evaluator:
        evaluator = Evaluator(make_metric(self.metric_name, self.metric_topk, self.metric_threshold),
                              self.eval_data, self.eval_func, batch_size=self.batch_size, warmup=self.warmup,
                              iterations=self.iterations, num_threads=self.num_threads,
                              latency_func=self.latency_func, scoring=self.scoring)
        evaluator.set_latency_reference(self.reference)
        return evaluator


@dataclass
class TrialSpec:
    """How to run a trial of one tuning run (see the module docstring)."""

    backend: str
    realizer: Any  # a prepared realizer of tf_tpe_tuner.realizers
    evaluation: EvaluationSpec
    unit_order: list[str]

    def runner(self) -> "TrialRunner":
        return TrialRunner(self.realizer, self.evaluation.evaluator(), self.unit_order)


class TrialRunner:
    """Realizes and evaluates configurations of one model; knows nothing of the search."""

    def __init__(self, realizer, evaluator: Evaluator, unit_order: list[str]):
        self.realizer = realizer
        self.evaluator = evaluator
        self.unit_order = unit_order

    def evaluate_float(self) -> Evaluation:
        """The fp32 model's accuracy and latency (the reference: ratio 1)."""
        return self.evaluator.evaluate(self.evaluator.reference_bytes)

    def run(self, config: Mapping[str, str]) -> TrialOutcome:
        """Realize and evaluate `config` ({unit: choice}). A failure is an outcome, not an
        exception: from the user's code (ORIGIN_USER) or from the tool's own (ORIGIN_TOOL)."""
        start = time.perf_counter()
        try:
            realization = self.realizer.realize(int8_units(config))
            evaluation = self.evaluator.evaluate(realization.tflite_model)
        except UserCodeError as err:
            return TrialOutcome(ok=False, error=str(err), error_origin=ORIGIN_USER,
                                seconds=time.perf_counter() - start)
        except Exception as err:  # noqa: BLE001  classified by the loop (see study.Study)
            return TrialOutcome(ok=False, error=f"{type(err).__name__}: {err}", error_origin=ORIGIN_TOOL,
                                traceback=traceback.format_exc(), seconds=time.perf_counter() - start)
        return TrialOutcome(
            ok=True,
            tflite_model=realization.tflite_model,
            accuracy=evaluation.accuracy,
            outputs=evaluation.outputs,
            latency_ms=evaluation.latency_ms,
            latency_ratio=evaluation.latency_ratio,
            latency_source=self.evaluator.latency_source,
            int8_units=sorted(realization.int8_units, key=self.unit_order.index),
            int8_layers=list(realization.int8_layers),
            step_seconds={**realization.seconds, "evaluate": evaluation.seconds},
            seconds=time.perf_counter() - start,
        )
