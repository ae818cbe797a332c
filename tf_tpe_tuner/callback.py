"""A Keras callback that tunes the model being trained: at the end of training, and if asked
every N epochs.

    from tf_tpe_tuner import TpeTuningCallback
    tuning = TpeTuningCallback("conf.yaml", x_train[:200], (x_val, y_val), "tuning_out",
                               every_n_epochs=5)
    model.fit(x_train, y_train, epochs=10, callbacks=[tuning])
    tuning.result.tflite_model          # the last tuning's best TFLite model

Each tuning runs `tf_tpe_tuner.tune()` on the model as it is then, and writes what the command
line writes into its own subfolder of `output_dir`: `epoch_005/` after the fifth epoch,
`final/` at the end of training. The outcome is logged, added to the epoch's `logs` (so that
History, CSVLogger or TensorBoard see `tpe_accuracy`, `tpe_latency_ms`, `tpe_speedup` and
`tpe_met_criterion`), and kept on the callback.

The model being trained is not changed: tuning works on a flat clone of it, and the random
state training draws from (Python's, NumPy's, TensorFlow's op seeds; user hooks could move
it) is put back afterwards, so that training goes on exactly as it would have. A tuning that fails is reported (and kept
in `callback.errors`), and training goes on.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import random
import shutil
import sys
import time
from typing import Any, Callable

import numpy as np

from ._tf import keras
from .conf import Conf

log = logging.getLogger("tf_tpe_tuner.callback")

LOG_KEYS = ("tpe_accuracy", "tpe_latency_ms", "tpe_speedup", "tpe_met_criterion")


class TpeTuningCallback(keras.callbacks.Callback):
    """Tune the model being trained and keep the result.

    Args:
        conf: the tuning conf: a yaml path, a `Conf` or a dict (checked now, not after training).
        calib_data: calibration samples: an array, (x, y), a dict, a dataset or an .npz path.
        eval_data: labelled evaluation data ((x, y), a dataset of (x, y), .npz path).
        output_dir: each tuning writes into its own subfolder of it (epoch_005/, final/).
        every_n_epochs: also tune after every N-th epoch (None: only at the end of training).
        eval_func: instead of eval_data, f(TFLiteModel) -> accuracy.
        test_data, latency_func: passed on to `tune()` (held-out test data for the report;
            a function measuring latency on the deployment device).
        tune_at_end: tune when training ends (into final/).
        progress: "auto", "bar", "log" or "quiet": the progress display during each tuning.
        overwrite: replace results that an earlier run left in the subfolders (results this
            callback wrote itself are always replaced).
        verbose: 1 prints the outcome of each tuning; 0 sends it to the `tf_tpe_tuner` logger.
        **tune_kwargs: anything else for `tune()` (q_func, q_hooks, ...).

    Attributes:
        result: the last successful tuning's `TuningResult` (None before the first one).
        results: {subfolder: TuningResult or None (failed)}, in order.
        errors: {subfolder: error message} for the tunings that failed.
    """

    def __init__(self, conf: Any, calib_data: Any, eval_data: Any = None,
                 output_dir: str = "tpe_tuning", every_n_epochs: int | None = None, *,
                 eval_func: Callable | None = None, test_data: Any = None,
                 latency_func: Callable | None = None, tune_at_end: bool = True,
                 progress: str = "auto", overwrite: bool = False, verbose: int = 1, **tune_kwargs):
        super().__init__()
        if every_n_epochs is not None and (isinstance(every_n_epochs, bool)
                                           or not isinstance(every_n_epochs, int) or every_n_epochs < 1):
            raise ValueError(f"every_n_epochs must be a whole number >= 1 or None, got {every_n_epochs!r}")
        if eval_data is None and eval_func is None:
            raise ValueError("give eval_data (labelled) or an eval_func")
        self.conf = conf if isinstance(conf, Conf) else Conf(conf)
        self.calib_data = calib_data
        self.eval_data = eval_data
        self.eval_func = eval_func
        self.output_dir = output_dir
        self.every_n_epochs = every_n_epochs
        self.tune_at_end = tune_at_end
        self.progress = progress
        self.overwrite = overwrite
        self.verbose = verbose
        self.tune_kwargs = dict(tune_kwargs)
        for name, value in (("test_data", test_data), ("latency_func", latency_func)):
            if value is not None:
                self.tune_kwargs[name] = value
        self._check_tune_supports(self.tune_kwargs)
        self.result = None
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self._own: set[str] = set()  # subfolders this callback has written into
        self._last_tuned: tuple[str, str] | None = None  # (subfolder, weights fingerprint)

    # -- Keras hooks -------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self.every_n_epochs or (epoch + 1) % self.every_n_epochs:
            return
        folder = f"epoch_{epoch + 1:03d}"
        result = self.tune_now(folder, f"epoch {epoch + 1}")
        if result is not None and logs is not None and result.accuracy is not None:
            logs.update(outcome_logs(result))

    def on_train_end(self, logs: dict | None = None) -> None:
        if not self.tune_at_end:
            return
        fingerprint = _weights_fingerprint(self.model)
        if self._last_tuned is not None and self._last_tuned[1] == fingerprint \
                and self.results.get(self._last_tuned[0]) is not None:
            # The weights have not changed since the last epoch's tuning: the same result.
            source = self._last_tuned[0]
            if self._copy_result(source, "final"):
                self.results["final"] = self.results[source]
                self._say(f"tpe tuning (end of training): weights unchanged since {source}/, "
                          f"copied to {os.path.join(self.output_dir, 'final')}")
                return
        self.tune_now("final", "end of training")

    # -- tuning --------------------------------------------------------------------------------
    def tune_now(self, folder: str, when: str | None = None):
        """Tune the model as it is now into `output_dir/folder`; None if tuning failed."""
        from .api import tune

        when = when or folder
        path = os.path.join(self.output_dir, folder)
        if not _holds_results(path):
            self._own.add(os.path.abspath(path))  # what is written there from now on is ours
        overwrite = self.overwrite or os.path.abspath(path) in self._own
        fingerprint = _weights_fingerprint(self.model)
        start = time.perf_counter()
        kwargs = dict(self.tune_kwargs)
        kwargs.setdefault("progress", self.progress)
        try:
            with preserved_random_state():
                result = tune(self.model, self.conf, self.calib_data, eval_data=self.eval_data,
                              eval_func=self.eval_func, output_dir=path, overwrite=overwrite, **kwargs)
        except KeyboardInterrupt:
            raise  # the user stops everything, training included
        except Exception as err:  # noqa: BLE001  (a failed tuning must not end training)
            message = f"{type(err).__name__}: {err}".strip()
            self.results[folder] = None
            self.errors[folder] = message
            self._say(f"tpe tuning ({when}) failed, training goes on: {message}", error=True)
            return None
        self._own.add(os.path.abspath(path))
        self.result = result
        self.results[folder] = result
        self.errors.pop(folder, None)
        self._last_tuned = (folder, fingerprint)
        self._say(f"tpe tuning ({when}): {describe(result)} [{time.perf_counter() - start:.0f} s] -> {path}")
        return result

    # -- helpers -------------------------------------------------------------------------------
    def _copy_result(self, source: str, target: str) -> bool:
        src, dst = os.path.join(self.output_dir, source), os.path.join(self.output_dir, target)
        if _holds_results(dst) and not (self.overwrite or os.path.abspath(dst) in self._own):
            return False
        try:
            if os.path.isdir(dst):
                shutil.rmtree(dst)
            shutil.copytree(src, dst)
        except OSError as err:
            log.warning("copying %s to %s failed (%s); tuning again", src, dst, err)
            return False
        self._own.add(os.path.abspath(dst))
        return True

    def _say(self, line: str, error: bool = False) -> None:
        if self.verbose:
            print(line, file=sys.stderr if error else sys.stdout, flush=True)
        else:
            log.log(logging.ERROR if error else logging.INFO, line)

    @staticmethod
    def _check_tune_supports(kwargs: dict) -> None:
        for name in kwargs:
            if not _tune_accepts(name):
                raise TypeError(f"tf_tpe_tuner.tune() takes no argument {name!r}")


def describe(result) -> str:
    """One line: the outcome of a tuning."""
    if result.accuracy is None:
        return f"every trial failed ({result.trials} trials)"
    if result.handed_back == "float":
        return f"{result.describe()}, {result.trials} trials"
    verdict = "meets" if result.met_criterion else "does NOT meet"
    return (f"best trial {result.best_trial}, {len(result.int8_units)}/{len(result.config)} units int8, "
            f"accuracy {result.accuracy:.4f} (fp32 {result.baseline.accuracy:.4f}), "
            f"latency {result.latency_ms:.4f} ms (fp32 {result.baseline.latency_ms:.4f} ms, "
            f"{result.speedup:.2f}x), {verdict} the criterion, {result.trials} trials")


def outcome_logs(result) -> dict[str, float]:
    """The numbers added to an epoch's logs."""
    return {"tpe_accuracy": float(result.accuracy), "tpe_latency_ms": float(result.latency_ms),
            "tpe_speedup": float(result.speedup or 0.0),
            "tpe_met_criterion": 1.0 if result.met_criterion else 0.0}


def _tune_accepts(name: str) -> bool:
    from .api import tune

    params = inspect.signature(tune).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _holds_results(path: str) -> bool:
    from .workspace import RESULT_FILES

    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, f)) for f in RESULT_FILES)


def _weights_fingerprint(model) -> str:
    digest = hashlib.sha1()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def preserved_random_state():
    """Put back the random state that training draws from: Python's, NumPy's global one, and
    TensorFlow's eager op-seed sequence (shuffling, dropout and initializers use it)."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    rng = None
    try:
        from tensorflow.python.eager import context

        rng = getattr(context.context(), "_rng", None)
    except Exception:  # noqa: BLE001  (a TensorFlow without it: the rest still holds)
        rng = None
    tf_state = rng.getstate() if rng is not None and hasattr(rng, "getstate") else None
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        if tf_state is not None:
            rng.setstate(tf_state)
