"""The seed's API, kept as a thin layer over the loop: `TpeTuneStrategy(model, conf, ...)`.

A strategy prepares the run (`run_setup.prepare`: the walked model, the search space, the trial
description), picks its sampler (`tf_tpe_tuner.samplers`) and hands both to a `Study`, which runs
the loop. Its methods keep Neural Compressor's names and meanings; where a meaning extends (the
float model is a candidate too), the docstring says how.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping

from ..checks import warn_if_baseline_at_chance
from ..conf import Conf
from ..history import JsonlHistory, TrialRecord
from ..run_setup import edges_of, latency_model_measure, prepare, sensitivity_measure
from ..samplers import SAMPLERS
from ..study import Baseline, Criterion, StopRule, Study, TuningResult
from ..study import study as study_clock
from ..study.loss import calculate_loss, loss_config
from ..trial import FP32, INT8
from ..walker import ModelGraph
from ..workspace import LATENCY_MODEL_FILE


class TuneStrategy:
    """A tuning run with the sampler named `sampler_name`.

    Args:
        model: a tf_keras Sequential or Functional model (nested models are fine).
        conf: a `Conf`, a yaml path or a dict.
        q_dataloader: calibration data (array, (x, y), dict, dataset or .npz path).
        q_func: called with each quantize-applied Keras model before conversion (annotate backend).
        eval_dataloader: evaluation data with labels, scored with the conf's metric.
        eval_func: instead of eval_dataloader: takes a `TFLiteModel`, returns the accuracy.
        dicts: saved state to resume from: {"history": [trial records as in history.jsonl],
            "latency_model": the readings `latency_model.save` wrote (the resumed run keeps its model)}.
        q_hooks: {"on_trial_begin": f(trial, config), "on_trial_end": f(record)}.
        latency_func: f(tflite_bytes) -> seconds, instead of the built-in benchmark.
    """

    name = "base"
    sampler_name: str | None = None

    def __init__(self, model, conf, q_dataloader, q_func: Callable | None = None,
                 eval_dataloader=None, eval_func: Callable | None = None,
                 dicts: Mapping | None = None, q_hooks: Mapping[str, Callable] | None = None,
                 latency_func: Callable[[bytes], float] | None = None):
        started = study_clock.monotonic()  # the timeout counts the preparation (calibration) too
        self.conf = conf if isinstance(conf, Conf) else Conf(conf)
        self.prepared = prepare(model, self.conf, q_dataloader, eval_dataloader, eval_func, q_func, latency_func)
        self.graph: ModelGraph = self.prepared.graph
        self.realizer = self.prepared.spec.realizer
        self.search_units = self.prepared.space.searched
        self.fixed = dict(self.prepared.space.fixed)
        self.criterion = self.prepared.criterion or Criterion.from_conf(self.conf)
        self.higher_is_better = self.criterion.higher_is_better
        scoring = self.prepared.scoring
        combined = scoring is not None and scoring.combined
        self.loss_function_config = loss_config(  # several outputs: drops in shares of tolerance
            self.criterion.tolerance, self.conf.get("tuning.strategy.accuracy_weight"),
            self.conf.get("tuning.strategy.latency_weight"), ref_acc_loss=1.0 if combined else 0.01)
        self.history_store = JsonlHistory(os.path.join(self.conf.workspace, "history.jsonl"),
                                          header=self.prepared.fingerprint)
        self.sampler = SAMPLERS[self.sampler_name or self.conf.get("tuning.strategy.name")](self.conf)
        self.name = self.sampler.name
        resumed = [r if isinstance(r, TrialRecord) else TrialRecord.from_dict(r)
                   for r in (dicts or {}).get("history", []) if not _is_run_line(r)]
        spec = self.prepared.spec
        measure_latency_model = latency_model_measure(
            self.prepared, self.conf, latency_func, save_to=os.path.join(self.conf.workspace, LATENCY_MODEL_FILE),
            resumed_readings=(dicts or {}).get("latency_model") if resumed else None)
        self.study = Study(
            space=self.prepared.space, runner=spec.runner, sampler=self.sampler, criterion=self.criterion,
            loss_config=self.loss_function_config,
            stop_rule=StopRule(self.conf.max_trials, self.conf.timeout, self.conf.patience),
            seed=self.conf.seed, history=self.history_store, resumed=resumed, hooks=q_hooks,
            make_executor=self._make_executor,
            measure_sensitivity=sensitivity_measure(self.prepared, self.conf, latency_func,
                                                    timed=measure_latency_model is None),
            measure_latency_model=measure_latency_model, edges=edges_of(self.graph), started=started)

    # -- what the loop holds, read through the strategy ----------------------------------------
    @property
    def q_hooks(self) -> dict:
        return self.study.hooks

    @q_hooks.setter
    def q_hooks(self, hooks: Mapping[str, Callable]) -> None:
        self.study.hooks = dict(hooks or {})

    @property
    def baseline(self) -> Baseline | None:
        return self.study.baseline

    @baseline.setter
    def baseline(self, value: Baseline) -> None:
        self.study.baseline = value

    @property
    def history(self) -> list[TrialRecord]:
        return self.study.records

    @property
    def best(self) -> TrialRecord | None:
        """The trial that would be handed back now (None: the float model, or nothing yet)."""
        return self.study.chosen()[1]

    @property
    def handing_back(self) -> str | None:
        """What would be handed back now: "quantized", "float", "best_attempt" or None (nothing yet)."""
        return self.study.chosen()[0]

    @property
    def evaluator(self):
        return self.study.runner.evaluator

    @property
    def sensitivity(self):
        return self.study.sensitivity

    @property
    def surrogate(self):
        start = getattr(self.sampler, "start_from", None)
        return start.surrogate if start is not None else None

    def elapsed(self) -> float:
        return self.study.elapsed()

    def all_int8_config(self) -> dict[str, str]:
        return self.prepared.space.most_quantized()

    def full_config(self, search_choice: Mapping[str, str]) -> dict[str, str]:
        """A choice over the searched units, with op_wise's fixed units added."""
        return self.prepared.space.config(search_choice)

    # -- the seed's methods --------------------------------------------------------------------
    def traverse(self) -> TuningResult:
        """Run the search; returns the best configuration found and its TFLite model.

        The best is the fastest configuration that meets the criterion when it is faster than
        the float model by more than the latency noise; else, when configurations meet the
        criterion, the float model itself (`result.handed_back == "float"`); else the trial with
        the lowest loss, flagged. Up to `tuning.executor.workers` trials run at once. Ctrl-C
        (KeyboardInterrupt) ends the search with the best finished trial (`interrupted=True`).
        """
        if self.study.baseline is None:
            baseline = self.study.evaluate_baseline()
            evaluation = self.prepared.spec.evaluation
            if evaluation.eval_func is None and evaluation.scoring.single:
                warn_if_baseline_at_chance(self.evaluator.metric.name, baseline.accuracy, self.graph.output_shapes,
                                           evaluation.eval_data.source or "evaluation data")
        result = self.study.run()
        unit_layers = [self.graph.display_names[layer] for u in self.graph.units for layer in u.layers]
        result.fp32_layers = [name for name in unit_layers if name not in result.int8_layers]
        result.realization = {
            "backend": self.prepared.spec.backend,
            "calibration": {"sampling_size": len(self.prepared.calib),
                            "batch_size": self.conf.get("quantization.calibration.batch_size"),
                            "method": "minmax"},
            "q_func": self.realizer.q_func is not None,  # a Python hook yaml cannot carry
        }
        scoring = self.prepared.scoring
        result.criterion = self.criterion
        if scoring is not None:
            result.metric = scoring.outputs[0].metric.short if scoring.single else scoring.label
        if scoring is not None and not scoring.single:
            best = next((r for r in self.study.records if r.trial == result.best_trial), None)
            handed_back = result.baseline.outputs if result.handed_back == "float" else None
            result.outputs = scoring.summary(result.baseline.outputs, best.outputs if best else handed_back)
        return result

    def object_evaluation(self, tune_cfg: Mapping[str, str], model: ModelGraph | None = None) -> TrialRecord:
        """Realize and evaluate one configuration here and now, recorded as a trial (or its
        earlier result). `model`: another walked model of the same units to realize it on."""
        runner = None
        if model is not None and model is not self.graph:
            from ..realizers import make_realizer
            from ..trial import TrialRunner

            realizer = make_realizer(self.prepared.spec.backend, model, self.prepared.calib,
                                     self.conf.get("quantization.calibration.batch_size"), self.realizer.q_func)
            runner = TrialRunner(realizer, self.evaluator, model.unit_names)
        return self.study.evaluate_now(tune_cfg, runner)

    def calculate_loss(self, acc_diff: float, lat_diff: float, config: Mapping[str, float]) -> float:
        """Neural Compressor's TPE loss (lower is better); acc_diff: the accuracy drop in the
        criterion's terms, lat_diff: the speed-up (fp32 latency / latency)."""
        return calculate_loss(acc_diff, lat_diff, config)

    def add_loss_to_tuned_history_and_find_best(self, tuning_history_list: list[TrialRecord]) -> TrialRecord | None:
        """Score trials against the baseline (drop, criterion, loss); returns the best: the fastest
        that meets the criterion, else the one with the lowest loss. (Whether it beats the float
        model by more than the noise is `traverse`'s choice, see there.)"""
        scored = [r for r in tuning_history_list if r.status == "ok"]
        for record in scored:
            self.study.score(record)
        meeting = [r for r in scored if r.met_criterion]
        if meeting:
            return min(meeting, key=lambda r: (self.study.search_ratio(r), self.study.drop(r), r.trial))
        return min(scored, key=lambda r: (r.loss, r.trial), default=None)

    def stop(self, timeout: float | None, trials_count: int) -> bool:
        """True when the search is over with this timeout after `trials_count` trials (started
        ones included): see `study.Study` for the rule; `stop_reason` says which held."""
        return bool(self.study.why_stop(timeout, trials_count))

    def _make_executor(self):
        settings = self.conf.get("tuning.executor")
        if settings["name"] == "ray":
            from ..ray_executor import RayExecutor

            return RayExecutor(self.prepared.spec, workers=settings["workers"], address=settings["address"],
                               deadline=self.study.deadline())
        from ..executor import LocalExecutor

        return LocalExecutor(self.study.runner)


def _is_run_line(entry) -> bool:
    """history.jsonl's first line describes the run, not a trial."""
    return isinstance(entry, Mapping) and set(entry) == {"run"}


__all__ = ["FP32", "INT8", "TuneStrategy"]
