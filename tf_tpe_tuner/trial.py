"""One trial as a self-contained step: realize a configuration, evaluate it.

A `TrialRunner` holds what a trial needs (the walked model, calibration data, the evaluator)
and nothing about the search, so the tuning process and a remote worker run the same code.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

from .evaluate import Evaluator


@dataclass
class TrialOutcome:
    """What running one configuration gave: a model and its scores, or an error."""

    ok: bool
    tflite_model: bytes | None = None
    accuracy: float | None = None
    latency_ms: float | None = None
    latency_ratio: float | None = None  # latency / fp32 latency, measured side by side
    int8_units: list[str] = field(default_factory=list)
    int8_layers: list[str] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


class TrialRunner:
    """Realizes and evaluates configurations of one model.

    When the evaluator has a latency reference (the fp32 model, `set_latency_reference`),
    each outcome carries the latency ratio measured side by side in this process, which a
    worker sharing a machine with busy neighbours still reports fairly.
    """

    def __init__(self, realizer, evaluator: Evaluator, unit_order: list[str]):
        self.realizer = realizer
        self.evaluator = evaluator
        self.unit_order = unit_order

    def run(self, int8_units: Iterable[str]) -> TrialOutcome:
        start = time.perf_counter()
        try:
            realization = self.realizer.realize(frozenset(int8_units))
            evaluation = self.evaluator.evaluate(realization.tflite_model)
        except Exception as err:  # a failed trial is recorded, the search goes on
            return TrialOutcome(ok=False, error=f"{type(err).__name__}: {err}",
                                seconds=time.perf_counter() - start)
        return TrialOutcome(
            ok=True,
            tflite_model=realization.tflite_model,
            accuracy=evaluation.accuracy,
            latency_ms=evaluation.latency_ms,
            latency_ratio=evaluation.latency_ratio,
            int8_units=sorted(realization.int8_units, key=self.unit_order.index),
            int8_layers=list(realization.int8_layers),
            step_seconds={**realization.seconds, "evaluate": evaluation.seconds},
            seconds=time.perf_counter() - start,
        )
