"""Trials on Ray: N actors, each built from the run's `TrialSpec`, run the configurations sent.

What crosses the wire: once per worker, the `TrialSpec` (cloudpickled: the prepared realizer,
the evaluation data and the user's eval_func / latency_func / q_func, the fp32 TFLite model);
then per trial only the configuration one way and the outcome (scores + the TFLite bytes) back.
On a cluster the same holds: pass `tuning.executor.address`.

Latency: a worker that shares a machine with other busy workers does not measure the same
microseconds as one alone, so workers measure the ratio of each candidate's latency to the
fp32 model's, the two invoked in alternation in the same process (with a `latency_func`, its
figure over its figure for the fp32 model); the loop scores trials by that ratio.
"""
from __future__ import annotations

import logging
import os

from .errors import TunerInputError
from .trial import ORIGIN_LOST, TrialOutcome

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
    """The actor: builds its trial runner from the spec, once."""

    def __init__(self, spec):
        self.runner = spec.runner()

    def pid(self) -> int:
        return os.getpid()

    def run(self, config: dict) -> TrialOutcome:
        return self.runner.run(config)


class RayExecutor:
    """Keeps `workers` Ray actors; a dead actor loses its trial (recorded failed) and leaves."""

    name = "ray"

    def __init__(self, spec, workers: int, address: str | None = None):
        ray = import_ray()
        self._ray = ray
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            kwargs = {"address": address} if address else {"num_cpus": workers}
            ray.init(include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": WORKER_ENV}, **kwargs)
        actor = ray.remote(num_cpus=1, max_restarts=0,
                           runtime_env={"env_vars": WORKER_ENV})(TrialWorker)
        try:
            payload = ray.put(spec)
            self._actors = [actor.remote(payload) for _ in range(workers)]
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

    def submit(self, trial: int, config: dict[str, str]) -> None:
        actor = self._idle.pop()
        self._running[actor.run.remote(config)] = (trial, actor)

    def next_result(self) -> tuple[int, TrialOutcome]:
        ready, _ = self._ray.wait(list(self._running), num_returns=1)
        trial, actor = self._running.pop(ready[0])
        try:
            outcome = self._ray.get(ready[0])
        except self._ray.exceptions.RayActorError as err:
            self._actors.remove(actor)
            log.warning("a Ray worker died during trial %d; %d workers left", trial, len(self._actors))
            return trial, TrialOutcome(ok=False, error=f"worker died: {type(err).__name__}",
                                       error_origin=ORIGIN_LOST)
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
