"""Random search: each unit takes one of its choices uniformly, independently."""
from __future__ import annotations

import numpy as np

from .base import Sampler, SearchView, random_unseen


class RandomSampler(Sampler):
    """The first trial is the most quantized configuration (all-int8 minus op_wise), as for TPE.

    Proposal k is drawn from a generator seeded with (`tuning.random_seed`, k), so the same seed
    gives the same sequence; a resumed run continues the sequence after its trials. A draw that
    was seen already is drawn again.
    """

    name = "random"

    def __init__(self, conf=None):
        self._proposals: int | None = None

    def ask(self, view: SearchView):
        first = view.space.most_quantized()
        if not view.seen(first):
            return first
        if self._proposals is None:
            self._proposals = len(view.records)
        rng = np.random.default_rng([view.seed, self._proposals])
        self._proposals += 1
        return random_unseen(view, rng)
