"""A cheap model of the search space, built from the per-unit sensitivity and corrected by every
trial: which configuration to try next, before TPE has enough trials of its own.

Accuracy: the drop of a configuration is predicted as `sum(gamma[u] for u in int8)`, fitted
by least squares on the trials' drops, pulled towards a prior `alpha * score[u]`: `score` is the
output error of the model with only unit `u` int8 (`Sensitivity.scores`), `alpha` the largest
drop per unit of score seen in a trial. The prior ranks the units before any trial says more;
the fit learns from a trial that misses the criterion which of its int8 units are to blame
(those that were int8 there and not in the trials that met it).

Latency, as a ratio to fp32: `1 + sum(beta[u] for u in int8) + delta * boundary`, `beta[u]` what
running `u` in int8 saves or costs, `boundary` the elements of every tensor whose two ends run in
different precisions (`walker.unit_edges`: each costs a QUANTIZE or DEQUANTIZE; model inputs and
outputs are float ends). Fitted by least squares on the one-unit models' measured ratios
(`Sensitivity.latency`) and every trial's. A one-unit model pays for both of its edges, so a
unit can look slow alone (the last Dense of a chain: a DEQUANTIZE before it) and be fast next to
int8 neighbours; the all-int8 trial, with only the model's edges, is what tells `delta` apart.
With the run's `LatencyModel` (`latency_model.py`) its prediction replaces this fit: nothing
here then depends on a trial's latency reading.

`propose()` ranks unseen configurations by (predicted to miss the criterion, predicted latency):
all of them for small spaces, else the fastest configuration by the latency model (flipping one
unit at a time from all-int8, the units that lose the most accuracy fp32 until the predicted
drop fits) and, around it and around the best trial so far, all one or two flips away.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterable, Sequence

import numpy as np

from ..latency_model import PrecisionBoundary
from ..trial import tie_rule_key

_ENUMERATE_UP_TO = 12  # units: 4096 configurations are ranked at once
_RIDGE = 1e-4  # keeps the latency least squares defined while trials are few
_PRIOR_WEIGHT = 1.0  # of the accuracy prior, per unit, against one trial


def _gram(x: np.ndarray) -> np.ndarray:
    """x.T @ x without BLAS: OpenBLAS threads on matrices this small take 10-15 ms instead of
    0.5 ms when the cores are busy (as they are, with interpreters running)."""
    return np.einsum("ij,ik->jk", x, x)


def _single_flips(row: np.ndarray) -> np.ndarray:
    """Every configuration one unit away from `row`, one per row (unit i flipped in row i)."""
    n = len(row)
    flips = np.tile(row, (n, 1))
    flips[np.arange(n), np.arange(n)] = 1.0 - row
    return flips


class SensitivitySurrogate:
    """Predicts a configuration's accuracy drop and latency ratio to fp32.

    units: the searched units; scores/latency: per unit, from `Sensitivity` (output error and
    latency ratio to fp32 with only that unit int8); criterion: the largest drop allowed;
    edges: `walker.unit_edges` (a unit not searched counts as a float end).
    """

    def __init__(self, units: Sequence[str], scores: dict[str, float], latency: dict[str, float],
                 criterion: float, edges: Sequence[tuple[str | None, str | None, float]],
                 latency_model=None):
        self.units = list(units)
        self._index = {u: i for i, u in enumerate(self.units)}
        self._rows: dict[frozenset, np.ndarray] = {}
        self.criterion = criterion
        finite = [s for s in scores.values() if math.isfinite(s)]
        worst = max(finite, default=1.0) or 1.0  # an unmeasured unit counts as the worst one
        self.scores = np.array([scores.get(u, worst) if math.isfinite(scores.get(u, math.inf)) else worst
                                for u in self.units])
        n = len(self.units)
        self.gamma = np.zeros(n)
        sizes = np.array([float(e[2]) for e in edges])
        self._boundary = PrecisionBoundary(self.units, edges, sizes / sizes.max() if len(sizes) else sizes)
        self._singles = [(frozenset([u]), latency[u]) for u in self.units if latency.get(u, 0) > 0]
        self._trials: list[tuple[frozenset, float]] = []
        self.delta, self.beta = 0.0, np.zeros(n)
        self.latency_model = latency_model
        if latency_model is not None:  # what floating each unit alone (from all-int8) saves
            self.beta = 1.0 - latency_model.ratio_to_int8_rows(_single_flips(np.ones(n)))
        self._fit_latency()

    def fit(self, trials: Iterable[tuple[Iterable[str], float, float]]) -> None:
        """Refit on every trial so far: (int8 units, accuracy drop, latency ratio to fp32)."""
        self._trials, rows, drops = [], [], []
        for int8, drop, ratio in trials:
            key = frozenset(int8)
            if ratio and ratio > 0 and math.isfinite(ratio):
                self._trials.append((key, ratio))
            if math.isfinite(drop):
                rows.append(self._vector(key))
                drops.append(drop)
        totals = [float(row @ self.scores) for row in rows]
        alpha = max([0.0] + [d / t for d, t in zip(drops, totals) if t > 0])
        prior = alpha * self.scores
        if rows:
            x, y = np.array(rows), np.array(drops)
            self.gamma = np.linalg.solve(_gram(x) + _PRIOR_WEIGHT * np.eye(len(self.units)),
                                         x.T @ y + _PRIOR_WEIGHT * prior)
        else:
            self.gamma = prior
        self._fit_latency()

    def _fit_latency(self) -> None:
        rows = self._singles + self._trials
        if not rows or self.latency_model is not None:
            return
        units = np.stack([self._vector(key) for key, _ in rows])
        x = np.column_stack([self._boundary(units), units])
        y = np.array([ratio - 1.0 for _, ratio in rows])
        theta = np.linalg.solve(_gram(x) + _RIDGE * np.eye(x.shape[1]), x.T @ y)
        self.delta, self.beta = float(theta[0]), theta[1:]

    def _vector(self, int8: Iterable[str]) -> np.ndarray:
        """The configuration as 0/1 per unit (cached: every fit revisits every trial)."""
        key = frozenset(int8)
        row = self._rows.get(key)
        if row is None:
            row = np.zeros(len(self.units))
            row[[self._index[u] for u in key if u in self._index]] = 1.0
            self._rows[key] = row
        return row

    def predict(self, int8: Iterable[str]) -> tuple[float, float]:
        """(accuracy drop, latency ratio to fp32) predicted for the configuration."""
        v = self._vector(int8)
        return float(v @ self.gamma), float(self._latency(v[None, :])[0])

    def _latency(self, matrix: np.ndarray) -> np.ndarray:
        if self.latency_model is not None:
            return self.latency_model.int8_ratio * self.latency_model.ratio_to_int8_rows(matrix)
        return np.maximum(1.0 + self.delta * self._boundary(matrix) + matrix @ self.beta, 1e-3)

    def propose(self, seen: set[frozenset], incumbent: Iterable[str] | None = None
                ) -> tuple[frozenset, float, float] | None:
        """The unseen configuration ranked first, as (int8 units, predicted drop, predicted latency
        ratio), or None when every candidate was seen."""
        matrix = self._candidates(incumbent)
        drops = matrix @ self.gamma
        latency = self._latency(matrix)
        seen_rows = {self._vector(key).tobytes() for key in seen}
        unseen = [i for i in np.lexsort((latency, drops > self.criterion)) if matrix[i].tobytes() not in seen_rows]
        if not unseen:
            return None
        first = unseen[0]
        if self.latency_model is not None and drops[first] <= self.criterion:
            # predictions this close are not told apart: the rule picks (fewer float units,
            # then int8 on the earlier units), so that a model measured again picks the same
            bound = latency[first] * (1.0 + self.latency_model.tie)
            tied = [i for i in unseen if drops[i] <= self.criterion and latency[i] <= bound]
            first = min(tied, key=lambda i: tie_rule_key(matrix[i] == 0.0))
        key = frozenset(u for u, bit in zip(self.units, matrix[first]) if bit)
        return key, float(drops[first]), float(latency[first])

    def _candidates(self, incumbent: Iterable[str] | None) -> np.ndarray:
        n = len(self.units)
        if n <= _ENUMERATE_UP_TO:
            return np.array(list(itertools.product([0.0, 1.0], repeat=n)))
        centres = [self._fastest()]
        if incumbent is not None:
            centres.append(self._vector(incumbent))
        first, second = np.triu_indices(n, k=1)
        blocks = []
        for centre in centres:
            twos = np.tile(centre, (len(first), 1))
            rows = np.arange(len(first))
            twos[rows, first] = 1.0 - centre[first]
            twos[rows, second] = 1.0 - centre[second]
            blocks += [centre[None, :], _single_flips(centre), twos]
        return np.concatenate(blocks)

    def _fastest(self) -> np.ndarray:
        """The fastest configuration by the latency model, found by flipping the unit that saves
        most from all-int8 until none does; then the units that lose the most accuracy fp32 until
        the predicted drop fits the criterion. With the run's model, predictions within its tie
        margin are not told apart: the flips stop where one more saves no more than the margin,
        unless going on to the optimum saves more than the margin in all; then units go back to
        int8 from the optimum (the cheapest first) while the prediction stays within the margin
        of it. Where many units each save less than the margin (MobileNetV2's depthwise
        convolutions on a Xeon with AMX, 0-2 % each) the flips alone stopped at 5-6 float units,
        8 % slower than the optimum (17-23); where the optimum is not clearly faster, the first
        stop is kept: which units go back is decided by prediction differences that the refitted
        model moves between runs (MobileNetV2 on an AMD EPYC, ten runs: 6 int8 sets, with the first
        stop kept 4)."""
        n = len(self.units)
        row, stop = np.ones(n), None
        for _ in range(n):
            flips = _single_flips(row)
            latency = self._latency(flips)
            best = int(np.argmin(latency))
            now = self._latency(row[None, :])[0]
            if latency[best] >= now:
                break
            if stop is None and self.latency_model is not None and latency[best] >= now * (1.0 - self.latency_model.tie):
                stop = row.copy()
            row = flips[best]
        if self.latency_model is not None:
            bound = self._latency(row[None, :])[0] * (1.0 + self.latency_model.tie)
            if stop is not None and self._latency(stop[None, :])[0] <= bound:
                row = stop
            else:
                row = self._fewer_float(row, bound)
        while row @ self.gamma > self.criterion:
            worst = int(np.argmax(np.where(row > 0, self.gamma, -np.inf)))
            if self.gamma[worst] <= 0:
                break
            row[worst] = 0.0
        return row

    def _fewer_float(self, row: np.ndarray, bound: float) -> np.ndarray:
        """`row` with float units put back to int8, the one whose return costs least first (ties:
        the earliest unit), while the predicted latency stays within `bound`."""
        while True:
            back = np.flatnonzero(row == 0.0)
            if not len(back):
                return row
            flips = _single_flips(row)[back]
            latency = self._latency(flips)
            cheapest = int(np.argmin(latency))  # argmin: the first of equals, in unit order
            if latency[cheapest] > bound:
                return row
            row = flips[cheapest]
