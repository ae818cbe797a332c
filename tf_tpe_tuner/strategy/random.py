"""Random search: every unit int8 or fp32 with probability 1/2, independently."""
from __future__ import annotations

import numpy as np

from .base import FP32, INT8, TuneStrategy


class RandomTuneStrategy(TuneStrategy):
    """Uniform per-unit choices; the first trial is all-int8 (minus `op_wise`), as for TPE.

    Proposal k is drawn from a generator seeded with (`tuning.random_seed`, k), so the same seed
    gives the same sequence. A configuration seen before is answered from the cache and does not
    count as a trial (see `TuneStrategy.traverse`).
    """

    name = "random"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._proposals = len(self.history)  # a resumed run continues the seed sequence

    def next_tune_cfg(self) -> dict[str, str]:
        first = self.all_int8_config()
        if not self.seen(first) or not self.search_units:
            return first
        rng = np.random.default_rng([self.conf.seed, self._proposals])
        self._proposals += 1
        bits = rng.integers(0, 2, len(self.search_units))
        return self.full_config({u: (FP32 if b else INT8) for u, b in zip(self.search_units, bits)})
