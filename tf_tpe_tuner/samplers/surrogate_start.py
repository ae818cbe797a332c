"""TPE's first trials, chosen from the per-unit sensitivity instead of drawn at random.

With latency measured (a `LatencyModel`, or the one-unit models' readings), a
`SensitivitySurrogate` (`surrogate.py`) built on the sensitivity and refitted on every trial
proposes its fastest unseen configuration predicted to meet the criterion, for up to 2 x
`n_initial_points` trials (also when it predicts no gain over the best so far: each such trial
still corrects the model next to its best guess). Without latency (a `latency_func`, or
`latency_weight: 0`), the first trials are all-int8 with the 1, 2, 3, 4, 6, 9, ... most
sensitive units float, until one meets the criterion.

Both need every unit to choose between exactly int8 and fp32; otherwise there is no start.
"""
from __future__ import annotations

from ..history import STATUS_OK
from ..sensitivity import Sensitivity, growing_fallbacks
from ..trial import FP32, INT8, int8_units
from .base import SearchView, first_unseen
from .surrogate import SensitivitySurrogate

SLOW_UNIT_FP32_PRIOR = 0.6  # at least, for a unit the surrogate finds slower in int8


def binary(view: SearchView) -> bool:
    return all(tuple(view.space.choices[u]) == (INT8, FP32) for u in view.space.searched)


class SensitivityStart:
    """Proposes the first trials after all-int8 (see the module docstring)."""

    def __init__(self, sensitivity: Sensitivity, view: SearchView, n_initial_points: int,
                 edges: list[tuple[str | None, str | None, float]]):
        self.sensitivity = sensitivity
        self.units = view.space.searched
        self.budget = 2 * n_initial_points
        self.proposed = 0
        self.surrogate: SensitivitySurrogate | None = None
        latency_model = getattr(view, "latency_model", None)
        if sensitivity.latency or latency_model is not None:
            self.surrogate = SensitivitySurrogate(self.units, sensitivity.scores, sensitivity.latency,
                                                  view.tolerance, edges, latency_model)
            self.fit(view)
        self.fallbacks = [view.space.config({u: FP32 if u in set(fp32) else INT8 for u in self.units})
                          for fp32 in growing_fallbacks(sensitivity.ranked())]

    def fp32_prior(self) -> dict[str, float]:
        """TPE's prior probability of fp32 per unit: by sensitivity, and high for slow units."""
        prior = self.sensitivity.fp32_prior()
        if self.surrogate is not None:
            # with a LatencyModel, savings within its tie margin do not count (nor decide)
            floor = self.surrogate.latency_model.tie if self.surrogate.latency_model is not None else 0.0
            for u, beta in zip(self.units, self.surrogate.beta):
                if beta > floor:  # slower in int8, even between int8 neighbours
                    prior[u] = max(prior[u], SLOW_UNIT_FP32_PRIOR)
        return prior

    def fit(self, view: SearchView) -> None:
        if self.surrogate is None:
            return
        searched = set(self.units)
        self.surrogate.fit((int8_units(r.config) & searched, view.drop(r), view.search_ratio(r))
                           for r in view.records if r.status == STATUS_OK and r.latency_ratio)

    def ask(self, view: SearchView) -> dict[str, str] | None:
        """The next guided configuration, or None when TPE is to propose."""
        if self.surrogate is None:
            if any(r.met_criterion for r in view.records):
                return None
            return first_unseen(view, self.fallbacks)
        if self.proposed >= self.budget:
            return None
        self.fit(view)
        searched = set(self.units)
        best = view.best()
        seen = {int8_units(r.config) & searched for r in view.records}
        seen |= {int8_units(c) & searched for c in view.running}
        proposal = self.surrogate.propose(seen, (int8_units(best.config) & searched) if best else None)
        if proposal is None:
            return None
        int8, drop, _ = proposal
        if drop > self.surrogate.criterion:
            return None
        self.proposed += 1
        return view.space.config({u: INT8 if u in int8 else FP32 for u in self.units})
