"""TPE over the units' choices with hyperopt, asked one configuration at a time.

The first trial is the most quantized configuration (all-int8 minus op_wise). Then, with
`tuning.strategy.tpe.sensitivity` (default) and a per-unit sensitivity measured once by the loop,
`SensitivityStart` proposes the next trials (`surrogate_start.py`), and TPE's prior for each unit
(`hp.pchoice`) gives fp32 a probability from 0.05 (least sensitive) to 0.5 (most), at least 0.6
for a unit the surrogate finds slower in int8. Then TPE proper. Every finished trial, resumed
ones included, is told to hyperopt as a trial document; a configuration in flight is known to it
with a provisional loss (a "constant liar": the worst loss so far), so that several workers are
not sent the same configuration.

Proposal k is drawn with a seed derived from (`tuning.random_seed`, k): the same seed gives the
same configurations while the losses are the same. A proposal that was seen already is replaced
by the nearest unseen configuration (in a small space TPE keeps proposing seen ones). Proposals
come from `tpe_suggest.suggest_values`, which gives exactly what `hyperopt.tpe.suggest` gives on a
space of two-way choices, without rebuilding hyperopt's graph on every call (timed in
benchmarks/RESULTS.md); other spaces, or `use_hyperopt_graph = True`, use hyperopt's own.
"""
from __future__ import annotations

import functools
from typing import Mapping

import numpy as np
from hyperopt import STATUS_FAIL, STATUS_OK, Trials, hp, tpe
from hyperopt.base import JOB_STATE_DONE, Domain

from ..history import STATUS_OK as RECORD_OK
from ..history import TrialRecord, config_key
from .base import Sampler, SearchView, first_unseen, random_unseen
from .surrogate_start import SensitivityStart, binary
from .tpe_suggest import BinarySpace, suggest_values


class TpeSampler(Sampler):
    name = "tpe"
    use_hyperopt_graph = False

    def __init__(self, conf):
        self.params = dict(conf.get("tuning.strategy.tpe"))
        self.latency_counts = float(conf.get("tuning.strategy.latency_weight")) > 0
        self.start_from: SensitivityStart | None = None
        self._trials = Trials()
        self._proposals = 0
        self._proposed: dict | None = None  # the document of the last TPE proposal
        self._running: dict[tuple, int] = {}  # configuration in flight -> its document's tid
        self._units: list[str] = []
        self._choices: dict[str, tuple[str, ...]] = {}
        self._domain = self._space = None

    @property
    def wants_sensitivity(self) -> bool:
        return bool(self.params.get("sensitivity", True))

    def start(self, view: SearchView) -> None:
        space = view.space
        self._units, self._choices = space.searched, {u: tuple(space.choices[u]) for u in space.searched}
        self._proposals = len(view.records)  # a resumed run continues the seed sequence
        prior = None
        sensitivity = view.sensitivity
        if sensitivity is not None and len(self._units) >= 2 and binary(view):
            self.start_from = SensitivityStart(sensitivity, view, self.params["n_initial_points"],
                                               getattr(view, "edges", []))
            prior = self.start_from.fp32_prior()
        self._set_space(prior)
        for record in view.records:  # resumed trials (told before start: documents need the domain)
            self._insert(record.config, self._result(record))

    def _set_space(self, fp32_prior: Mapping[str, float] | None) -> None:
        """The domain TPE draws from, with a prior per unit when the sensitivity gives one."""
        if fp32_prior:
            self._domain = Domain(lambda _: 0.0, {
                u: hp.pchoice(u, [(1.0 - fp32_prior[u], self._choices[u][0]), (fp32_prior[u], self._choices[u][1])])
                for u in self._units})
        else:
            self._domain = Domain(lambda _: 0.0, {u: hp.choice(u, self._choices[u]) for u in self._units})
        two_way = all(len(self._choices[u]) == 2 for u in self._units)
        self._space = BinarySpace(self._units, fp32_prior) if two_way else None

    def ask(self, view: SearchView):
        first = view.space.most_quantized()
        if not view.seen(first) or not self._units:
            return first
        if self.start_from is not None and view.record(first) is not None:
            guided = self.start_from.ask(view)
            if guided is not None:
                return guided
        seed = int(np.random.SeedSequence([view.seed, self._proposals]).generate_state(1)[0])
        self._proposals += 1
        doc = self._propose(self._trials.new_trial_ids(1), seed)
        self._proposed = doc
        cfg = self._doc_config(view, doc)
        if not view.seen(cfg):
            return cfg
        rng = np.random.default_rng(seed)
        return first_unseen(view, view.space.neighbours(cfg, rng)) or random_unseen(view, rng)

    def _propose(self, tid: list[int], seed: int) -> dict:
        """TPE's next trial document (hyperopt's, or the same computed without its graph)."""
        p = self.params
        if self.use_hyperopt_graph or self._space is None:
            suggest = functools.partial(tpe.suggest, n_startup_jobs=p["n_initial_points"], gamma=p["gamma"],
                                        n_EI_candidates=p["n_ei_candidates"], prior_weight=p["prior_weight"],
                                        verbose=False)
            return suggest(tid, self._domain, self._trials, seed)[0]
        vals = suggest_values(self._space, self._trials.trials, seed, p["n_initial_points"], p["gamma"],
                              p["n_ei_candidates"], p["prior_weight"])
        misc = {"tid": tid[0], "cmd": self._domain.cmd, "workdir": self._domain.workdir,
                "idxs": {u: [tid[0]] for u in self._units}, "vals": {u: [vals[u]] for u in self._units}}
        return self._trials.new_trial_docs(tid, [None], [self._domain.new_result()], [misc])[0]

    def _doc_config(self, view: SearchView, doc: dict) -> dict[str, str]:
        return view.space.config({u: self._choices[u][doc["misc"]["vals"][u][0]] for u in self._units})

    def pending(self, config: Mapping[str, str], view: SearchView) -> None:
        if not self._units:
            return
        done = [r.loss for r in view.records if r.loss is not None]
        doc = self._insert(config, {"loss": max(done, default=0.0), "status": STATUS_OK})
        self._running[config_key(config)] = doc["tid"]

    def tell(self, config: Mapping[str, str], record: TrialRecord, view: SearchView) -> None:
        if not self._units or self._domain is None:
            return  # before start(): resumed trials are inserted there
        if self.start_from is not None and config_key(config) == config_key(view.space.most_quantized()):
            # all-int8 tells the surrogate what leaving float costs: the prior follows
            self.start_from.fit(view)
            self._set_space(self.start_from.fp32_prior())
        tid = self._running.pop(config_key(config), None)
        if tid is None:  # a configuration that was not pending here: a new known point
            self._insert(config, self._result(record))
            return
        for doc in self._trials._dynamic_trials:  # hyperopt keeps its own copy of inserted documents
            if doc["tid"] == tid:
                doc["result"] = self._result(record)
        self._trials.refresh()

    @staticmethod
    def _result(record: TrialRecord) -> dict:
        if record.status == RECORD_OK and record.loss is not None:
            return {"loss": record.loss, "status": STATUS_OK}
        return {"status": STATUS_FAIL}

    def _insert(self, config: Mapping[str, str], result: dict) -> dict:
        """Insert `config` as a finished document: TPE's own proposal of it, or a known point."""
        doc, self._proposed = self._proposed, None
        if doc is None or any(self._choices[u][doc["misc"]["vals"][u][0]] != config[u] for u in self._units):
            tid = self._trials.new_trial_ids(1)[0]
            misc = {"tid": tid, "cmd": self._domain.cmd, "workdir": None,
                    "idxs": {u: [tid] for u in self._units},
                    "vals": {u: [self._choices[u].index(config[u])] for u in self._units}}
            doc = self._trials.new_trial_docs([tid], [None], [{"status": STATUS_OK}], [misc])[0]
        doc["state"] = JOB_STATE_DONE
        doc["result"] = result
        self._trials.insert_trial_docs([doc])
        self._trials.refresh()
        return doc
