"""A cheap per-unit sensitivity: how much the model's output moves when only that unit is int8
(and, optionally, how that model's latency compares with fp32's).

Computed once, on the calibration samples, through the denylist realization path (one
re-quantization of the calibrated TFLite model and one interpreter pass per unit; no accuracy
metric, no labels, no latency): for each unit, the mean squared difference between the outputs
of the model with only that unit int8 and the float model's, divided by the variance of the
float outputs. Units whose quantization disturbs the output most come first in `ranked()`.

Used by the TPE strategy: with the latency ratios, for its surrogate model
(`strategy/surrogate.py`), which proposes the first trials; without, its first trials are the
most sensitive units fp32 in growing numbers (`growing_fallbacks`); and to shape its prior
(`fp32_prior`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .data import ArrayData
from .evaluate import TFLiteModel
from .realize_denylist import DenylistRealizer
from .walker import ModelGraph


@dataclass
class Sensitivity:
    scores: dict[str, float]  # unit -> normalized output error with only that unit int8
    order: list[str]  # the units in their model order (ties in scores keep it)
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)  # unit -> why it could not be measured
    latency: dict[str, float] = field(default_factory=dict)  # unit -> latency / fp32's, only it int8

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


def unit_sensitivity(graph: ModelGraph, calib: ArrayData, units: Iterable[str] | None = None,
                     realizer: DenylistRealizer | None = None, batch_size: int = 256,
                     latency: tuple[int, int, int] | None = None) -> Sensitivity:
    """Score every unit in `units` (default: all) by the output error it causes alone in int8.

    `realizer`: a calibrated `DenylistRealizer` of `graph` to reuse (else one is built on `calib`).
    `latency`: (warmup, iterations, num_threads): also measure each of these models' latency as a
    ratio to the fp32 model (`TFLiteModel.latency_ratio`, interleaved), into `Sensitivity.latency`.
    """
    start = time.perf_counter()
    if realizer is None:
        realizer = DenylistRealizer(graph, calib)
    data = realizer.calib
    units = list(graph.unit_names if units is None else units)
    fp32 = realizer.realize_float().tflite_model
    reference = _outputs(fp32, data, batch_size)
    scales = [float(np.var(r)) or 1.0 for r in reference]
    fp32_model = TFLiteModel(fp32, latency[2]) if latency else None
    scores: dict[str, float] = {}
    errors: dict[str, str] = {}
    ratios: dict[str, float] = {}
    for unit in units:
        try:
            tflite = realizer.quantize([unit])
            got = _outputs(tflite, data, batch_size)
            if fp32_model is not None:
                ratios[unit] = TFLiteModel(tflite, latency[2]).latency_ratio(fp32_model, latency[0], latency[1])
        except Exception as err:  # noqa: BLE001  an unmeasurable unit is ranked first, not fatal
            errors[unit] = f"{type(err).__name__}: {err}"
            continue
        scores[unit] = float(sum(np.mean((g - r) ** 2) / s for g, r, s in zip(got, reference, scales)))
    return Sensitivity(scores, units, time.perf_counter() - start, errors, ratios)


def growing_fallbacks(ranked: list[str], limit: int | None = None) -> list[list[str]]:
    """The first trials after all-int8: the k most sensitive units fp32, k = 1, 2, 3, 4, 6, 9,
    13, 19, 28, ... (x1.5 each step from 4), below the number of units."""
    n = len(ranked) if limit is None else min(limit, len(ranked))
    sizes, k = [], 1
    while k < n:
        sizes.append(k)
        k = k + 1 if k < 4 else int(k * 1.5)
    return [ranked[:k] for k in sizes]
