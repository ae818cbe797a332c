"""The real command line (`python -m tf_tpe_tuner`) in subprocesses, on the CNN from conftest.

Every subprocess pays for a TensorFlow import (~6 s), so all the runs this module needs are
started once, a few at a time, by the module-scoped `runs` fixture; each test then only looks
at the result of its own run (exit status, stdout, stderr, and the files in its working dir).
Selecting a single test still starts all 13 runs. Even so the module takes well over 90 s
(13 TensorFlow imports, ~110 s of CPU in all), hence `slow`.
"""
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

import cost_latency
from conftest import FAST_PERF, trial_lines
from test_quiet import CLEAN_ENV  # a user's environment: TensorFlow's start-up lines would show
from tf_tpe_tuner._tf import keras

pytestmark = pytest.mark.slow

UNITS = ["conv1", "conv2", "conv3", "fc1", "logits", "logits:softmax"]  # the softmax: an op of its own
RESULT_FILES = ["best_model.tflite", "best_config.yaml", "summary.json", "history.jsonl", "latency_model.json"]
HISTORY_KEYS = {"trial", "config", "accuracy", "latency_ms", "loss", "status", "seconds", "int8_units"}
SUMMARY_KEYS = {"fp32_accuracy", "fp32_latency_ms", "best_accuracy", "best_latency_ms", "met_criterion",
                "trials", "quantized_layers", "fp32_layers", "seed", "elapsed_s"}

@dataclass
class Run:
    args: list
    cwd: Path
    returncode: int
    stdout: str
    stderr: str
    before: dict  # the working directory's files before the run: {relative path: bytes}

    @property
    def out(self) -> Path:
        return self.cwd / "out"

    def error_lines(self) -> list:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __str__(self) -> str:
        return (f"command: {' '.join(map(str, self.args))}\ncwd: {self.cwd}\nexit: {self.returncode}\n"
                f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}")


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def write_conf(path: Path, extra: dict | None = None) -> Path:
    conf = {"evaluation": {"performance": dict(FAST_PERF)}}
    for section, body in (extra or {}).items():
        if isinstance(body, dict) and isinstance(conf.get(section), dict):
            conf[section] = {**conf[section], **body}
        else:
            conf[section] = body
    path.write_text(yaml.safe_dump(conf))
    return path


def build_cases(cnn, cnn_files: Path, root: Path) -> dict:
    """{name: (working dir, arguments)}; each case gets its own, otherwise empty, working dir."""
    model, calib, evald = (str(cnn_files / n) for n in ("model.keras", "calib.npz", "eval.npz"))
    cases = {}

    def case(name, *args, model_arg=model, conf=None, calib_arg=calib, eval_arg=evald, output="out"):
        cwd = root / name
        cwd.mkdir()
        conf_path = conf(cwd) if callable(conf) else (conf or write_conf(cwd / "conf.yaml"))
        full = []
        if model_arg is not None:
            full.append(f"--model={model_arg(cwd) if callable(model_arg) else model_arg}")
        full += [f"--conf={conf_path}",
                 f"--calib_data={calib_arg(cwd) if callable(calib_arg) else calib_arg}",
                 f"--eval_data={eval_arg(cwd) if callable(eval_arg) else eval_arg}",
                 f"--output_dir={output}", *args]
        cases[name] = (cwd, full)

    # -- runs that tune ----------------------------------------------------------------
    case("tune", "--max_trials=3", "--timeout=600", cost_latency.FLAG)  # a quantized answer on any CPU

    # Exit 1. On this CNN the all-int8 model (trial 1) classifies exactly as well as fp32
    # (both 0.9837 top-1 on eval.npz), so no top-1 criterion, not even `absolute: 0.0`, is
    # reliably missed (and `higher_is_better: false` only misses if int8 happens to be *more*
    # accurate). Instead the "accuracy" is the MSE against the Keras model's own predictions:
    # the fp32 TFLite model reproduces them up to float round-off (MSE ~3e-15), while int8
    # weights and activations cannot (MSE ~4e-6), so with `absolute: 0.0` (tolerance 1e-12 in
    # the tuner) trial 1 misses by six orders of magnitude, deterministically.
    def self_labelled_eval(cwd):
        e = np.load(cnn_files / "eval.npz")
        np.savez(cwd / "eval_self.npz", x=e["x"], y=cnn.predict(e["x"], verbose=0))
        return cwd / "eval_self.npz"

    case("miss", "--max_trials=1",
         conf=lambda cwd: write_conf(cwd / "conf.yaml", {
             "evaluation": {"accuracy": {"metric": {"MSE": {}}}},
             "tuning": {"accuracy_criterion": {"absolute": 0.0}}}),
         eval_arg=self_labelled_eval)

    cwd = root / "dry_run"
    cwd.mkdir()
    cases["dry_run"] = (cwd, [f"--model={model}", "--dry_run", "--output_dir=out"])

    # -- bad input: exit 2 -------------------------------------------------------------
    case("missing_model", model_arg=None)
    case("model_not_found", model_arg=lambda cwd: cwd / "nope.keras")
    case("bogus_flag", "--max_trials=zero")
    case("unknown_conf_key", conf=lambda cwd: write_conf(
        cwd / "conf.yaml", {"tuning": {"exit_policy": {"max_trial": 3}}}))
    case("conf_missing", conf=lambda cwd: cwd / "nope.yaml")

    def calib_without_x(cwd):
        np.savez(cwd / "calib.npz", images=np.load(cnn_files / "calib.npz")["x"])
        return cwd / "calib.npz"

    case("calib_without_x", calib_arg=calib_without_x)

    def calib_wrong_shape(cwd):
        np.savez(cwd / "calib.npz", x=np.random.RandomState(0).rand(10, 4, 4, 1).astype("float32"))
        return cwd / "calib.npz"

    case("calib_wrong_shape", calib_arg=calib_wrong_shape)
    case("op_wise_unknown_unit", conf=lambda cwd: write_conf(
        cwd / "conf.yaml", {"quantization": {"op_wise": {"conv9": {"activation": {"dtype": ["fp32"]}}}}}))

    def with_old_results(cwd):
        (cwd / "out").mkdir()
        for name in RESULT_FILES:
            (cwd / "out" / name).write_text(f"old {name}\n")
        return write_conf(cwd / "conf.yaml")

    case("existing_results", conf=with_old_results)

    def txt_model(cwd):
        (cwd / "model.txt").write_text("not a model\n")
        return cwd / "model.txt"

    case("txt_model", model_arg=txt_model)

    def conf_text(text):
        def write(cwd):
            (cwd / "conf.yaml").write_text(text)
            return cwd / "conf.yaml"
        return write

    case("yaml_syntax", conf=conf_text("tuning:\n  exit_policy:\n    max_trials: [1\n"))
    case("wrong_type", conf=conf_text("tuning:\n  exit_policy:\n    max_trials: ten\n"))
    case("both_criteria", conf=conf_text(
        "tuning:\n  accuracy_criterion:\n    relative: 0.01\n    absolute: 0.01\n"))
    case("negative_timeout", conf=conf_text("tuning:\n  exit_policy:\n    timeout: -5\n"))
    case("zero_max_trials_flag", "--max_trials=0")
    case("latency_func_without_function", "--latency_func=bench.py")
    case("latency_func_file_missing", "--latency_func=nope.py:seconds")
    case("latency_func_not_in_file", "--latency_func=bench.py:seconds")
    (root / "latency_func_not_in_file" / "bench.py").write_text("def second(tflite):\n    return 1e-3\n")

    def subclassed_model(cwd):
        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.dense = keras.layers.Dense(10)

            def call(self, x):
                return self.dense(keras.layers.Flatten()(x))

        net = Net()
        net(np.zeros((1, 8, 8, 1), "float32"))
        net.save(str(cwd / "subclassed"))  # a SavedModel directory
        return cwd / "subclassed"

    case("subclassed_model", model_arg=subclassed_model)

    def no_quantizable_layer(cwd):
        inputs = keras.Input((8, 8, 1))
        keras.Model(inputs, keras.layers.Flatten()(inputs)).save(cwd / "flat.keras")  # one RESHAPE op
        return cwd / "flat.keras"

    case("no_quantizable_layer", model_arg=no_quantizable_layer)

    def not_a_flatbuffer(cwd):  # (a Keras 3 file, once refused here, is tuned now: test_model_kinds.py)
        (cwd / "m.tflite").write_text("not a model")
        return cwd / "m.tflite"

    case("not_a_flatbuffer", model_arg=not_a_flatbuffer)

    def labels_out_of_range(cwd):
        e = np.load(cnn_files / "eval.npz")
        np.savez(cwd / "eval.npz", x=e["x"], y=e["y"] + 5)
        return cwd / "eval.npz"

    case("eval_labels_mismatch", eval_arg=labels_out_of_range)

    # -- data that cannot be right: exit 2 ---------------------------------------------
    def eval_with(labels=None, inputs=None):
        def write(cwd):
            e = np.load(cnn_files / "eval.npz")
            x = e["x"] if inputs is None else inputs(e["x"].copy())
            y = e["y"] if labels is None else labels(e["y"].copy())
            np.savez(cwd / "eval.npz", x=x, y=y)
            return cwd / "eval.npz"
        return write

    def spoil(value):
        def put(a):
            a = a.astype("float32")
            a.reshape(-1)[7] = value
            return a
        return put

    def calib_with(inputs, name="calib.npz"):
        def write(cwd):
            x = inputs(np.load(cnn_files / "calib.npz")["x"].copy())
            if name.endswith(".npy"):
                np.save(cwd / name, x)
            else:
                np.savez(cwd / name, x=x)
            return cwd / name
        return write

    def not_a_zip(cwd):
        (cwd / "calib.npz").write_text("x,y\n0.1,3\n")
        return cwd / "calib.npz"

    def eval_npy(cwd):
        np.save(cwd / "eval.npy", np.load(cnn_files / "eval.npz")["x"])
        return cwd / "eval.npy"

    case("float_labels", eval_arg=eval_with(labels=lambda y: y + 0.5))
    case("float_labels_column", eval_arg=eval_with(labels=lambda y: (y + 0.25).reshape(-1, 1)))
    case("nan_calibration_inputs", calib_arg=calib_with(spoil(np.nan)))
    case("inf_evaluation_inputs", eval_arg=eval_with(inputs=spoil(np.inf)))
    case("nan_evaluation_labels", eval_arg=eval_with(labels=spoil(np.nan)))
    case("npy_eval_data", eval_arg=eval_npy)
    case("npz_not_a_zip", calib_arg=not_a_zip)
    case("npy_test_data", "--test_data=test.npy")
    np.save(root / "npy_test_data" / "test.npy", np.load(cnn_files / "eval.npz")["x"])

    # -- accepted: a .npy of calibration inputs, one-hot labels ------------------------
    case("npy_calib_one_hot_labels", "--max_trials=1", calib_arg=calib_with(lambda x: x, "calib.npy"),
         eval_arg=eval_with(labels=lambda y: np.eye(10, dtype="float32")[y]))

    # -- probably wrong: one warning line, the run goes on -----------------------------
    case("warn_relative_criterion", "--max_trials=1", conf=lambda cwd: write_conf(
        cwd / "conf.yaml", {"tuning": {"accuracy_criterion": {"relative": 0.6}}}))
    case("warn_calibration_range", "--max_trials=1", calib_arg=calib_with(lambda x: x * 255))
    case("warn_baseline_at_chance", "--max_trials=1", eval_arg=eval_with(labels=lambda y: (y + 1) % 10))
    case("warn_test_overlaps_eval", "--max_trials=1", f"--test_data={evald}")
    return cases


def run_cli(cwd: Path, args: list) -> Run:
    before = snapshot(cwd)
    env = dict(CLEAN_ENV)
    full = [sys.executable, "-m", "tf_tpe_tuner", *map(str, args)]
    proc = subprocess.run(full, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    return Run(full, cwd, proc.returncode, proc.stdout, proc.stderr, before)


@pytest.fixture(scope="module")
def runs(cnn, cnn_files, tmp_path_factory):
    """Every command line this module checks, run a few at a time (the slowest first)."""
    cases = build_cases(cnn, cnn_files, tmp_path_factory.mktemp("cli"))
    workers = max(2, min(4, (os.cpu_count() or 2) + 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(run_cli, cwd, args) for name, (cwd, args) in cases.items()}
        return {name: f.result() for name, f in futures.items()}


def read_results(out: Path):
    history = [json.loads(line) for line in trial_lines(out / "history.jsonl")]
    summary = json.loads((out / "summary.json").read_text())
    config = yaml.safe_load((out / "best_config.yaml").read_text())
    return history, summary, config


def tflite_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interpreter.invoke()
    pred = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return float(np.mean(np.argmax(pred, axis=-1) == y))


# -- a run that meets the criterion: exit 0 ----------------------------------------------------
def test_tune_meets_criterion_and_writes_results(runs, cnn_files):
    run = runs["tune"]
    assert run.returncode == 0, run
    assert "Traceback" not in run.stderr, run
    report_files = ["report.md", "report.json", "pareto.png"]
    written = [f for f in RESULT_FILES if f != "latency_model.json"]  # a latency_func's run has no latency model
    assert sorted(p.name for p in run.out.iterdir()) == sorted(written + report_files), run
    history, summary, config = read_results(run.out)

    e = np.load(cnn_files / "eval.npz")
    assert tflite_accuracy(run.out / "best_model.tflite", e["x"], e["y"]) > 0.9

    assert set(config["units"]) == set(UNITS)
    assert set(config["units"].values()) <= {"int8", "fp32"}
    assert isinstance(config["realization"], dict) and config["realization"]

    assert len(history) == 3
    for i, record in enumerate(history, 1):
        assert HISTORY_KEYS <= set(record), record
        assert record["trial"] == i and record["status"] == "ok", record
        assert set(record["config"]) == set(UNITS)
        assert isinstance(record["accuracy"], float) and record["latency_ms"] > 0
        assert isinstance(record["loss"], float) and record["seconds"] > 0
        assert set(record["int8_units"]) <= set(UNITS)
        assert record["latency_source"] == "latency_func"  # --latency_func's figures, not the clock
    assert history[0]["config"] == {u: "int8" for u in UNITS}  # TPE starts all-int8

    assert SUMMARY_KEYS <= set(summary), summary
    assert summary["trials"] == 3
    assert summary["met_criterion"] is True
    assert summary["best_accuracy"] >= summary["fp32_accuracy"] * 0.99
    assert summary["fp32_latency_ms"] > 0 and summary["best_latency_ms"] > 0
    assert summary["seed"] == 1978 and summary["elapsed_s"] > 0
    best = history[summary["best_trial"] - 1]
    assert config["units"] == best["config"]
    assert summary["best_accuracy"] == best["accuracy"]
    assert set(summary["quantized_layers"]).isdisjoint(summary["fp32_layers"])
    assert set(best["int8_units"]) <= set(summary["quantized_layers"])

    printed = [line for line in run.stdout.splitlines() if line.startswith("trial ")]
    assert len(printed) == 3, run
    assert [line.split()[1] for line in printed] == ["1", "2", "3"]
    assert not [line for line in run.stdout.splitlines() if line.startswith("progress")], run
    assert run.stderr == "", run  # not one line of TensorFlow's native logging


def test_result_files_get_their_mode_from_the_umask(runs):
    """Like any file the user writes: 0o644 under the common umask 022 (not 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    run = runs["tune"]
    for path in run.out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, (path.name, oct(path.stat().st_mode))


# -- a run that cannot meet the criterion: exit 1, best attempt still written ----------------
def test_missed_criterion_exits_1_and_still_writes_best(runs):
    run = runs["miss"]
    assert run.returncode == 1, run
    assert "Traceback" not in run.stderr, run
    assert (run.out / "best_model.tflite").stat().st_size > 0
    history, summary, config = read_results(run.out)
    assert summary["met_criterion"] is False
    assert summary["trials"] == 1 and len(history) == 1
    assert history[0]["config"] == {u: "int8" for u in UNITS}
    assert history[0]["met_criterion"] is False
    # the premise of the criterion: fp32 reproduces Keras, int8 does not
    assert summary["fp32_accuracy"] < 1e-9 < summary["best_accuracy"]
    assert config["met_criterion"] is False
    assert "does NOT meet" in run.stdout, run


# -- --dry_run ----------------------------------------------------------------------------------
def test_dry_run_lists_units_and_float_layers(runs):
    run = runs["dry_run"]
    assert run.returncode == 0, run
    lines = run.stdout.splitlines()
    split = next(i for i, line in enumerate(lines) if "not units" in line)
    units = [line.split()[0] for line in lines[1:split]]
    assert units == UNITS, run
    floats = {line.split()[0]: line for line in lines[split + 1:]}
    assert set(floats) == {"pool", "flatten"}, run
    assert re.match(r"^\s*pool\s+MAX_POOL_2D\s+.*%\s+\S.*", floats["pool"]), run   # the TFLite op, a reason
    assert re.match(r"^\s*flatten\s+RESHAPE\s+.*%\s+\S.*", floats["flatten"]), run
    assert snapshot(run.cwd) == run.before  # wrote nothing (no out/, no tpe_workspace/)


# -- bad input: exit 2, one line on stderr, nothing written -----------------------------------
BAD_INPUT = {
    # case: words the error line must contain
    "missing_model": ["--model", "required"],
    "model_not_found": ["--model", "nope.keras", "does not exist"],
    "bogus_flag": ["max_trials", "zero"],
    "unknown_conf_key": ["unknown key tuning.exit_policy.max_trial ",
                         "did you mean tuning.exit_policy.max_trials"],
    "conf_missing": ["conf", "nope.yaml", "does not exist"],
    "calib_without_x": ["calibration data", "no array named x", "images"],
    "calib_wrong_shape": ["calibration data", "(4, 4, 1)", "(N, 8, 8, 1)"],
    "op_wise_unknown_unit": ["op_wise", "conv9", "matches no unit"],
    "existing_results": ["already holds results", "--overwrite"],
    "txt_model": ["model.txt", ".keras"],
    "yaml_syntax": ["yaml syntax error", "line 3"],
    "wrong_type": ["tuning.exit_policy.max_trials", "whole number", "ten"],
    "both_criteria": ["tuning.accuracy_criterion", "exactly one of relative or absolute"],
    "negative_timeout": ["tuning.exit_policy.timeout", ">= 0", "-5"],
    "zero_max_trials_flag": ["max_trials", "0"],
    "latency_func_without_function": ["--latency_func=bench.py", "FILE.py:FUNCTION or MODULE:FUNCTION"],
    "latency_func_file_missing": ["--latency_func file nope.py does not exist"],
    "latency_func_not_in_file": ["--latency_func", "bench.py has no function seconds"],
    "subclassed_model": ["subclassed", "Functional"],
    "no_quantizable_layer": ["nothing to tune"],
    "not_a_flatbuffer": ["m.tflite", "not a TFLite flatbuffer"],
    "eval_labels_mismatch": ["evaluation labels", "10 outputs"],
    "float_labels": ["evaluation data file", "eval.npz", "floats that are not whole numbers", "0..9"],
    "float_labels_column": ["eval.npz", "floats that are not whole numbers", "one-hot or soft labels"],
    "nan_calibration_inputs": ["calibration data file", "calib.npz", "inputs hold NaN or infinity", "sample 0"],
    "inf_evaluation_inputs": ["evaluation data file", "eval.npz", "inputs hold NaN or infinity"],
    "nan_evaluation_labels": ["eval.npz", "labels (y) hold NaN or infinity", "sample 7"],
    "npy_eval_data": ["--eval_data file", "eval.npy", ".npy file", "no labels", "numpy.savez"],
    "npz_not_a_zip": ["--calib_data file", "calib.npz", "not an .npz file", "zip archive"],
    "npy_test_data": ["--test_data file test.npy", ".npy file", "no labels"],
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_error_line(runs, case):
    run = runs[case]
    assert run.returncode == 2, run
    assert "Traceback" not in run.stderr, run
    errors = run.error_lines()
    assert len(errors) == 1, run
    assert errors[0].startswith("tf-tpe-tune: error: "), run
    for word in BAD_INPUT[case]:
        assert word in errors[0], f"{word!r} not in the error line\n{run}"
    assert "trial " not in run.stdout, run
    # nothing created or changed: no out/ (or, for existing_results, the old files untouched)
    assert snapshot(run.cwd) == run.before, run
    if case != "existing_results":
        assert not run.out.exists()


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_prints_nothing_but_the_error_line(runs, case):
    """Not even TensorFlow's native start-up log lines: the CLI silences them."""
    run = runs[case]
    assert run.returncode == 2, run
    assert len(run.stderr.splitlines()) == 1, run


def test_npy_calibration_inputs_and_one_hot_labels_are_accepted(runs):
    run = runs["npy_calib_one_hot_labels"]
    assert run.returncode == 0, run
    assert run.stderr == "", run
    summary = json.loads((run.out / "summary.json").read_text())
    assert summary["fp32_accuracy"] > 0.9  # one-hot labels scored as the classes they encode


WARNINGS = {
    # case: words the warning line must contain
    "warn_relative_criterion": ["tuning.accuracy_criterion.relative is 0.6", "60 %"],
    "warn_calibration_range": ["calib.npz", "calibration inputs range over 0..255", "eval.npz", "0..1"],
    "warn_baseline_at_chance": ["eval.npz", "no better than chance (0.1000)", "labels"],
    "warn_test_overlaps_eval": ["test data file", "shares 797 of its 797 samples", "evaluation data"],
}


@pytest.mark.parametrize("case", [
    "warn_relative_criterion",
    "warn_calibration_range",
    "warn_baseline_at_chance",
    "warn_test_overlaps_eval",
])
def test_warning_is_one_line_and_the_run_goes_on(runs, case):
    run = runs[case]
    assert run.returncode in (0, 1), run  # 1: such data may well miss the criterion
    assert (run.out / "best_model.tflite").exists(), run
    lines = run.error_lines()
    assert len(lines) == 1 and lines[0].startswith("tf-tpe-tune: warning: "), run
    for word in WARNINGS[case]:
        assert word in lines[0], f"{word!r} not in the warning line\n{run}"
