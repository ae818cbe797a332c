"""Neural Compressor's basic strategy: all-int8, rank the units, fall back to fp32 cumulatively.

1. All-int8 (minus `op_wise`).
2. Rank the searched units with one trial each (`tuning.strategy.basic.ranking`):
   - `fallback_one` (default; what Neural Compressor's Basic strategy does in its stage "fallback
     OP one by one"): all-int8 with only that unit fp32; the more accuracy the fallback recovers,
     the more sensitive the unit. Such a trial can meet the criterion itself (then it is a
     legitimate answer: all int8 but one unit).
   - `quantize_one` (as issue 4 words it): only that unit int8; the more accuracy it loses, the
     more sensitive. These trials are nearly the float model, so they meet the criterion without
     telling anything about speed: with `timeout: 0` they do not end the search.
3. Fall back the most sensitive units cumulatively: all-int8 with the top 2, 3, ... units fp32,
   until a configuration meets the criterion. The search then ends (more fp32 units only make
   the model slower), as it does when every unit has fallen back.

A failed ranking trial ranks its unit most sensitive. With several workers, proposals wait (the
search loop is told to wait by `stop`) until the ranking trials are all answered.
"""
from __future__ import annotations

import math

from ..history import STATUS_OK as RECORD_OK
from .base import FP32, INT8, TuneStrategy, frozenset_of


class BasicTuneStrategy(TuneStrategy):
    name = "basic"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ranking = self.conf.get("tuning.strategy.basic.ranking")
        self.order: list[str] | None = None  # most sensitive first, once ranked

    # -- the plan --------------------------------------------------------------------------
    def ranking_config(self, unit: str) -> dict[str, str]:
        if self.ranking == "fallback_one":
            return self.full_config({u: FP32 if u == unit else INT8 for u in self.search_units})
        return self.full_config({u: INT8 if u == unit else FP32 for u in self.search_units})

    def fallback_config(self, k: int) -> dict[str, str]:
        fp32 = set(self.order[:k])
        return self.full_config({u: FP32 if u in fp32 else INT8 for u in self.search_units})

    def _rank(self) -> list[str] | None:
        """The searched units, most sensitive first, or None while a ranking trial is unanswered."""
        scores = {}
        for unit in self.search_units:
            record = self.evaluated.get(frozenset_of(self.ranking_config(unit)))
            if record is None:
                return None
            if record.status != RECORD_OK:
                scores[unit] = math.inf
            else:  # sensitivity: accuracy recovered by falling back / lost by quantizing alone
                drop = self._acc_diff(record.accuracy)
                scores[unit] = -drop if self.ranking == "fallback_one" else drop
        return sorted(self.search_units, key=lambda u: (-scores[u], self.search_units.index(u)))

    def _plan(self) -> tuple[dict[str, str] | None, bool]:
        """(next configuration to propose or None, whether the plan is finished)."""
        first = self.all_int8_config()
        if not self.seen(first) or not self.search_units:
            return first, False
        if frozenset_of(first) not in self.evaluated:
            return None, False  # all-int8 is running
        for unit in self.search_units:
            cfg = self.ranking_config(unit)
            if not self.seen(cfg):
                return cfg, False
        if self.order is None:
            self.order = self._rank()
            if self.order is None:
                return None, False  # waiting for ranking trials
        for k in range(1, len(self.order) + 1):
            cfg = self.fallback_config(k)
            record = self.evaluated.get(frozenset_of(cfg))
            if record is not None and record.met_criterion:
                return None, True  # the cumulative fallback has met the criterion
            if not self.seen(cfg):
                return cfg, False
        return None, not self.in_flight

    # -- the TuneStrategy interface --------------------------------------------------------------
    def next_tune_cfg(self) -> dict[str, str]:
        cfg, _ = self._plan()
        if cfg is None:  # only reached if the loop asks although `stop` said to wait
            return self.all_int8_config()
        return cfg

    def stop(self, timeout: float, trials_count: int) -> bool:
        if self.ranking == "quantize_one" and timeout == 0:
            # Near-float ranking trials meet the criterion trivially: only all-int8 or a
            # cumulative fallback meeting it ends the search (the plan sees to the latter).
            if super().stop(math.inf, trials_count):
                return True
            first = self.evaluated.get(frozenset_of(self.all_int8_config()))
            if first is not None and first.met_criterion:
                return True
        elif super().stop(timeout, trials_count):
            return True
        cfg, finished = self._plan()
        return finished or cfg is None  # done, or nothing to propose before answers come back
