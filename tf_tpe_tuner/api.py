"""`tune()`: the one call that does the whole job. The CLI and the Keras callback wrap it."""
from __future__ import annotations

import os
from typing import Any, Callable

from . import latency_model
from . import progress as progress_mod
from . import report as report_mod
from .checks import warn_if_test_overlaps
from .conf import Conf
from .errors import TunerInputError, TuningInterrupted
from .export import write_result
from .history import JsonlHistory
from .run_setup import differences, prepare_test_data, test_scores
from .strategy import STRATEGIES, TuningResult
from .workspace import LATENCY_MODEL_FILE


def tune(model, conf: "Conf | str | dict | None", calib_data: Any, eval_data: Any = None,
         eval_func: Callable | None = None, output_dir: str | None = None, *,
         q_func: Callable | None = None, q_hooks: dict | None = None,
         overwrite: bool = False, resume: "bool | str" = False, test_data: Any = None,
         latency_func: Callable[[bytes], float] | None = None, progress: str = "quiet",
         report: bool = True) -> TuningResult:
    """Tune `model` and write the best TFLite model, its config, the history and a summary.

    Args:
        model: a tf_keras Sequential or Functional model.
        conf: a `Conf`, a yaml path, a dict, or None for the defaults.
        calib_data: calibration samples (array, (x, y), dict, dataset or .npz path).
        eval_data: labelled evaluation data, scored with `evaluation.accuracy.metric`.
        eval_func: instead of eval_data: f(TFLiteModel) -> accuracy.
        output_dir: where results go; defaults to `tuning.workspace.path`.
        q_func, q_hooks: see `TuneStrategy`.
        overwrite: replace results already in output_dir (otherwise they are refused).
        resume: continue the run recorded in output_dir (True) or in another directory (its
            path; also `tuning.workspace.resume`): its trials are kept, not evaluated again.
        test_data: held-apart labelled data on which the final and the float model are
            reported (report.md/json): the best of many trials flatters itself on eval_data.
        latency_func: f(tflite_bytes) -> seconds, replaces the built-in latency benchmark
            (for users who measure on their deployment device).
        progress: "quiet", "log" (a line per trial), "bar" (tqdm) or "auto".
        report: write report.md, report.json and pareto.png.
    Returns:
        The `TuningResult` (best TFLite bytes, configuration, accuracy, latency, history).
    Raises:
        TuningInterrupted: on Ctrl-C, after writing the best result so far.
    """
    conf = Conf(conf) if not isinstance(conf, Conf) else conf
    if output_dir is not None:
        conf = conf.override(**{"tuning.workspace.path": output_dir})
    output_dir = conf.workspace
    resume_dir = output_dir if resume is True else (resume or conf.get("tuning.workspace.resume"))
    if resume_dir and overwrite:
        raise TunerInputError("resume and overwrite exclude each other: resuming keeps the results")
    same_dir = _same_dir(resume_dir, output_dir)
    existing = [] if same_dir else _existing_results(output_dir, overwrite and not resume_dir)
    store = None
    if resume_dir:
        store = _history(resume_dir)
        resumed = store.load()
        saved_latency_model = latency_model.read(os.path.join(resume_dir, LATENCY_MODEL_FILE))
    else:
        resumed, saved_latency_model = [], None
    strategy_cls = STRATEGIES[conf.get("tuning.strategy.name")]
    strategy = strategy_cls(model, conf, calib_data, q_func=q_func, eval_dataloader=eval_data,
                            eval_func=eval_func, q_hooks=q_hooks,
                            dicts={"history": resumed, "latency_model": saved_latency_model},
                            latency_func=latency_func)
    if strategy.prepared.scoring is None:  # an eval_func: test data scored with the conf's metric
        test = report_mod.load_test_data(test_data, strategy.graph)  # refused now, not after the search
        if test is not None:
            strategy.evaluator.check_labels(strategy.graph.output_shapes, test)
    else:  # labelled per output like the evaluation data (the float model's outputs where none)
        test = prepare_test_data(strategy.prepared, test_data)
    if test is not None:
        warn_if_test_overlaps(test, strategy.prepared.spec.evaluation.eval_data)
    if resume_dir:
        _check_resumable(resume_dir, store.header, strategy)
    with strategy.history_store.locked():  # one run at a time writes this output directory
        if same_dir:
            store.load(repair=True)  # a torn last line is cut off, so that appending goes on
        for path in existing:  # only now that every input has been checked
            os.unlink(path)
        if resume_dir and not same_dir:
            strategy.history_store.write_all(resumed)  # the new directory holds the whole run
        with progress_mod.attach(strategy, progress):
            result = strategy.traverse()
        write_result(result, output_dir)
        if report:
            try:
                scored = None
                if test is not None and strategy.prepared.scoring is not None:
                    scored = test_scores(strategy.prepared, test, result.tflite_model)
                result.report = report_mod.write_report(
                    result, strategy.graph, output_dir, strategy.prepared.calib, conf=strategy.conf,
                    test_data=test, sensitivity=_report_sensitivity(result, strategy.conf), test=scored)
            except KeyboardInterrupt:  # the results are written already: only the report is lost
                result.interrupted = True
    if result.interrupted:
        raise TuningInterrupted(result)
    return result


def _report_sensitivity(result, conf):
    """What the report shows: the run's sensitivity; measured for the report alone only when
    the run measured none, was not interrupted and has no timeout to keep."""
    if result.sensitivity is not None:
        return result.sensitivity
    return not result.interrupted and not conf.timeout


def _history(directory: str) -> JsonlHistory:
    path = os.path.join(directory, "history.jsonl")
    if not os.path.exists(path):
        raise TunerInputError(f"nothing to resume in {directory}: it has no history.jsonl")
    return JsonlHistory(path)


def _check_resumable(directory: str, recorded: dict | None, strategy) -> None:
    """Refuse to mix two runs: another model (units or float model), backend, calibration,
    op_wise, metric or criterion than the history's."""
    units = set(strategy.graph.unit_names)
    unknown = {u for r in strategy.history for u in r.config} - units
    if unknown:
        raise TunerInputError(
            f"the history in {directory} was made with another model (unknown units: "
            f"{', '.join(sorted(unknown))})")
    if recorded is not None:
        changed = differences(recorded, strategy.prepared.fingerprint)
        if changed:
            raise TunerInputError(f"cannot resume the run in {directory}: it was made with another "
                                  f"{'; '.join(changed)}")


def _same_dir(a: str | None, b: str) -> bool:
    return bool(a) and os.path.abspath(a) == os.path.abspath(b)


def _existing_results(output_dir: str, overwrite: bool) -> list[str]:
    """Result files already in output_dir; refused unless `overwrite`."""
    from .workspace import existing_results  # TensorFlow-free: the command line checks it early

    return existing_results(output_dir, overwrite)
