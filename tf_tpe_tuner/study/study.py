"""The loop of one tuning run: ask the sampler, run trials, score them, choose, stop.

`Study` owns the criterion, the stop rule, best selection, the history and the hooks; trials
run through an executor built from the run's `TrialSpec` (in this process, or on Ray workers),
and the sampler sees the search only through this class's read-only `SearchView` methods.

Latency as the search sees it (`search_ratio`). With a `LatencyModel` (`latency_model.py`,
measured once at the start of the run on the default backend), trials are ranked by the
model's prediction for their configuration, not by their own noisy reading: the search's path,
its best and its patience then do not hang on the noise, and the same seed gives the same
trials. Each trial's reading is still recorded and shown; the contenders (the fastest few by the
model) are re-measured side by side at the end (`final_choice.py`). Without a model (a
`latency_func`, the annotation backend) each trial's own reading ranks it.

Best selection. The float model is a candidate too (it always meets the criterion): the
fastest trial that meets the criterion is handed back only when it is faster than float by more
than the latency noise measured in this run; when trials meet the criterion but none is, the
float model is handed back (`result.handed_back == FLOAT`); when none meets it, the trial with
the lowest loss is, flagged.

Stop rule: `stop_rule.py`; the loop also stops when the sampler has nothing left to propose or
no worker is left.
"""
from __future__ import annotations

import logging
from time import monotonic  # a module name, so that a test can move the clock
from typing import Callable, Mapping

import numpy as np

from .._test_hold import hold_after
from ..checks import warn
from ..executor import LocalExecutor
from ..errors import TrialsBroken, TunerInputError, UserCodeError
from ..history import STATUS_FAILED, STATUS_OK, JsonlHistory, TrialRecord, config_key
from ..samplers.base import EXHAUSTED, WAIT, Sampler, SearchSpace, random_unseen
from ..trial import FP32, INT8, ORIGIN_LOST, ORIGIN_TOOL, TrialOutcome, TrialRunner, int8_units
from .criterion import Criterion, within
from .final_choice import near_ties, rule_key, settle
from .loss import calculate_loss
from .result import BEST_ATTEMPT, FLOAT, QUANTIZED, Baseline, TuningResult
from .stop_rule import StopRule

log = logging.getLogger("tf_tpe_tuner")

MIN_LATENCY_NOISE = 0.02  # ratios within 2 % of each other are never told apart
BROKEN_AFTER = 3  # the tool's own error on each of this many first trials stops the run
_MAX_SEEN_PROPOSALS = 20  # in a row, before the loop draws an unseen configuration itself


class Study:
    """One tuning run (see the module docstring)."""

    def __init__(self, *, space: SearchSpace, runner: Callable[[], TrialRunner], sampler: Sampler, criterion: Criterion,
                 loss_config: Mapping[str, float], stop_rule: StopRule, seed: int, history: JsonlHistory,
                 resumed: list[TrialRecord] = (), hooks: Mapping[str, Callable] | None = None,
                 make_executor: Callable[[], object] | None = None,
                 measure_sensitivity: Callable[[Callable[[], bool]], object] | None = None,
                 measure_latency_model: Callable[[object], object] | None = None,
                 edges: list | None = None, started: float | None = None):
        self.space = space
        self._runner_factory, self._runner = runner, None
        self.sampler = sampler
        self.criterion = criterion
        self.loss_config = dict(loss_config)
        self.stop_rule = stop_rule
        self.seed = seed
        self.history_store = history
        self.hooks = dict(hooks or {})
        self.edges = edges or []
        self._make_executor = make_executor
        self._measure_sensitivity = measure_sensitivity
        self._measure_latency_model = measure_latency_model
        self.latency_model = None  # latency_model.LatencyModel, when the run measured one
        self._start = monotonic() if started is None else started
        self.baseline: Baseline | None = None
        self.latency_noise = MIN_LATENCY_NOISE
        self.sensitivity = None
        self._records: list[TrialRecord] = []
        self._by_key: dict[tuple, TrialRecord] = {}
        self._running: dict[int, dict[str, str]] = {}  # trial -> configuration in flight
        self._models: dict[int, bytes] = {}  # trial -> TFLite bytes of the current best candidates
        self._resumed = list(resumed)
        self._improved_at: int | None = None  # records count when the best last improved
        self._settled: TrialRecord | None = None  # the best after near-ties were re-measured
        self.final_choice: dict | None = None  # {trial: re-measured ratio, ..., 'chosen': trial}
        self.stop_reason = ""

    @property
    def runner(self) -> TrialRunner:
        """The runner of this process (built on first use: it measures the fp32 latency)."""
        if self._runner is None:
            self._runner = self._runner_factory()
        return self._runner

    # -- the SearchView a sampler reads ---------------------------------------------------------
    @property
    def records(self) -> list[TrialRecord]:
        return list(self._records)

    @property
    def running(self) -> list[dict[str, str]]:
        return list(self._running.values())

    def seen(self, config: Mapping[str, str]) -> bool:
        """Finished (a trial lost with its worker does not count) or in flight."""
        key = config_key(dict(config))
        return self.record(config) is not None or any(config_key(c) == key for c in self._running.values())

    def record(self, config: Mapping[str, str]) -> TrialRecord | None:
        record = self._by_key.get(config_key(dict(config)))
        return None if record is not None and record.error_origin == ORIGIN_LOST else record

    def drop(self, record: TrialRecord) -> float:
        return self.criterion.drop(self.baseline.accuracy, record.accuracy)

    def best(self) -> TrialRecord | None:
        """The fastest quantized trial that meets the criterion (whether or not it beats float);
        once the run has settled near-ties (`final_choice`), the one chosen there."""
        if self._settled is not None:
            return self._settled
        meeting = [r for r in self._records if r.status == STATUS_OK and r.met_criterion and r.int8_units]
        fastest = min(meeting, key=lambda r: (self.search_ratio(r), self.drop(r), r.trial), default=None)
        if fastest is None or self.latency_model is None:
            return fastest
        # predictions within the tie margin are not told apart: the final choice's rule picks
        bound = self.search_ratio(fastest) * (1.0 + self.latency_model.tie)
        return min((r for r in meeting if self.search_ratio(r) <= bound),
                   key=lambda r: (rule_key(r, list(self.space.units)), r.trial))

    def search_ratio(self, record: TrialRecord) -> float:
        """The latency ratio the search ranks `record` by: the latency model's prediction for its
        configuration, or (without a model) its own reading."""
        if self.latency_model is not None:
            return self.latency_model.predict(int8_units(record.config))
        return record.latency_ratio

    @property
    def tolerance(self) -> float:
        return self.criterion.tolerance

    # -- the run --------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return monotonic() - self._start

    def evaluate_baseline(self) -> Baseline:
        try:
            evaluation = self.runner.evaluate_float()
        except (TypeError, ValueError, UserCodeError) as err:  # the user's eval_func or data
            raise TunerInputError(f"evaluating the fp32 model failed: {err}") from None
        self.baseline = Baseline(evaluation.accuracy, evaluation.latency_ms, evaluation.outputs)
        self.latency_noise = max(MIN_LATENCY_NOISE, self.runner.evaluator.latency_noise())
        log.info("fp32 baseline: accuracy %.4f, latency %.4f ms (latency noise %.1f %%)",
                 evaluation.accuracy, evaluation.latency_ms, 100 * self.latency_noise)
        if self._measure_latency_model is not None:
            try:
                self.latency_model = self._measure_latency_model(self.runner.evaluator)
                model = self.latency_model
                log.info("latency model: all-int8 %.3fx float; fit residual %.1f %%, noise of a reading "
                         "%.1f %% (%d designs): predictions within %.1f %% are ties", model.int8_ratio,
                         100 * model.residual, 100 * model.noise, len(model.designs), 100 * model.tie)
            except Exception as err:  # noqa: BLE001  the search works on the trials' readings
                log.warning("latency model not measured (%s: %s); trials are ranked by their own "
                            "latency readings", type(err).__name__, err)
        for record in self._resumed:  # scored against this run's baseline, from their ratios
            before = self._current_best_ratio()
            self._remember(record)
            self._note_improvement(before)
        self._resumed = []
        return self.baseline

    def _note_improvement(self, before: float | None) -> None:
        now = self._current_best_ratio()
        margin = self.latency_model.tie if self.latency_model is not None else self.latency_noise
        if now is not None and (before is None or now < before - margin):
            self._improved_at = len(self._records)

    def run(self) -> TuningResult:
        """Search until the stop rule holds; Ctrl-C ends it with the best finished trial
        (`interrupted=True`), trials under way dropped. The history is locked meanwhile."""
        with self.history_store.locked():
            return self._run()

    def _run(self) -> TuningResult:
        if self.baseline is None:
            self.evaluate_baseline()
        resumed = len(self._records)
        if self.sampler.wants_sensitivity and self._measure_sensitivity is not None and len(self.space.searched) > 1:
            try:
                self.sensitivity = self._measure_sensitivity(self._timed_out)
                log.info("sensitivity of %d units in %.2f s; most sensitive: %s", len(self.sensitivity.scores),
                         self.sensitivity.seconds, ", ".join(self.sensitivity.ranked()[:5]))
            except Exception as err:  # noqa: BLE001  the search works without it
                log.warning("sensitivity not measured (%s: %s); the search starts without it",
                            type(err).__name__, err)
        self.sampler.start(self)
        reason = self.why_stop()
        if reason and resumed:
            self.stop_reason = f"nothing left to do: {reason} (before this resume)"
            return self.result()
        executor = self._make_executor() if self._make_executor else LocalExecutor(self.runner)
        try:
            self._search(executor)
        except KeyboardInterrupt:
            log.info("interrupted: %d trials finished", len(self._records))
            self.stop_reason = "interrupted"
            return self.result(interrupted=True)
        finally:
            executor.close()
        self._settle_near_ties()
        return self.result()

    def _settle_near_ties(self) -> None:
        """Near-ties among the fastest re-measured side by side, then a deterministic rule
        (`final_choice`): the answer does not hang on one noisy reading."""
        if self._timed_out():
            return  # the user's time is up: the trials' own readings decide
        def model_of(record: TrialRecord) -> bytes:
            return self._models.get(record.trial) or \
                self.runner.realizer.realize(int8_units(record.config)).tflite_model
        settled = settle(self._records, self.latency_noise, self.runner.evaluator, model_of,
                         list(self.space.units), self._contender_ratio(),
                         self.best() if self.latency_model is not None else None)
        if settled is None:
            return
        self._settled, ratios = settled
        self.final_choice = {"remeasured": {str(t): round(r, 4) for t, r in ratios.items()},
                             "chosen": self._settled.trial}
        log.info("near-ties re-measured side by side: %s; chosen: trial %d (fewer float units first)",
                 ", ".join(f"trial {t} {r:.3f}x" for t, r in ratios.items()), self._settled.trial)

    def _search(self, executor) -> None:
        while True:
            while len(self._running) < executor.workers:
                reason = self.why_stop()
                if reason:
                    self.stop_reason = self.stop_reason or reason
                    break
                config = self._ask()
                if config is WAIT:
                    break
                if config is EXHAUSTED:
                    self.stop_reason = f"{self.sampler.name}: nothing left to propose"
                    break
                trial = self._begin(config)
                self.sampler.pending(config, self)
                executor.submit(trial, config)
            if not self._running:
                if executor.workers == 0 and not self.stop_reason:
                    self.stop_reason = "no worker left"
                return
            trial, outcome = executor.next_result()
            config = self._running.pop(trial)
            record = self._finish(trial, config, outcome)
            self.sampler.tell(config, record, self)
            if executor.workers == 0:
                self.stop_reason = "no worker left"

    def _ask(self):
        """The sampler's next configuration; one it proposes although it was seen is answered
        from the cache (told again), and after a run of those the loop draws one itself."""
        for _ in range(_MAX_SEEN_PROPOSALS):
            config = self.sampler.ask(self)
            if config is WAIT or config is EXHAUSTED or not self.seen(config):
                return config
            if self.record(config) is not None:
                self.sampler.tell(config, self.record(config), self)
        return random_unseen(self, np.random.default_rng([self.seed, len(self._records)]))

    def evaluate_now(self, config: Mapping[str, str], runner: TrialRunner | None = None) -> TrialRecord:
        """Run one configuration here and now, recorded as a trial (or its earlier record)."""
        if self.record(config) is not None:
            return self.record(config)
        if self.baseline is None:
            self.evaluate_baseline()
        config = dict(config)
        trial = self._begin(config)
        outcome = (runner or self.runner).run(config)
        del self._running[trial]
        return self._finish(trial, config, outcome)

    # -- trials ---------------------------------------------------------------------------------
    def _begin(self, config: dict[str, str]) -> int:
        trial = max([r.trial for r in self._records] + list(self._running), default=0) + 1
        self._running[trial] = config
        if "on_trial_begin" in self.hooks:
            self.hooks["on_trial_begin"](trial, dict(config))
        return trial

    def _finish(self, trial: int, config: dict[str, str], outcome: TrialOutcome) -> TrialRecord:
        """Record a finished trial: score it, append it to history.jsonl, keep the best."""
        record = TrialRecord(trial=trial, config=dict(config), seconds=outcome.seconds, worker=outcome.worker)
        if outcome.ok:
            record.accuracy = outcome.accuracy
            record.outputs = outcome.outputs
            record.latency_ratio = outcome.latency_ratio
            record.latency_source = outcome.latency_source
            record.int8_units = list(outcome.int8_units)
            record.int8_layers = list(outcome.int8_layers)
            record.step_seconds = dict(outcome.step_seconds)
        else:
            record.status = STATUS_FAILED
            record.error = outcome.error
            record.error_origin = outcome.error_origin
        before = self._current_best_ratio()
        self._remember(record)
        self.history_store.append(record)
        if outcome.ok:
            self._models[trial] = outcome.tflite_model
            self._keep_only_candidate_models()
        self._note_improvement(before)
        self._check_not_broken(outcome)
        if "on_trial_end" in self.hooks:
            self.hooks["on_trial_end"](record)
        hold_after(trial)
        return record

    def _remember(self, record: TrialRecord) -> None:
        if record.status == STATUS_OK:
            self.score(record)
        self._records.append(record)
        self._by_key[record.key] = record

    def score(self, record: TrialRecord) -> None:
        """Accuracy drop, criterion, latency in ms from the ratio, and NC's loss."""
        base = self.baseline
        if record.latency_ratio is None and record.latency_ms:  # a record from before ratios
            record.latency_ratio = record.latency_ms / base.latency_ms
        record.latency_ms = record.latency_ratio * base.latency_ms
        drop = self.criterion.drop(base.accuracy, record.accuracy)
        record.met_criterion = within(drop, self.criterion.tolerance)
        if self.latency_model is not None:
            record.model_ratio = round(self.search_ratio(record), 6)
        record.loss = calculate_loss(drop, 1.0 / self.search_ratio(record), self.loss_config)

    def _check_not_broken(self, outcome: TrialOutcome) -> None:
        """The tool's own error on each of the first trials alike is a bug, not data: stop."""
        first = [r for r in self._records if r.trial <= BROKEN_AFTER]
        if outcome.ok or len(first) < BROKEN_AFTER or len(self._records) > BROKEN_AFTER:
            return
        errors = {r.error.split(":")[0] if r.error else None for r in first}
        if all(r.status == STATUS_FAILED and r.error_origin == ORIGIN_TOOL for r in first) and len(errors) == 1:
            raise TrialsBroken(
                f"each of the first {BROKEN_AFTER} trials failed in the tool's own realization or "
                f"evaluation ({first[0].error}), after the float model worked: a bug, not your data\n"
                f"{outcome.traceback or ''}")

    # -- choosing and stopping ------------------------------------------------------------------
    def _current_best_ratio(self) -> float | None:
        best = self.best()
        return self.search_ratio(best) if best is not None else None

    def _contender_ratio(self) -> Callable[[TrialRecord], float] | None:
        """What ranks the contenders of the final choice: the model (the fastest few, whatever
        their readings), or without one each trial's reading (those within its noise)."""
        return self.search_ratio if self.latency_model is not None else None

    def beats_float(self, record: TrialRecord | None) -> bool:
        return record is not None and record.latency_ratio < 1.0 - self.latency_noise

    def chosen(self) -> tuple[str | None, TrialRecord | None]:
        """(what is handed back, the trial it is; None for the float model)."""
        best = self.best()
        if self.beats_float(best):
            return QUANTIZED, best
        if best is not None:
            return FLOAT, None
        ok = [r for r in self._records if r.status == STATUS_OK]
        if not ok:
            return None, None
        return BEST_ATTEMPT, min(ok, key=lambda r: (r.loss, r.trial))

    def _timed_out(self) -> bool:
        timeout = self.stop_rule.timeout
        return bool(timeout) and self.elapsed() >= timeout

    def deadline(self) -> float | None:
        """When the timeout ends, on `time.monotonic()`'s scale (None: no time limit)."""
        timeout = self.stop_rule.timeout
        return self._start + timeout if timeout else None

    def why_stop(self, timeout: float | None | str = "rule", trials: int | None = None) -> str:
        """Why the run stops now, or "" (`StopRule.reason`)."""
        def goal() -> int | None:
            best = self.best()
            return best.trial if self.beats_float(best) and self.sampler.stops_on_goal(self) else None
        return self.stop_rule.reason(
            trials=len(self._records) + len(self._running) if trials is None else trials,
            seen=self._seen_count() + len(self._running), space_size=self.space.size,
            elapsed=self.elapsed(), goal=goal, timeout=timeout,
            since_improvement=None if self._improved_at is None else len(self._records) - self._improved_at)

    def _seen_count(self) -> int:
        return sum(1 for r in self._by_key.values() if r.error_origin != ORIGIN_LOST)

    def _keep_only_candidate_models(self) -> None:
        """TFLite bytes are kept for the trials that could still be handed back only."""
        keep = {r.trial for r in (self.best(), self.chosen()[1]) if r is not None}
        keep |= {r.trial for r in near_ties(self._records, self.latency_noise, self._contender_ratio())}
        for trial in list(self._models):
            if trial not in keep:
                del self._models[trial]

    def result(self, interrupted: bool = False) -> TuningResult:
        kind, record = self.chosen()
        fastest = self.best()
        if kind == FLOAT:
            tflite = self.runner.evaluator.reference_bytes
        elif record is not None:
            tflite = self._models.get(record.trial)
            if tflite is None:  # from a resumed history: realize it again, it is deterministic
                tflite = self.runner.realizer.realize(int8_units(record.config)).tflite_model
        else:
            tflite = None
        base = self.baseline
        pinned_int8 = []
        if kind == FLOAT:  # the float model itself: every unit fp32, units op_wise pins to int8 too
            config = {u: FP32 for u in self.space.units}
            pinned_int8 = [u for u in self.space.units if self.space.fixed.get(u) == INT8]
            if pinned_int8:  # int8 input or output the user asked for is float in what is handed back
                warn(f"conf: quantization.op_wise pins {', '.join(pinned_int8)} to int8, but no configuration "
                     "that meets the criterion is faster than float, so the float model is handed back "
                     "and they run float in it")
            accuracy, latency, met, int8 = base.accuracy, base.latency_ms, True, []
        elif record is not None:
            config, accuracy, latency = dict(record.config), record.accuracy, record.latency_ms
            met, int8 = record.met_criterion, list(record.int8_units)
        else:
            config, accuracy, latency, met, int8 = {}, None, None, False, []
        layers = list(record.int8_layers) if kind != FLOAT and record is not None else []
        return TuningResult(
            tflite_model=tflite, config=config, accuracy=accuracy, latency_ms=latency,
            met_criterion=met, baseline=base, best_trial=record.trial if record is not None else None,
            int8_units=int8, int8_layers=layers, fp32_layers=[], history=list(self._records),
            seed=self.seed, elapsed_s=self.elapsed(), strategy=self.sampler.name,
            stop_reason=self.stop_reason, interrupted=interrupted, handed_back=kind,
            fastest_quantized=({"trial": fastest.trial, "latency_ratio": fastest.latency_ratio}
                               if kind == FLOAT else None),
            latency_noise=self.latency_noise, sensitivity=self.sensitivity, final_choice=self.final_choice,
            latency_model=self.latency_model.summary() if self.latency_model is not None else None,
            pinned_int8_run_float=pinned_int8)
