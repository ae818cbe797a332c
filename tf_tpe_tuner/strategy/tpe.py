"""TPE over the per-unit int8/fp32 choices, with hyperopt, asked one configuration at a time."""
from __future__ import annotations

import functools

import numpy as np
from hyperopt import STATUS_FAIL, STATUS_OK, Trials, hp, tpe
from hyperopt.base import JOB_STATE_DONE, Domain

from ..history import STATUS_OK as RECORD_OK
from ..history import TrialRecord
from .base import FP32, INT8, TuneStrategy, frozenset_of

_CHOICES = (INT8, FP32)


class TpeTuneStrategy(TuneStrategy):
    """Tree-structured Parzen Estimator search (hyperopt's `tpe.suggest`).

    The first trial is all-int8 (minus `op_wise`). Every answer, evaluated or from the cache,
    is told to hyperopt, so TPE learns from resumed trials too. Proposal k is drawn with a seed
    derived from (`tuning.random_seed`, k): the same seed gives the same configurations.
    """

    name = "tpe"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        params = self.conf.get("tuning.strategy.tpe")
        self._suggest = functools.partial(
            tpe.suggest, n_startup_jobs=params["n_initial_points"], gamma=params["gamma"],
            n_EI_candidates=params["n_ei_candidates"], prior_weight=params["prior_weight"],
            verbose=False)
        self._domain = Domain(lambda _: 0.0, {u: hp.choice(u, _CHOICES) for u in self.search_units})
        self._trials = Trials()
        self._proposals = len(self.history)  # a resumed run continues the seed sequence
        self._proposed: dict | None = None  # the document of the last proposal
        self._running: dict[frozenset, int] = {}  # configuration in flight -> its trial id

    def next_tune_cfg(self) -> dict[str, str]:
        first = self.all_int8_config()
        if not self.seen(first) or not self.search_units:
            return first
        seed = int(np.random.SeedSequence([self.conf.seed, self._proposals]).generate_state(1)[0])
        self._proposals += 1
        tid = self._trials.new_trial_ids(1)
        doc = self._suggest(tid, self._domain, self._trials, seed)[0]
        self._proposed = doc
        choice = {u: _CHOICES[doc["misc"]["vals"][u][0]] for u in self.search_units}
        return self.full_config(choice)

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
