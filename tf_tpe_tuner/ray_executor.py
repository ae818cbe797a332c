"""Trials on Ray: N actors, each holding the model and the data, run the configurations sent.

What crosses the wire: once per worker, the model (Keras JSON config + weights), the conf,
the calibration and evaluation arrays, the fp32 TFLite model, and the user's eval_func/q_func
(cloudpickled); then per trial only the set of int8 units one way and the outcome (scores +
the TFLite bytes) back. On a cluster the same holds: pass `tuning.executor.address`.

Latency: a worker that shares a machine with other busy workers does not measure the same
microseconds as one alone, so workers measure the ratio of each candidate's latency to the
fp32 model's, the two invoked in alternation in the same process; the driver turns the ratio
into milliseconds with the fp32 latency it measured alone before the search.
"""
from __future__ import annotations

import logging
import os

from .errors import TunerInputError
from .trial import TrialOutcome

log = logging.getLogger("tf_tpe_tuner")

WORKER_ENV = {
    "TF_USE_LEGACY_KERAS": "1",  # tfmot needs Keras 2 in the workers too
    "TF_NUM_INTRAOP_THREADS": "1",  # one core per worker
    "TF_NUM_INTEROP_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def import_ray():
    try:
        import ray
    except ImportError:
        raise TunerInputError(
            "tuning.executor.name ray needs Ray: pip install 'tf_tpe_tuner[ray]' "
            "(or pip install ray==2.60.0)") from None
    return ray


class TrialWorker:
    """The actor: builds the same realizer and evaluator as the tuning process, once."""

    def __init__(self, model_json: str, weights: list, conf: dict, calib, eval_data,
                 eval_func, q_func, reference: bytes):
        from ._tf import keras
        from .conf import Conf
        from .strategy.base import TuneStrategy
        from .trial import TrialRunner

        model = keras.models.model_from_json(model_json)
        model.set_weights(weights)
        setup = TuneStrategy(model, Conf(conf), calib, q_func=q_func, eval_dataloader=eval_data,
                             eval_func=eval_func)
        setup.evaluator.set_latency_reference(reference)
        self.runner = TrialRunner(setup.realizer, setup.evaluator, setup.graph.unit_names)

    def pid(self) -> int:
        return os.getpid()

    def run(self, int8_units: frozenset) -> TrialOutcome:
        return self.runner.run(int8_units)


class RayExecutor:
    """Keeps `workers` Ray actors; a dead actor loses its trial (recorded failed) and leaves."""

    name = "ray"

    def __init__(self, strategy, float_model: bytes, workers: int, address: str | None = None):
        ray = import_ray()
        self._ray = ray
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            kwargs = {"address": address} if address else {"num_cpus": workers}
            ray.init(include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": WORKER_ENV}, **kwargs)
        model = strategy.source_model
        conf = strategy.conf.override(**{"tuning.executor.name": "local"}).as_dict()
        calib = strategy.realizer.calib
        payload = [ray.put(x) for x in (model.to_json(), model.get_weights(), conf, calib,
                                        strategy.evaluator.eval_data)]
        actor = ray.remote(num_cpus=1, max_restarts=0,
                           runtime_env={"env_vars": WORKER_ENV})(TrialWorker)
        try:
            self._actors = [actor.remote(*payload, strategy.evaluator.eval_func,
                                         strategy.realizer.q_func, float_model)
                            for _ in range(workers)]
        except Exception as err:  # typically an eval_func that cloudpickle cannot send
            self.close()
            raise TunerInputError(f"cannot send the tuning job to Ray workers: {err}") from None
        self._idle = list(self._actors)
        self._running: dict = {}  # object ref -> (trial, actor)

    @property
    def workers(self) -> int:
        return len(self._actors)

    def worker_pids(self) -> list[int]:
        return self._ray.get([a.pid.remote() for a in self._actors])

    def submit(self, trial: int, int8_units: frozenset[str]) -> None:
        actor = self._idle.pop()
        self._running[actor.run.remote(int8_units)] = (trial, actor)

    def next_result(self) -> tuple[int, TrialOutcome]:
        ready, _ = self._ray.wait(list(self._running), num_returns=1)
        trial, actor = self._running.pop(ready[0])
        try:
            outcome = self._ray.get(ready[0])
        except self._ray.exceptions.RayActorError as err:
            self._actors.remove(actor)
            log.warning("a Ray worker died during trial %d; %d workers left", trial, len(self._actors))
            return trial, TrialOutcome(ok=False, error=f"worker died: {type(err).__name__}")
        except self._ray.exceptions.RayError as err:
            self._idle.append(actor)
            return trial, TrialOutcome(ok=False, error=f"{type(err).__name__}: {err}")
        self._idle.append(actor)
        return trial, outcome

    def close(self) -> None:
        for actor in getattr(self, "_actors", []):
            self._ray.kill(actor)
        self._actors, self._idle, self._running = [], [], {}
        if self._started_ray:
            self._ray.shutdown()
