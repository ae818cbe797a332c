"""Neural Compressor's basic strategy: the most quantized first, rank the units, fall back to
float cumulatively.

1. All-int8 (minus `op_wise`).
2. Rank the searched units with one trial each (`tuning.strategy.basic.ranking`):
   - `fallback_one` (default; Neural Compressor's stage "fallback OP one by one"): all-int8
     with only that unit float; the more accuracy the fallback recovers, the more sensitive the
     unit. Such a trial can meet the criterion itself (a legitimate answer: all int8 but one).
   - `quantize_one`: only that unit int8; the more accuracy it loses, the more sensitive. These
     trials are nearly the float model: they meet the criterion without telling anything about
     speed, so with `timeout: 0` they do not end the search.
3. Fall back the most sensitive units cumulatively: all-int8 with the top 2, 3, ... units float,
   until a configuration meets the criterion; then the plan is finished (more float units only
   make the model slower), as it is when every unit has fallen back.

A failed ranking trial ranks its unit most sensitive. With several workers the sampler waits
(`WAIT`) until the ranking trials are all answered.
"""
from __future__ import annotations

import math

from ..history import STATUS_OK
from .base import EXHAUSTED, WAIT, Sampler, SearchView


class BasicSampler(Sampler):
    name = "basic"

    def __init__(self, conf=None):
        self.ranking = conf.get("tuning.strategy.basic.ranking") if conf is not None else "fallback_one"
        self.order: list[str] | None = None  # most sensitive first, once ranked

    def ranking_config(self, view: SearchView, unit: str) -> dict[str, str]:
        space = view.space
        low, high = (-1, 0) if self.ranking == "fallback_one" else (0, -1)
        return space.config({u: space.choices[u][low if u == unit else high] for u in space.searched})

    def fallback_config(self, view: SearchView, k: int) -> dict[str, str]:
        space = view.space
        fallen = set(self.order[:k])
        return space.config({u: space.choices[u][-1 if u in fallen else 0] for u in space.searched})

    def _rank(self, view: SearchView) -> list[str] | None:
        """The searched units, most sensitive first, or None while a ranking trial is unanswered."""
        units = view.space.searched
        scores = {}
        for unit in units:
            record = view.record(self.ranking_config(view, unit))
            if record is None:
                return None
            if record.status != STATUS_OK:
                scores[unit] = math.inf
            else:  # accuracy recovered by falling back / lost by quantizing alone
                drop = view.drop(record)
                scores[unit] = -drop if self.ranking == "fallback_one" else drop
        return sorted(units, key=lambda u: (-scores[u], units.index(u)))

    def ask(self, view: SearchView):
        first = view.space.most_quantized()
        if not view.seen(first) or not view.space.searched:
            return first if not view.seen(first) else EXHAUSTED
        if view.record(first) is None:
            return WAIT  # all-int8 is running
        for unit in view.space.searched:
            cfg = self.ranking_config(view, unit)
            if not view.seen(cfg):
                return cfg
        if self.order is None:
            self.order = self._rank(view)
            if self.order is None:
                return WAIT  # ranking trials still running
        for k in range(1, len(self.order) + 1):
            cfg = self.fallback_config(view, k)
            record = view.record(cfg)
            if record is not None and record.met_criterion:
                return EXHAUSTED  # the cumulative fallback has met the criterion
            if not view.seen(cfg):
                return cfg
        return EXHAUSTED if not view.running else WAIT

    def stops_on_goal(self, view: SearchView) -> bool:
        if self.ranking == "fallback_one":
            return True
        # Near-float ranking trials meet the criterion trivially: only all-int8 meeting it ends
        # the search early; otherwise the plan ends it at the first cumulative fallback that does.
        first = view.record(view.space.most_quantized())
        return first is not None and first.met_criterion
