"""The strategy loop, shared by every search algorithm.

`TuneStrategy` owns one tuning run: it walks the model, builds the realizer and the
evaluator, evaluates the float baseline, then asks its subclass for configurations until
`stop()` says so. A subclass only proposes (`next_tune_cfg`) and, if it learns, listens
(`on_result`). Loss, best choice and stopping follow Intel Neural Compressor 1.x's TPE strategy.
"""
from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass, field
from time import monotonic  # a module name, so that a test can move the clock
from typing import Any, Callable, Mapping

from .._test_hold import hold_after
from ..conf import Conf
from ..data import as_array_data, check_against_model
from ..errors import TunerInputError
from ..evaluate import Evaluator, make_metric
from ..history import STATUS_FAILED, STATUS_OK, JsonlHistory, TrialRecord
from ..executor import LocalExecutor
from ..realize_denylist import make_realizer
from ..trial import TrialOutcome, TrialRunner
from ..walker import ModelGraph, apply_op_wise, walk

log = logging.getLogger("tf_tpe_tuner")

INT8, FP32 = "int8", "fp32"
_MAX_CACHED_PROPOSALS = 20  # in a row, before a random unexplored configuration is taken


@dataclass
class Baseline:
    accuracy: float
    latency_ms: float


@dataclass
class TuningResult:
    """What a tuning run hands back (and what the output directory holds)."""

    tflite_model: bytes | None
    config: dict[str, str]
    accuracy: float | None
    latency_ms: float | None
    met_criterion: bool
    baseline: Baseline
    best_trial: int | None
    int8_units: list[str]
    int8_layers: list[str]
    fp32_layers: list[str]
    history: list[TrialRecord]
    seed: int
    elapsed_s: float
    strategy: str
    stop_reason: str = ""
    realization: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False  # Ctrl-C: this is the best found before it
    report: dict | None = None  # report.json's content, when tune() wrote a report

    @property
    def trials(self) -> int:
        return len(self.history)

    @property
    def speedup(self) -> float | None:
        if not self.latency_ms:
            return None
        return self.baseline.latency_ms / self.latency_ms


class TuneStrategy:
    """A tuning run. Subclasses implement `next_tune_cfg` (and optionally `on_result`).

    Args:
        model: a tf_keras Sequential or Functional model (nested models are fine).
        conf: a `Conf`, a yaml path or a dict.
        q_dataloader: calibration data (array, (x, y), dict, dataset or .npz path).
        q_func: called with each quantize-applied Keras model before conversion.
        eval_dataloader: evaluation data with labels, scored with the conf's metric.
        eval_func: instead of eval_dataloader: takes a `TFLiteModel`, returns the accuracy.
        dicts: saved state to resume from: {"history": [trial records as in history.jsonl]}.
        q_hooks: {"on_trial_begin": f(trial, config), "on_trial_end": f(record)}.
    """

    name = "base"

    def __init__(self, model, conf, q_dataloader, q_func: Callable | None = None,
                 eval_dataloader=None, eval_func: Callable | None = None,
                 dicts: Mapping | None = None, q_hooks: Mapping[str, Callable] | None = None):
        self._start = monotonic()
        self.conf = conf if isinstance(conf, Conf) else Conf(conf)
        self.graph: ModelGraph = model if isinstance(model, ModelGraph) else walk(model)
        if self.conf.get("tuning.executor.name") == "ray":
            from ..ray_executor import import_ray

            import_ray()  # a missing Ray is bad input: say so before any work
        self.fixed = apply_op_wise(self.graph, self.conf.op_wise)
        self.search_units = [u for u in self.graph.unit_names if u not in self.fixed]
        shapes, names = self.graph.input_shapes, self.graph.input_names
        calib = check_against_model(as_array_data(q_dataloader, names, "calibration data"),
                                    shapes, "calibration data")
        calib = calib.take(self.conf.get("quantization.calibration.sampling_size"))
        eval_data = None
        if eval_dataloader is not None:
            eval_data = check_against_model(as_array_data(eval_dataloader, names, "evaluation data"),
                                            shapes, "evaluation data")
        perf = self.conf.get("evaluation.performance")
        self.evaluator = Evaluator(
            make_metric(self.conf.metric_name, self.conf.metric_topk), eval_data, eval_func,
            batch_size=self.conf.get("evaluation.accuracy.batch_size"),
            warmup=perf["warmup"], iterations=perf["iteration"], num_threads=perf["num_threads"])
        self.evaluator.check_labels(self.graph.output_shapes)
        backend = self.conf.get("quantization.backend")
        if backend == "auto":  # q_func works on the quantize-applied Keras model: annotate only
            backend = "annotate" if q_func is not None else "denylist"
        self.realizer = make_realizer(backend, self.graph, calib,
                                      self.conf.get("quantization.calibration.batch_size"), q_func)
        self.history_store = JsonlHistory(os.path.join(self.conf.workspace, "history.jsonl"))
        self.q_hooks = dict(q_hooks or {})
        self.higher_is_better = self.conf.higher_is_better
        self.criterion_kind, tolerance = self.conf.criterion
        self.loss_function_config = {
            "acc_th": tolerance,
            "acc_weight": float(self.conf.get("tuning.strategy.accuracy_weight")),
            "lat_weight": float(self.conf.get("tuning.strategy.latency_weight")),
        }
        # Scale the loss so that 1 % accuracy loss and a 2x speed-up each move it by 10.
        self._calculate_loss_function_scaling_components(0.01, 2, self.loss_function_config)
        self.space_size = 2 ** len(self.search_units)
        self.baseline: Baseline | None = None
        self.history: list[TrialRecord] = []
        self.evaluated: dict[frozenset, TrialRecord] = {}
        self.best: TrialRecord | None = None
        self._best_tflite: tuple[int, bytes] | None = None
        self.in_flight: dict[frozenset, tuple[int, dict[str, str]]] = {}  # key -> (trial, config)
        self.runner = TrialRunner(self.realizer, self.evaluator, self.graph.unit_names)
        self.source_model = model if not isinstance(model, ModelGraph) else self.graph.model
        self._random = random.Random(self.conf.seed)
        for raw in (dicts or {}).get("history", []):
            self._remember(raw if isinstance(raw, TrialRecord) else TrialRecord.from_dict(raw))

    # -- what subclasses provide ---------------------------------------------------------
    def next_tune_cfg(self) -> dict[str, str]:
        """The next configuration to try: {unit: "int8" | "fp32"} over every unit."""
        raise NotImplementedError

    def on_result(self, tune_cfg: dict[str, str], record: TrialRecord) -> None:
        """Told about every answer, evaluated or from the cache; learning strategies listen."""

    def on_pending(self, tune_cfg: dict[str, str]) -> None:
        """Told when a configuration starts running, before its result is known."""

    # -- the loop ------------------------------------------------------------------------
    def traverse(self) -> TuningResult:
        """Run the search; returns the best configuration found and its TFLite model.

        Up to `tuning.executor.workers` trials run at once. Ctrl-C (KeyboardInterrupt) ends
        the search: trials under way are dropped, and the result (`interrupted=True`) holds
        the best finished one.
        """
        float_model = self.realizer.realize_float().tflite_model
        # Latency from here on is a ratio to the fp32 model, invoked side by side: the
        # speed-ups the search compares do not move with the machine's load.
        self.evaluator.set_latency_reference(float_model)
        self.baseline = self._evaluate_baseline(float_model)
        resumed = list(self.history)
        self.best = self.add_loss_to_tuned_history_and_find_best(resumed)
        for record in resumed:
            self.on_result(record.config, record)
        executor = self._make_executor(float_model)
        try:
            self._search(executor, trials_count=len(resumed))
        except KeyboardInterrupt:
            log.info("interrupted: %d trials finished", len(self.history))
            return self._result(interrupted=True)
        finally:
            executor.close()
        return self._result()

    def _search(self, executor, trials_count: int) -> None:
        cached_in_a_row = 0
        while True:
            while len(self.in_flight) < executor.workers and not self.stop(self.conf.timeout, trials_count):
                tune_cfg = self.next_tune_cfg()
                key = frozenset_of(tune_cfg)
                if self.seen(tune_cfg):
                    if key in self.evaluated:  # answered from the cache: not a trial
                        self.on_result(tune_cfg, self.evaluated[key])
                    cached_in_a_row += 1
                    if cached_in_a_row < _MAX_CACHED_PROPOSALS:
                        continue
                    tune_cfg = self._unexplored_config()
                    key = frozenset_of(tune_cfg)
                cached_in_a_row = 0
                trials_count += 1
                trial = self._begin_trial(tune_cfg)
                self.in_flight[key] = (trial, tune_cfg)
                self.on_pending(tune_cfg)
                executor.submit(trial, key)
            if not self.in_flight:
                return
            trial, outcome = executor.next_result()
            key = next(k for k, (t, _) in self.in_flight.items() if t == trial)
            _, tune_cfg = self.in_flight.pop(key)
            self.on_result(tune_cfg, self._finish_trial(trial, tune_cfg, outcome))

    def object_evaluation(self, tune_cfg: dict[str, str], model: ModelGraph | None = None) -> TrialRecord:
        """Realize and evaluate one configuration here and now (or return its cached result).

        `model` is the walked model the configuration applies to (this strategy's by default).
        """
        key = frozenset_of(tune_cfg)
        if key in self.evaluated:
            return self.evaluated[key]
        runner = self.runner
        if model is not None and model is not self.graph:
            realizer = type(self.realizer)(model, self.realizer.calib, self.realizer.batch_size,
                                           self.realizer.q_func)
            runner = TrialRunner(realizer, self.evaluator, model.unit_names)
        trial = self._begin_trial(tune_cfg)
        return self._finish_trial(trial, tune_cfg, runner.run(key))

    def _begin_trial(self, tune_cfg: dict[str, str]) -> int:
        busy = [t for t, _ in self.in_flight.values()]
        trial = max([r.trial for r in self.history] + busy, default=0) + 1
        if "on_trial_begin" in self.q_hooks:
            self.q_hooks["on_trial_begin"](trial, {u: tune_cfg[u] for u in self.graph.unit_names})
        return trial

    def _finish_trial(self, trial: int, tune_cfg: dict[str, str], outcome: TrialOutcome) -> TrialRecord:
        """Record a finished trial: score it, append it to history.jsonl, keep the best."""
        record = TrialRecord(trial=trial, config={u: tune_cfg[u] for u in self.graph.unit_names},
                             seconds=outcome.seconds)
        if outcome.ok:
            record.accuracy = outcome.accuracy
            record.latency_ms = outcome.latency_ms
            if outcome.latency_ratio is not None:  # measured beside the fp32 model in a worker
                record.latency_ms = outcome.latency_ratio * self.baseline.latency_ms
            record.int8_units = list(outcome.int8_units)
            record.int8_layers = list(outcome.int8_layers)
            record.step_seconds = dict(outcome.step_seconds)
            self._score(record)
        else:
            record.status = STATUS_FAILED
            record.error = outcome.error
        self.history_store.append(record)
        self._remember(record)
        if outcome.ok and self.best is record:
            self._best_tflite = (record.trial, outcome.tflite_model)
        if "on_trial_end" in self.q_hooks:
            self.q_hooks["on_trial_end"](record)
        hold_after(trial)
        return record

    def _make_executor(self, float_model: bytes):
        settings = self.conf.get("tuning.executor")
        if settings["name"] == "ray":
            from ..ray_executor import RayExecutor

            return RayExecutor(self, float_model, workers=settings["workers"], address=settings["address"])
        return LocalExecutor(self.runner)

    def calculate_loss(self, acc_diff: float, lat_diff: float, config: Mapping[str, float]) -> float:
        """Neural Compressor's TPE loss: lower is better.

        acc_diff: accuracy loss against the baseline (relative or absolute, per the criterion);
        lat_diff: speed-up, fp32 latency / latency. Inside the criterion only speed counts
        (10 * (1 - log2(speed-up)) with default weights); outside it, 80 more plus about 10 per
        1 % of accuracy lost.
        """
        penalty = 40.0
        outside = acc_diff > config["acc_th"]
        acc_weight = config["acc_weight"] if outside else 0.0
        if acc_weight == 0 and config["lat_weight"] == 0:
            acc_weight = 1.0
        loss = acc_weight * config["acc_scale"] * (self._acc_component(acc_diff) - config["acc_min"]) \
            + config["lat_weight"] * config["lat_scale"] * (self._lat_component(lat_diff) - config["lat_min"])
        if outside:
            loss += 2 * penalty
        return float(loss)

    def add_loss_to_tuned_history_and_find_best(self, tuning_history_list: list[TrialRecord]) -> TrialRecord | None:
        """Score earlier trials against this run's baseline; the best is the fastest that
        meets the criterion, else the one with the lowest loss."""
        scored = [r for r in tuning_history_list if r.status == STATUS_OK]
        for record in scored:
            self._score(record)
        meeting = [r for r in scored if r.met_criterion]
        if meeting:
            return min(meeting, key=lambda r: (r.latency_ms, self._acc_diff(r.accuracy), r.trial))
        return min(scored, key=lambda r: (r.loss, r.trial), default=None)

    def stop(self, timeout: float, trials_count: int) -> bool:
        """True when the search is over: goal met with timeout 0, `max_trials` evaluations
        (started ones included), the whole space evaluated, or the timeout passed."""
        if timeout == 0 and self.best is not None and self.best.met_criterion:
            return True
        if trials_count >= self.conf.max_trials:
            return True
        if len(self.evaluated) + len(self.in_flight) >= self.space_size:
            return True
        return timeout > 0 and self.elapsed() >= timeout

    # -- helpers -------------------------------------------------------------------------
    def elapsed(self) -> float:
        return monotonic() - self._start

    def all_int8_config(self) -> dict[str, str]:
        return {u: self.fixed.get(u, INT8) for u in self.graph.unit_names}

    def full_config(self, search_choice: Mapping[str, str]) -> dict[str, str]:
        """A choice over the searched units, with op_wise's fixed units added."""
        return {u: self.fixed.get(u) or search_choice[u] for u in self.graph.unit_names}

    def seen(self, tune_cfg: Mapping[str, str]) -> bool:
        """Evaluated already, or running now."""
        key = frozenset_of(tune_cfg)
        return key in self.evaluated or key in self.in_flight

    def _unexplored_config(self) -> dict[str, str]:
        while True:
            choice = {u: self._random.choice((INT8, FP32)) for u in self.search_units}
            config = self.full_config(choice)
            if not self.seen(config):
                return config

    def _evaluate_baseline(self, float_model: bytes) -> Baseline:
        try:
            evaluation = self.evaluator.evaluate(float_model)
        except (TypeError, ValueError) as err:  # the user's eval_func or data, on the float model
            raise TunerInputError(f"evaluating the fp32 model failed: {err}") from None
        log.info("fp32 baseline: accuracy %.4f, latency %.4f ms", evaluation.accuracy, evaluation.latency_ms)
        return Baseline(evaluation.accuracy, evaluation.latency_ms)

    def _acc_diff(self, accuracy: float) -> float:
        base = self.baseline.accuracy
        drop = base - accuracy if self.higher_is_better else accuracy - base
        if self.criterion_kind == "relative":
            return drop / abs(base) if base else drop
        return drop

    def _score(self, record: TrialRecord) -> None:
        acc_diff = self._acc_diff(record.accuracy)
        lat_diff = self.baseline.latency_ms / record.latency_ms
        record.loss = self.calculate_loss(acc_diff, lat_diff, self.loss_function_config)
        record.met_criterion = acc_diff <= self.loss_function_config["acc_th"] + 1e-12

    def _remember(self, record: TrialRecord) -> None:
        self.history.append(record)
        self.evaluated[record.key] = record
        if self.baseline is not None and record.status == STATUS_OK:
            self.best = self.add_loss_to_tuned_history_and_find_best(self.history)

    @staticmethod
    def _acc_component(acc_diff: float) -> float:
        return math.exp(acc_diff)

    @staticmethod
    def _lat_component(lat_diff: float) -> float:
        # log((1 / (1000 * s)) ** 8), written so that it cannot overflow
        return -8.0 * math.log(1000.0 * lat_diff)

    def _calculate_loss_function_scaling_components(self, acc_loss: float, lat_diff: float,
                                                    config: dict) -> None:
        acc_min = self._acc_component(0)
        acc_max = self._acc_component(acc_loss)
        if acc_max == acc_min:
            acc_max = self._acc_component(config["acc_th"])
        config["acc_min"] = acc_min
        config["acc_scale"] = 10 / abs(acc_max - acc_min)
        lat_min = self._lat_component(lat_diff)
        lat_max = self._lat_component(1)
        config["lat_min"] = lat_min
        config["lat_scale"] = 10 / abs(lat_max - lat_min)

    def _result(self, interrupted: bool = False) -> TuningResult:
        best = self.best
        tflite = None
        if best is not None:
            if self._best_tflite is not None and self._best_tflite[0] == best.trial:
                tflite = self._best_tflite[1]
            else:  # the best trial came from a resumed history: rebuild it, it is deterministic
                tflite = self.realizer.realize(best.key).tflite_model
        int8_layers = list(best.int8_layers) if best else []
        unit_layers = [self.graph.display_names[layer] for u in self.graph.units for layer in u.layers]
        return TuningResult(
            tflite_model=tflite,
            config=dict(best.config) if best else {},
            accuracy=best.accuracy if best else None,
            latency_ms=best.latency_ms if best else None,
            met_criterion=bool(best and best.met_criterion),
            baseline=self.baseline,
            best_trial=best.trial if best else None,
            int8_units=list(best.int8_units) if best else [],
            int8_layers=int8_layers,
            fp32_layers=[name for name in unit_layers if name not in int8_layers],
            history=list(self.history),
            seed=self.conf.seed,
            elapsed_s=self.elapsed(),
            strategy=self.name,
            interrupted=interrupted,
            realization={
                "backend": self.realizer.name,
                "calibration": {"sampling_size": len(self.realizer.calib),
                                "batch_size": self.realizer.batch_size, "method": "minmax"},
            },
        )


def frozenset_of(tune_cfg: Mapping[str, str]) -> frozenset[str]:
    """A configuration's cache key: the set of units proposed int8."""
    return frozenset(u for u, dtype in tune_cfg.items() if dtype == INT8)
