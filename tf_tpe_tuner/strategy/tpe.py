"""TPE over the per-unit int8/fp32 choices, with hyperopt, asked one configuration at a time."""
from __future__ import annotations

import functools
import itertools
import logging

import numpy as np
from hyperopt import STATUS_FAIL, STATUS_OK, Trials, hp, tpe
from hyperopt.base import JOB_STATE_DONE, Domain

from ..history import STATUS_OK as RECORD_OK
from ..history import TrialRecord
from ..realize_denylist import DenylistRealizer
from ..sensitivity import Sensitivity, growing_fallbacks, unit_sensitivity
from ..walker import unit_edges
from .base import FP32, INT8, TuneStrategy, frozenset_of
from .surrogate import SensitivitySurrogate
from .tpe_suggest import BinarySpace, suggest_values

_CHOICES = (INT8, FP32)
log = logging.getLogger("tf_tpe_tuner")


class TpeTuneStrategy(TuneStrategy):
    """Tree-structured Parzen Estimator search (hyperopt's `tpe.suggest`).

    The first trial is all-int8 (minus `op_wise`). Every answer, evaluated or from the cache,
    is told to hyperopt, so TPE learns from resumed trials too. Proposal k is drawn with a seed
    derived from (`tuning.random_seed`, k): the same seed gives the same configurations.

    With `tuning.strategy.tpe.sensitivity` (default), a per-unit sensitivity is measured once
    from the calibration data when all-int8 is answered (`tf_tpe_tuner.sensitivity`: each unit's
    output error and latency ratio to fp32 with only it int8). A `SensitivitySurrogate` built on
    it and refitted on every trial then proposes the next trials (its fastest unseen
    configuration predicted to meet the criterion), for up to 2 x `n_initial_points` trials.
    Without latency (a `latency_func`, or `latency_weight: 0`) the first trials are all-int8
    with the 1, 2, 3, 4, 6, 9, ... most sensitive units fp32 until one meets the criterion.
    TPE's prior for each unit (`hp.pchoice`) gives fp32 a probability from 0.05 (least
    sensitive) to 0.5 (most), 0.6 at least for a unit the surrogate finds slower in int8. These
    trials count as TPE's start-up points.

    A proposal that was seen already is replaced by the nearest unseen configuration
    (`_nearest_unseen`). Proposals are computed by `tpe_suggest.suggest_values`, which gives exactly what
    `hyperopt.tpe.suggest` gives on this space (same draws) without rebuilding hyperopt's graph
    on every call (~3-8 ms instead of ~50-150 ms for 64 units); `use_hyperopt_graph = True`
    calls hyperopt's own function instead.
    """

    name = "tpe"
    use_hyperopt_graph = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        params = self.conf.get("tuning.strategy.tpe")
        self._suggest = functools.partial(
            tpe.suggest, n_startup_jobs=params["n_initial_points"], gamma=params["gamma"],
            n_EI_candidates=params["n_ei_candidates"], prior_weight=params["prior_weight"],
            verbose=False)
        self._params = params
        self._domain = Domain(lambda _: 0.0, {u: hp.choice(u, _CHOICES) for u in self.search_units})
        self._space = BinarySpace(self.search_units)
        self.sensitivity = None  # tf_tpe_tuner.sensitivity.Sensitivity, once measured
        self._guided: list[dict[str, str]] | None = None  # the sensitivity-ordered first trials
        self.surrogate: SensitivitySurrogate | None = None  # guides the first trials, once measured
        self._guided_trials = 0
        self._trials = Trials()
        self._proposals = len(self.history)  # a resumed run continues the seed sequence
        self._proposed: dict | None = None  # the document of the last proposal
        self._running: dict[frozenset, int] = {}  # configuration in flight -> its trial id

    def next_tune_cfg(self) -> dict[str, str]:
        first = self.all_int8_config()
        if not self.seen(first) or not self.search_units:
            return first
        guided = self._next_guided(first)
        if guided is not None:
            return guided
        seed = int(np.random.SeedSequence([self.conf.seed, self._proposals]).generate_state(1)[0])
        self._proposals += 1
        tid = self._trials.new_trial_ids(1)
        doc = self._propose(tid, seed)
        self._proposed = doc
        choice = {u: _CHOICES[doc["misc"]["vals"][u][0]] for u in self.search_units}
        cfg = self.full_config(choice)
        return self._nearest_unseen(cfg, seed) if self.seen(cfg) else cfg

    def _nearest_unseen(self, cfg: dict[str, str], seed: int) -> dict[str, str]:
        """An unseen configuration next to TPE's proposal, which was seen: one unit flipped,
        else two, else three (in an order drawn from `seed`), else any unseen one.

        In a small space TPE keeps proposing configurations it has seen (each answered from the
        cache, ~1 ms of hyperopt each; 20 in a row before the loop takes a random one), which made
        the tuner's own work 10-25 % of a fast trial's time on 2^5-unit models."""
        rng = np.random.default_rng(seed)
        units = list(rng.permutation(self.search_units))
        flip = {INT8: FP32, FP32: INT8}
        for k in (1, 2, 3):
            for n, group in enumerate(itertools.combinations(units, k)):
                if n >= 200:
                    break
                candidate = dict(cfg)
                for u in group:
                    candidate[u] = flip[candidate[u]]
                if not self.seen(candidate):
                    return candidate
        return self._unexplored_config()

    def _propose(self, tid: list[int], seed: int) -> dict:
        """TPE's next trial document (hyperopt's, or the same computed without its graph)."""
        if self.use_hyperopt_graph:
            return self._suggest(tid, self._domain, self._trials, seed)[0]
        p = self._params
        vals = suggest_values(self._space, self._trials.trials, seed, p["n_initial_points"], p["gamma"],
                              p["n_ei_candidates"], p["prior_weight"])
        misc = {"tid": tid[0], "cmd": self._domain.cmd, "workdir": self._domain.workdir,
                "idxs": {u: [tid[0]] for u in self.search_units},
                "vals": {u: [vals[u]] for u in self.search_units}}
        return self._trials.new_trial_docs(tid, [None], [self._domain.new_result()], [misc])[0]

    def _next_guided(self, first: dict[str, str]) -> dict[str, str] | None:
        """The next sensitivity-guided trial, or None when TPE proposes."""
        if not self._params.get("sensitivity", True) or len(self.search_units) < 2:
            return None
        if self._guided is None:
            if frozenset_of(first) not in self.evaluated:
                return None  # all-int8 still running (several workers)
            self._guided = self._measure_sensitivity()
        if self.surrogate is not None:
            return self._surrogate_proposal()
        if any(r.met_criterion for r in self.history):
            return None
        for cfg in self._guided:
            if not self.seen(cfg):
                return cfg
        return None

    def _surrogate_proposal(self) -> dict[str, str] | None:
        """The surrogate's best unseen configuration, while it predicts one that meets the
        criterion, for at most 2 x `n_initial_points` trials; also when it predicts no gain over
        the best so far (each such trial still corrects the model next to its best guess)."""
        if self._guided_trials >= 2 * self._params["n_initial_points"]:
            return None
        self._fit_surrogate()
        best = self.best if self.best is not None and self.best.met_criterion else None
        searched = set(self.search_units)
        seen = {key & searched for key in (*self.evaluated, *self.in_flight)}
        proposal = self.surrogate.propose(seen, (best.key & searched) if best else None)
        if proposal is None:
            return None
        int8, drop, _ = proposal
        if drop > self.surrogate.criterion:
            return None
        self._guided_trials += 1
        return self.full_config({u: INT8 if u in int8 else FP32 for u in self.search_units})

    def _fit_surrogate(self) -> None:
        searched = set(self.search_units)
        self.surrogate.fit((r.key & searched, self._acc_diff(r.accuracy), r.latency_ms / self.baseline.latency_ms)
                           for r in self.history if r.status == RECORD_OK and r.latency_ms)

    def _measure_sensitivity(self) -> list[dict[str, str]]:
        realizer = self.realizer
        if not isinstance(realizer, DenylistRealizer):
            realizer = DenylistRealizer(self.graph, self.realizer.calib, self.realizer.batch_size)
        ev = self.evaluator
        timing = None  # the latency of each one-unit model too, unless latency does not count
        if getattr(ev, "latency_func", None) is None and self.loss_function_config["lat_weight"] > 0:
            timing = (ev.warmup, ev.iterations, ev.num_threads)
        try:
            sensitivity = unit_sensitivity(self.graph, realizer.calib, self.search_units, realizer, latency=timing)
        except Exception as err:  # noqa: BLE001  plain TPE still works
            log.warning("sensitivity not measured (%s: %s); TPE starts without it", type(err).__name__, err)
            return []
        log.info("sensitivity of %d units in %.2f s; most sensitive: %s", len(sensitivity.order),
                 sensitivity.seconds, ", ".join(sensitivity.ranked()[:5]))
        return self._use_sensitivity(sensitivity)

    def _use_sensitivity(self, sensitivity: Sensitivity) -> list[dict[str, str]]:
        """Set the surrogate (when latency was measured) and TPE's prior from `sensitivity`;
        returns the growing fallbacks, the first trials when there is no surrogate."""
        self.sensitivity = sensitivity
        ranked = sensitivity.ranked()
        prior = sensitivity.fp32_prior()
        if sensitivity.latency:
            self.surrogate = SensitivitySurrogate(self.search_units, sensitivity.scores, sensitivity.latency,
                                                  self.loss_function_config["acc_th"], unit_edges(self.graph))
            self._fit_surrogate()
            for u, beta in zip(self.search_units, self.surrogate.beta):
                if beta > 0:  # slower int8, even between int8 neighbours
                    prior[u] = max(prior[u], 0.6)
        self._space = BinarySpace(self.search_units, prior)
        self._domain = Domain(lambda _: 0.0, {
            u: hp.pchoice(u, [(1.0 - prior[u], INT8), (prior[u], FP32)]) for u in self.search_units})
        return [self.full_config({u: FP32 if u in set(fp32) else INT8 for u in self.search_units})
                for fp32 in growing_fallbacks(ranked)]

    def on_pending(self, tune_cfg: dict[str, str]) -> None:
        """A running configuration is known to TPE with a provisional loss (a "constant
        liar": the worst loss so far), so that trials in flight are not proposed again."""
        if not self.search_units:
            return
        doc = self._take_doc(tune_cfg)
        doc["state"] = JOB_STATE_DONE
        done = [r.loss for r in self.history if r.loss is not None]
        doc["result"] = {"loss": max(done, default=0.0), "status": STATUS_OK}
        self._trials.insert_trial_docs([doc])
        self._trials.refresh()
        self._running[frozenset_of(tune_cfg)] = doc["tid"]

    def on_result(self, tune_cfg: dict[str, str], record: TrialRecord) -> None:
        if not self.search_units:
            return
        ok = record.status == RECORD_OK
        result = {"loss": record.loss, "status": STATUS_OK} if ok else {"status": STATUS_FAIL}
        tid = self._running.pop(frozenset_of(tune_cfg), None)
        if tid is None:  # an answer from the cache, or a resumed trial: a new known point
            doc = self._take_doc(tune_cfg)
            doc["state"] = JOB_STATE_DONE
            doc["result"] = result
            self._trials.insert_trial_docs([doc])
        else:  # hyperopt keeps its own copy of inserted documents: update that one
            for doc in self._trials._dynamic_trials:
                if doc["tid"] == tid:
                    doc["result"] = result
        self._trials.refresh()

    def _take_doc(self, tune_cfg: dict[str, str]) -> dict:
        """The document TPE proposed for this configuration, or a new known point."""
        doc, self._proposed = self._proposed, None
        if doc is None or frozenset_of(self._doc_config(doc)) != frozenset_of(tune_cfg):
            doc = self._known_point(tune_cfg)
        return doc

    def _doc_config(self, doc: dict) -> dict[str, str]:
        return self.full_config({u: _CHOICES[doc["misc"]["vals"][u][0]] for u in self.search_units})

    def _known_point(self, tune_cfg: dict[str, str]) -> dict:
        """A hyperopt trial document for a configuration TPE did not propose."""
        tid = self._trials.new_trial_ids(1)[0]
        misc = {"tid": tid, "cmd": self._domain.cmd, "workdir": None,
                "idxs": {u: [tid] for u in self.search_units},
                "vals": {u: [_CHOICES.index(tune_cfg[u])] for u in self.search_units}}
        return self._trials.new_trial_docs([tid], [None], [{"status": STATUS_OK}], [misc])[0]
