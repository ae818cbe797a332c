"""The per-unit sensitivity, defined once: how much the model's output moves when only that unit
is int8 (and, optionally, how that model's latency compares with fp32's).

Measured once per run, on the calibration samples, through the denylist realization path (one
re-quantization of the calibrated TFLite model and one interpreter pass per unit; no labels):
for each unit, the mean squared difference between the outputs of the model with only that unit
int8 and the float model's, divided by the variance of the float outputs (`scores`; units whose
quantization disturbs the output most come first in `ranked()`), the relative RMS error and how
often the top class changes (`errors_of`, for the report), and the same for all-int8.

Used by the TPE sampler (its surrogate start and its prior, `samplers/surrogate_start.py`) and
by the report's per-unit table; the report measures it itself only when the search did not.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .data import ArrayData
from .evaluate import TFLiteModel
from .walker import ModelGraph


@dataclass
class Sensitivity:
    scores: dict[str, float]  # unit -> normalized output error with only that unit int8
    order: list[str]  # the units in their model order (ties in scores keep it)
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)  # unit -> why it could not be measured
    latency: dict[str, float] = field(default_factory=dict)  # unit -> latency / fp32's, only it int8
    output_errors: dict[str, dict] = field(default_factory=dict)  # unit -> {rel_rmse, top1_change}
    all_int8: dict | None = None  # the same for the all-int8 model
    samples: int = 0
    complete: bool = True  # False when a deadline stopped the measurement part-way

    def ranked(self) -> list[str]:
        """Most sensitive first; a unit that could not be measured counts as most sensitive."""
        return sorted(self.order, key=lambda u: (-self.scores.get(u, math.inf), self.order.index(u)))

    def fp32_prior(self, low: float = 0.05, high: float = 0.5) -> dict[str, float]:
        """A prior probability of fp32 per unit, from `low` (least sensitive) to `high` (most),
        linear in the log of the score (scores spread over orders of magnitude)."""
        finite = [s for s in self.scores.values() if math.isfinite(s) and s > 0]
        if not finite:
            return {u: low for u in self.order}
        lo, hi = math.log(min(finite)), math.log(max(finite))
        out = {}
        for u in self.order:
            s = self.scores.get(u, math.inf)
            if not math.isfinite(s):
                out[u] = high
            elif s <= 0 or hi == lo:
                out[u] = low if s <= 0 else high
            else:
                out[u] = low + (high - low) * (math.log(s) - lo) / (hi - lo)
        return out


def _outputs(tflite: bytes, data: ArrayData, batch_size: int) -> list[np.ndarray]:
    out = TFLiteModel(tflite).predict(data, batch_size)
    return [np.asarray(o, dtype=np.float64) for o in (out if isinstance(out, list) else [out])]


def output_error(reference: list[np.ndarray], got: list[np.ndarray]) -> dict:
    """{"rel_rmse": RMS error / RMS of the reference, "top1_change": share of samples whose top
    class changes (None unless the first output is a classifier's)}."""
    diff = sum(float(np.sum((g - r) ** 2)) for g, r in zip(got, reference))
    norm = sum(float(np.sum(r ** 2)) for r in reference)
    top1 = None
    first_ref, first_got = reference[0], got[0]
    if first_ref.ndim == 2 and first_ref.shape[1] > 1:
        top1 = float(np.mean(np.argmax(first_ref, 1) != np.argmax(first_got, 1)))
    return {"rel_rmse": math.sqrt(diff / norm) if norm > 0 else math.sqrt(diff), "top1_change": top1}


def unit_sensitivity(graph: ModelGraph, calib: ArrayData, units: Iterable[str] | None = None,
                     realizer=None, batch_size: int = 256,
                     latency: tuple[int, int, int] | None = None,
                     expired: Callable[[], bool] | None = None) -> Sensitivity:
    """Score every unit in `units` (default: all) by the output error it causes alone in int8.

    `realizer`: a calibrated denylist-backend realizer of `graph` to reuse (else one is built on `calib`).
    `latency`: (warmup, iterations, num_threads): also measure each of these models' latency as a
    ratio to the fp32 model (`TFLiteModel.latency_ratio`, interleaved), into `Sensitivity.latency`.
    `expired`: asked before each unit; once True, no further unit is measured (`complete` False:
    the run's timeout came first).
    """
    start = time.perf_counter()
    if realizer is None:
        from .realizers import make_realizer

        realizer = make_realizer("denylist", graph, calib)
    data = realizer.calib
    units = list(graph.unit_names if units is None else units)
    fp32 = realizer.realize_float().tflite_model
    reference = _outputs(fp32, data, batch_size)
    scales = [float(np.var(r)) or 1.0 for r in reference]
    fp32_model = TFLiteModel(fp32, latency[2]) if latency else None
    result = Sensitivity({}, units, samples=len(data))
    for unit in units:
        if expired is not None and expired():
            result.complete = False
            break
        try:
            tflite = realizer.quantize([unit])
            got = _outputs(tflite, data, batch_size)
            if fp32_model is not None:
                result.latency[unit] = TFLiteModel(tflite, latency[2]).latency_ratio(
                    fp32_model, latency[0], latency[1])
        except Exception as err:  # noqa: BLE001  an unmeasurable unit is ranked first, not fatal
            result.errors[unit] = f"{type(err).__name__}: {err}"
            continue
        result.scores[unit] = float(sum(np.mean((g - r) ** 2) / s for g, r, s in zip(got, reference, scales)))
        result.output_errors[unit] = output_error(reference, got)
    if result.complete:
        try:
            result.all_int8 = output_error(reference, _outputs(realizer.quantize(graph.unit_names), data, batch_size))
        except Exception as err:  # noqa: BLE001
            result.errors["all int8"] = f"{type(err).__name__}: {err}"
    result.seconds = time.perf_counter() - start
    return result


def growing_fallbacks(ranked: list[str], limit: int | None = None) -> list[list[str]]:
    """The first trials after all-int8: the k most sensitive units fp32, k = 1, 2, 3, 4, 6, 9,
    13, 19, 28, ... (x1.5 each step from 4), below the number of units."""
    n = len(ranked) if limit is None else min(limit, len(ranked))
    sizes, k = [], 1
    while k < n:
        sizes.append(k)
        k = k + 1 if k < 4 else int(k * 1.5)
    return [ranked[:k] for k in sizes]
