"""tf-tpe-tune: which units of a tf_keras model run in int8, searched with TPE; writes the
fastest TFLite model that meets the accuracy criterion. A thin shell over `tf_tpe_tuner.tune()`.

    tf-tpe-tune --model=model.keras --conf=conf.yaml --calib_data=calib.npz --eval_data=eval.npz \\
        --output_dir=out [--max_trials=N] [--timeout=S] [--seed=N] [--strategy=tpe] [--overwrite] \\
        [--latency_func=bench.py:seconds]
    tf-tpe-tune --model=model.keras --dry_run     # the units, and why the other layers stay float

Exit status: 0 the accuracy criterion was met, 1 it was not (the best attempt is still
written), 2 bad input (flags, conf, files, model, data), 3 an internal error.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

from absl import app, flags

from . import _cli_common
from .workspace import REPORT_FILES, RESULT_FILES

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "The model: a .keras file (tf_keras or Keras 3), an .h5 file, a "
                    "SavedModel directory (Keras or plain TensorFlow), or a float .tflite file.")
flags.DEFINE_string("signature", None, "With a plain SavedModel --model: the signature to tune "
                    "(default serving_default).")
flags.DEFINE_string("conf", None, "yaml conf (Neural Compressor-style fields); defaults if absent.")
flags.DEFINE_string("calib_data", None, ".npz with array x (or one array per model input), or a .npy "
                    "holding x.")
flags.DEFINE_string("eval_data", None, ".npz with arrays x and y.")
flags.DEFINE_string("output_dir", None, "Where results go (overrides tuning.workspace.path).")
flags.DEFINE_integer("max_trials", None, "Overrides tuning.exit_policy.max_trials.", lower_bound=1)
flags.DEFINE_float("timeout", None, "Seconds; overrides tuning.exit_policy.timeout (0: stop at "
                   "the first configuration that meets the criterion and beats float).", lower_bound=0)
flags.DEFINE_integer("seed", None, "Overrides tuning.random_seed.", lower_bound=0)
flags.DEFINE_string("strategy", None, "Overrides tuning.strategy.name.")
flags.DEFINE_enum("executor", None, ["local", "ray"], "Overrides tuning.executor.name: run trials "
                  "here, or on Ray workers.")
flags.DEFINE_integer("workers", None, "Overrides tuning.executor.workers (trials in flight).", lower_bound=1)
flags.DEFINE_string("ray_address", None, "Overrides tuning.executor.address: join this Ray cluster.")
flags.DEFINE_string("test_data", None, ".npz with x and y held apart from --eval_data: the final "
                    "and the float model are reported on it.")
flags.DEFINE_string("latency_func", None, "FILE.py:FUNCTION or MODULE:FUNCTION, a function (tflite "
                    "bytes) -> seconds that replaces the built-in latency benchmark (a deployment "
                    "device's figures, or a cost model).")
flags.DEFINE_enum("progress", "auto", ["auto", "bar", "log", "quiet"], "Progress: a tqdm bar, one "
                  "line per trial, or nothing (auto: bar on a terminal, lines otherwise).")
flags.DEFINE_boolean("quiet", False, "Only the final result and errors (same as --progress=quiet).")
flags.DEFINE_boolean("dry_run", False, "Print the quantizable units and why other layers stay float, then exit.")
flags.DEFINE_boolean("overwrite", False, "Replace results already in the output directory.")
flags.DEFINE_boolean("resume", False, "Continue the run recorded in the output directory: its finished "
                     "trials are kept and not evaluated again.")
flags.DEFINE_boolean("allow_unsafe_model", False, "Load .h5/SavedModel models with Lambda layers "
                     "(they run code stored in the file) and .keras files outside safe mode.")

EXIT_MET, EXIT_NOT_MET = 0, 1
PROG = "tf-tpe-tune"


def fail(message: str) -> None:
    _cli_common.fail(PROG, message)


def parse_flags(argv: list[str]) -> list[str]:
    _cli_common.help_if_asked(argv, __doc__, FLAGS, "model")
    return _cli_common.parse_or_fail(PROG, FLAGS, argv)


def check_flags() -> None:
    """Everything that can be checked before TensorFlow is even imported."""
    if not FLAGS.model:
        fail("--model is required (a .keras, .h5 or .tflite file or a SavedModel directory)")
    needed = [("model", FLAGS.model), ("conf", FLAGS.conf)]
    if not FLAGS.dry_run:
        needed += [("calib_data", FLAGS.calib_data), ("eval_data", FLAGS.eval_data),
                   ("test_data", FLAGS.test_data)]
    for name, path in needed:
        if name in ("calib_data", "eval_data") and not path:
            fail(f"--{name} is required (an .npz file)")
        if path and not os.path.exists(path):
            fail(f"--{name} file {path} does not exist")
    if FLAGS.latency_func:
        where, _, name = FLAGS.latency_func.rpartition(":")
        if not where or not name.isidentifier():
            fail(f"flag --latency_func={FLAGS.latency_func}: expected FILE.py:FUNCTION or MODULE:FUNCTION")
        if where.endswith(".py") and not os.path.isfile(where):
            fail(f"--latency_func file {where} does not exist")


def load_latency_func(spec: str) -> Callable[[bytes], float]:
    """The function `spec` (FILE.py:FUNCTION or MODULE:FUNCTION) names. A file is run as a module
    of its own, outside sys.modules (so that Ray's workers get the function by value) and
    without a __pycache__ beside it."""
    import importlib
    import types

    where, _, name = spec.rpartition(":")
    try:
        if where.endswith(".py"):
            module = types.ModuleType(os.path.basename(where)[:-3])
            module.__file__ = os.path.abspath(where)
            with open(where, encoding="utf-8") as f:
                exec(compile(f.read(), module.__file__, "exec"), module.__dict__)
        else:
            module = importlib.import_module(where)
    except Exception as err:  # the user's code: its first line, not a traceback
        first = (str(err).strip().splitlines() or [""])[0]
        fail(f"--latency_func: {where} could not be loaded: {type(err).__name__}: {first}")
    func = getattr(module, name, None)
    if not callable(func):
        fail(f"--latency_func: {where} has no function {name}")
    return func


def check_before_tensorflow(conf) -> None:
    """The data files' formats and the output directory: refused in a fraction of a second,
    not after TensorFlow has loaded (seconds)."""
    from . import workspace
    from .data import file_kind

    file_kind(FLAGS.calib_data, "--calib_data")
    # a .npy holds inputs only: fine where the float model's outputs are the labels (not topk)
    file_kind(FLAGS.eval_data, "--eval_data", labels_needed=conf.needs_labels)
    if FLAGS.test_data:
        file_kind(FLAGS.test_data, "--test_data", labels_needed=conf.needs_labels)
    resume_dir = conf.workspace if FLAGS.resume else conf.get("tuning.workspace.resume")
    if resume_dir:
        workspace.check_resume(resume_dir, FLAGS.overwrite)
    else:
        workspace.existing_results(conf.workspace, FLAGS.overwrite)


def _load_tensorflow() -> None:
    from absl import logging as absl_logging

    from ._tf import tf  # noqa: F401  (loads quietly: see _native.py)

    absl_logging.set_verbosity(absl_logging.WARNING)  # the converter's chatter


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    check_flags()
    _cli_common.one_line_warnings(PROG)
    return _cli_common.run_guarded(PROG, _run_keeping_results,
                                   "interrupted before any trial finished; nothing written")


def _run_keeping_results() -> int:
    """`_run()`; Ctrl-C after a trial finished: what was kept, and how to resume (exit 130)."""
    from .errors import TuningInterrupted

    try:
        return _run()
    except TuningInterrupted as stop:
        out = FLAGS.output_dir or "the output directory"
        print(f"interrupted: {stop.result.trials} finished trials kept in {out}, best so far written.\n"
              f"resume with: {_resume_command()}", file=sys.stderr)
        return _cli_common.EXIT_INTERRUPTED


def _run() -> int:
    from .conf import Conf

    conf = Conf(FLAGS.conf).override(**{
        "tuning.exit_policy.max_trials": FLAGS.max_trials,
        "tuning.exit_policy.timeout": FLAGS.timeout,
        "tuning.random_seed": FLAGS.seed,
        "tuning.strategy.name": FLAGS.strategy,
        "tuning.workspace.path": FLAGS.output_dir,
        "tuning.executor.name": FLAGS.executor,
        "tuning.executor.workers": FLAGS.workers,
        "tuning.executor.address": FLAGS.ray_address,
    })
    if not FLAGS.dry_run:
        check_before_tensorflow(conf)
    _load_tensorflow()
    from . import progress
    from .api import tune
    from .model_io import load_model
    from .run_setup import model_graph

    latency_func = load_latency_func(FLAGS.latency_func) if FLAGS.latency_func else None
    model = load_model(FLAGS.model, allow_unsafe=FLAGS.allow_unsafe_model, signature=FLAGS.signature)
    if FLAGS.dry_run:
        from .realizers import resolve_backend

        graph = model_graph(model, resolve_backend(conf.get("quantization.backend"), None))
        print(graph.describe())
        if len(graph.output_shapes) > 1:  # the names labels and the conf's outputs go by
            from .outputs import output_names
            print("outputs: " + ", ".join(f"{i} {name} {tuple(shape[1:])}" for i, (name, shape)
                                          in enumerate(zip(output_names(graph), graph.output_shapes))))
        return EXIT_MET
    mode = progress.resolve_mode(FLAGS.progress, FLAGS.quiet)
    progress.setup_logging(mode)
    result = tune(model, conf, FLAGS.calib_data, eval_data=FLAGS.eval_data,
                  overwrite=FLAGS.overwrite, resume=FLAGS.resume, test_data=FLAGS.test_data,
                  progress=mode, latency_func=latency_func)
    out = conf.workspace
    if result.accuracy is None:
        print("no trial finished" if not result.trials else
              f"every trial failed; see {os.path.join(out, 'history.jsonl')}")
        print(f"stopped: {result.stop_reason}")
        return EXIT_NOT_MET
    if result.handed_back == "float":
        print(f"best: {result.describe()}")
    else:
        print(f"best: trial {result.best_trial}, {len(result.int8_units)}/{len(result.config)} units int8, "
              f"accuracy {result.accuracy:.6g} (fp32 {result.baseline.accuracy:.6g}), "
              f"latency {result.latency_ms:.4f} ms (fp32 {result.baseline.latency_ms:.4f} ms, "
              f"{result.speedup:.2f}x), {'meets' if result.met_criterion else 'does NOT meet'} the criterion")
    for row in result.outputs or []:
        verdict = "" if row["meets"] is None else ", meets" if row["meets"] else ", misses"
        print(f"  output {row['output']}: {row['metric']} {row['best']:.6g} (fp32 {row['fp32']:.6g}; "
              f"{row['criterion']}{verdict})")
    print(f"stopped: {result.stop_reason}")
    test = (result.report or {}).get("test")
    if test:
        print(f"test data ({test['samples']} samples): accuracy {test['best_accuracy']:.6g} "
              f"(fp32 {test['fp32_accuracy']:.6g})")
    written = [f for f in RESULT_FILES + REPORT_FILES if os.path.exists(os.path.join(out, f))]
    print(f"wrote {', '.join(written)} in {out}")
    return EXIT_MET if result.met_criterion else EXIT_NOT_MET


def _resume_command() -> str:
    args = [a for a in sys.argv[1:] if a not in ("--overwrite", "--resume")]
    return " ".join([PROG] + args + ["--resume"])


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
