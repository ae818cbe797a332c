"""hyperopt's TPE suggestion for a space of independent two-way choices, without the pyll graph.

`hyperopt.tpe.suggest` rebuilds and interprets a symbolic (pyll) graph of the whole search space
on every call, which for 64 int8/fp32 choices costs a sizeable part of a trial on the fast
realization path (the timing of both is in benchmarks/RESULTS.md, from `compare.py`). For a flat
space of `hp.choice` / `hp.pchoice` labels -- ours -- that graph computes, label by label and
independently, the following, which is all this module does, with hyperopt's own
`linear_forgetting_weights` and the arithmetic of its `ap_split_trials`, `ap_randint_sampler`
and `tpe_cat_pseudocounts` (the split and the weights once for all labels) and the same draws
from the same random generator, in the same order:

- fewer than `n_startup_jobs` finished trials: a draw from the prior (`hyperopt.rand.suggest`);
- otherwise, per label: split the observations into the `gamma * sqrt(n)` best ("below") and the
  rest ("above"); the two categorical posteriors are the linearly-forgotten counts plus the prior
  pseudo-counts (`prior_weight` each for `hp.choice`, `2 * prior_weight * p` for `hp.pchoice`);
  draw `n_EI_candidates` values from "below", keep the one with the largest
  log p_below - log p_above (expected improvement).

`suggest` takes and returns hyperopt trial documents, so the strategy keeps a `hyperopt.Trials`
and can switch to `hyperopt.tpe.suggest` at any time; `tests/test_strategies.py` checks that both
give the same configuration, draw for draw.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from hyperopt import tpe as _tpe

_LF = _tpe.DEFAULT_LF


class BinarySpace:
    """The labels in hyperopt's evaluation order and, per label, the prior probability of
    choice 1 (`None`: `hp.choice`, uniform)."""

    def __init__(self, labels: Sequence[str], p_one: dict[str, float] | None = None):
        self.labels = sorted(labels, reverse=True)  # the order pyll evaluates them in
        self.p_one = dict(p_one or {})

    def prior(self, label: str) -> np.ndarray | None:
        p = self.p_one.get(label)
        return None if p is None else np.array([1.0 - p, p])


def _categorical(p: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """hyperopt.pyll.stochastic.categorical, the same draws."""
    sample = rng.multinomial(n=1, pvals=p, size=n)
    return np.dot(sample, np.arange(len(p)))


def _posterior(obs: np.ndarray, weights: np.ndarray, prior_weight: float,
               prior: np.ndarray | None) -> np.ndarray:
    counts = np.bincount(obs, weights, 2)
    if prior is None:  # ap_randint_sampler
        pseudo = counts + prior_weight
        return pseudo / pseudo.sum()
    pseudo = counts + prior.size * (prior_weight * prior)  # ap_categorical_sampler, tpe_cat_pseudocounts
    return pseudo / np.sum(pseudo)


def suggest_values(space: BinarySpace, docs: list[dict], seed: int, n_startup_jobs: int,
                   gamma: float, n_ei_candidates: int, prior_weight: float) -> dict[str, int]:
    """The next point, {label: 0 | 1}, as `hyperopt.tpe.suggest` would propose it from these
    trial documents (finished ones carry `result.loss`; others count as infinite loss)."""
    rng = np.random.default_rng(seed)
    best_loss: dict[int, float] = {}
    best_doc: dict[int, dict] = {}
    for doc in docs:
        tid = doc["misc"].get("from_tid", doc["tid"])
        loss = doc["result"].get("loss")
        loss = float("inf") if loss is None else float(loss)
        best_loss.setdefault(tid, loss)
        if loss <= best_loss[tid]:
            best_loss[tid] = loss
            best_doc[tid] = doc
    tids = sorted(best_doc)
    if len(tids) < n_startup_jobs:  # rand.suggest: one draw per label from its prior
        out = {}
        for label in space.labels:
            prior = space.prior(label)
            if prior is None:
                out[label] = int(rng.integers(2, None, (1,))[0])
            else:
                out[label] = int(_categorical(prior, rng, 1)[0])
        return out
    losses = np.asarray([best_loss[t] for t in tids])
    # ap_split_trials, once for every label (each trial holds every label): the
    # ceil(gamma * sqrt(n)) lowest losses, by np.argsort as hyperopt sorts them, are "below";
    # each side keeps the trials' order (tid order), which the linear forgetting weights use.
    n_below = min(int(np.ceil(gamma * np.sqrt(len(losses)))), _LF)
    is_below = np.zeros(len(tids), dtype=bool)
    is_below[np.argsort(losses)[:n_below]] = True
    values = np.array([[best_doc[t]["misc"]["vals"][label][0] for label in space.labels] for t in tids],
                      dtype=int)
    below_rows, above_rows = values[is_below], values[~is_below]
    w_below = _tpe.linear_forgetting_weights(len(below_rows), _LF)
    w_above = _tpe.linear_forgetting_weights(len(above_rows), _LF)
    out = {}
    for j, label in enumerate(space.labels):
        prior = space.prior(label)
        p_below = _posterior(below_rows[:, j], w_below, prior_weight, prior)
        p_above = _posterior(above_rows[:, j], w_above, prior_weight, prior)
        samples = _categorical(p_below, rng, n_ei_candidates)
        score = np.log(p_below[samples]) - np.log(p_above[samples])
        out[label] = int(samples[int(np.argmax(score))])
    return out
