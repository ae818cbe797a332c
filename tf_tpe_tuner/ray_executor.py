"""Trials on Ray: N actors, each built from the run's `TrialSpec`, run the configurations sent.

What crosses the wire: once per worker, the `TrialSpec` (cloudpickled: the prepared realizer,
the evaluation data and the user's eval_func / latency_func / q_func, the fp32 TFLite model);
then per trial only the configuration one way and the outcome (scores + the TFLite bytes) back.
On a cluster the same holds: pass `tuning.executor.address` (or set RAY_ADDRESS); without one,
a new local Ray runtime with `workers` CPUs is started, whatever cluster this machine may run.

Start-up: the executor waits until every worker has built its runner (so that a worker that
cannot, say an eval_func whose module is not installed there, is one `TunerInputError` at the
start rather than a lost trial per worker), but not past the run's deadline (`timeout`): the
workers' start-up counts towards it, and workers the cluster cannot place do not hold the run.
Each outcome says where it ran (`TrialOutcome.worker`: host, pid, Ray node id).

Latency: a worker that shares a machine with other busy workers does not measure the same
microseconds as one alone, so workers measure the ratio of each candidate's latency to the
fp32 model's, the two invoked in alternation in the same process (with a `latency_func`, its
figure over its figure for the fp32 model); the loop scores trials by that ratio.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import time

from .errors import TunerInputError
from .trial import ORIGIN_LOST, TrialOutcome

log = logging.getLogger("tf_tpe_tuner")

WORKER_ENV = {
    "TF_NUM_INTRAOP_THREADS": "1",  # one core per worker
    "TF_NUM_INTEROP_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
START_NOTE_SECONDS = 30.0  # while workers start, a line this often says how many are waited for


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
        import ray

        self.where = {"host": socket.gethostname(), "pid": os.getpid(),
                      "node": ray.get_runtime_context().get_node_id()}
        self.runner = spec.runner()

    def pid(self) -> int:
        return os.getpid()

    def worker(self) -> dict:
        """Where this worker runs; answered once its runner is built."""
        return dict(self.where)

    def run(self, config: dict) -> TrialOutcome:
        outcome = self.runner.run(config)
        outcome.worker = dict(self.where)
        return outcome


class RayExecutor:
    """Keeps `workers` Ray actors; a dead actor loses its trial (recorded failed, origin "lost":
    its configuration may be tried again) and leaves; with none left the loop stops."""

    name = "ray"

    def __init__(self, spec, workers: int, address: str | None = None, deadline: float | None = None):
        """`deadline`: a `time.monotonic()` time (the run's timeout) after which waiting for
        workers to start stops; the loop then stops on its timeout."""
        ray = import_ray()
        self._ray = ray
        self._started_ray = not ray.is_initialized()
        self._actors: list = []
        self._where: dict[int, dict] = {}  # id(actor) -> TrialWorker.worker()
        if self._started_ray:
            address = address or os.environ.get("RAY_ADDRESS") or None
            kwargs = {"address": address} if address else {"address": "local", "num_cpus": workers}
            if address:
                _check_answers(address)
            try:
                ray.init(include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": WORKER_ENV}, **kwargs)
            except (ConnectionError, ValueError) as err:
                if not address:
                    raise
                raise TunerInputError(f"cannot join the Ray cluster at {address}: {err}") from None
        actor = ray.remote(num_cpus=1, max_restarts=0,
                           runtime_env={"env_vars": WORKER_ENV})(TrialWorker)
        try:
            payload = ray.put(spec)
            self._actors = [actor.remote(payload) for _ in range(workers)]
        except Exception as err:  # typically an eval_func that cloudpickle cannot send
            self.close()
            raise TunerInputError(f"cannot send the tuning job to Ray workers: {_pickling_cause(err)}") from None
        self._idle = list(self._actors)
        self._running: dict = {}  # object ref -> (trial, actor)
        try:
            self._wait_started(deadline)
        except BaseException:
            self.close()
            raise

    def _wait_started(self, deadline: float | None) -> None:
        """Wait until every worker has built its runner; the first that cannot is a
        `TunerInputError`. Waiting ends at `deadline` with the workers not started yet left
        pending (nothing is sent to them: the loop is past its timeout)."""
        ray = self._ray
        pending = {actor.worker.remote(): actor for actor in self._actors}
        while pending:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                log.warning("%d of %d Ray workers had not started when the timeout passed (%s)",
                            len(pending), len(self._actors), self._cpus())
                return
            step = START_NOTE_SECONDS if left is None else min(left, START_NOTE_SECONDS)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=step)
            if not ready:
                if left is None or left > step:
                    log.warning("waiting for %d of %d Ray workers to start (%s)", len(pending),
                                len(self._actors), self._cpus())
                continue
            actor = pending.pop(ready[0])
            try:
                self._where[id(actor)] = ray.get(ready[0])
            except ray.exceptions.RayError as err:
                raise TunerInputError(
                    f"a Ray worker could not set up the trial: {_cause(err)} (each worker loads the model, "
                    "the data and any eval_func, latency_func or q_func, with what they import)") from None

    def _cpus(self) -> str:
        ray = self._ray
        return (f"each takes 1 CPU; the cluster has {ray.available_resources().get('CPU', 0):g} CPUs free "
                f"of {ray.cluster_resources().get('CPU', 0):g}")

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
                                       error_origin=ORIGIN_LOST, worker=self._where.get(id(actor)))
        except self._ray.exceptions.RayError as err:
            self._idle.append(actor)
            return trial, TrialOutcome(ok=False, error=f"{type(err).__name__}: {err}",
                                       worker=self._where.get(id(actor)))
        self._idle.append(actor)
        return trial, outcome

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors, self._idle, self._running = [], [], {}
        if self._started_ray:
            self._ray.shutdown()


def _check_answers(address: str) -> None:
    """Refuse a HOST:PORT where nothing listens now (ray.init would retry it for minutes)."""
    found = re.fullmatch(r"\[?([^\[\]/]+?)\]?:(\d+)", address.strip())
    if not found:  # ray://..., auto: Ray's to resolve
        return
    try:
        socket.create_connection((found.group(1), int(found.group(2))), timeout=10).close()
    except OSError as err:
        raise TunerInputError(f"cannot join the Ray cluster at {address}: nothing answers there "
                              f"({err.strerror or type(err).__name__}); is the cluster running?") from None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _cause(err: Exception) -> str:
    """The last line of a Ray error's text: the exception the worker raised, as `Type: message`."""
    lines = [line.strip() for line in _ANSI.sub("", str(err)).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _pickling_cause(err: Exception) -> str:
    """What could not be pickled, and where in the trial description, in one line (Ray's own
    message holds the repr of the whole description: the model's bytes included)."""
    cause = err.__cause__ or err
    text = " ".join(_ANSI.sub("", str(cause)).split())
    text = f"{type(cause).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"
    found = re.search(r"FailTuple\(.*? \[path=([^,\]]+)", _ANSI.sub("", str(err)))
    return f"{text} (in the trial description's {found.group(1).strip()})" if found else text
