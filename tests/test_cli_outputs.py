"""The command line on a model with two outputs and an int32 input (tests/multi_output_models.py):
tuning a tf_keras `.keras` file with labels named after its outputs, tuning a converter-made
`.tflite` with no labels at all (fidelity metrics against the float model), and the refusals
(exit 2, one line, nothing written). Each run is a subprocess (a TensorFlow import each): they are
started together by the module-scoped `runs` fixture, as in test_cli.py; hence `slow`."""
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from multi_output_models import intensity, inputs_of, to_tflite, train_two_headed
from test_cli import run_cli, snapshot, write_conf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(digits, tmp_path_factory):
    (x, _), (xt, yt) = digits
    model = train_two_headed(digits)
    root = tmp_path_factory.mktemp("two_headed")
    model.save(root / "model.keras")
    (root / "model.tflite").write_bytes(to_tflite(model))
    np.savez(root / "calib.npz", **inputs_of(x[:100]))
    np.savez(root / "eval.npz", **inputs_of(xt), digit=yt, intensity=intensity(xt))
    ink = inputs_of(xt)  # the int32 input handed over as float64 whole numbers: cast, not refused
    np.savez(root / "inputs.npz", image=xt, ink=ink["ink"].astype("float64"))
    return root


def build_cases(files: Path, root: Path) -> dict:
    keras_model, tflite = files / "model.keras", files / "model.tflite"
    cases = {}

    def case(name, *args, model=keras_model, accuracy=None, criterion=None, evald=None, eval_arrays=None):
        cwd = root / name
        cwd.mkdir()
        extra = {"evaluation": {"accuracy": accuracy or {}}}
        if criterion:
            extra["tuning"] = {"accuracy_criterion": criterion}
        conf = write_conf(cwd / "conf.yaml", extra)
        if eval_arrays is not None:
            np.savez(cwd / "eval.npz", **eval_arrays(dict(np.load(files / "eval.npz"))))
            evald = cwd / "eval.npz"
        cases[name] = (cwd, [f"--model={model}", f"--conf={conf}", f"--calib_data={files / 'calib.npz'}",
                             f"--eval_data={evald or files / 'eval.npz'}", "--output_dir=out", *args])

    # labels named after the outputs; intensity scored by its MAE, digit by top-1 (the default)
    case("keras_labels", "--max_trials=3", accuracy={"outputs": {"intensity": {
        "metric": "MAE", "accuracy_criterion": {"absolute": 0.02}}}})
    # no labels: agreement for every output, NRMSE for output 1 (by position: its TFLite name is Identity_1)
    case("tflite_fidelity", "--max_trials=3", model=tflite, evald=files / "inputs.npz",
         accuracy={"metric": "agreement", "outputs": {1: {"metric": "NRMSE", "accuracy_criterion": {"absolute": 0.3}}}},
         criterion={"relative": 0.02})
    cwd = root / "dry_run"
    cwd.mkdir()
    cases["dry_run"] = (cwd, [f"--model={tflite}", "--dry_run"])

    case("label_for_no_output", eval_arrays=lambda a: {**a, "digits": a.pop("digit")})
    case("label_shape", eval_arrays=lambda a: {**a, "intensity": np.repeat(a["intensity"], 2, axis=1)})
    case("y_for_two_outputs", eval_arrays=lambda a: {"image": a["image"], "ink": a["ink"], "y": a["digit"]})
    case("metric_for_no_output", accuracy={"outputs": {"score": {"metric": "MSE"}}})
    case("relative_on_zero_error", model=tflite, evald=files / "inputs.npz", accuracy={"metric": "NRMSE"})
    case("topk_without_labels", model=tflite, evald=files / "inputs.npz")
    return cases


@pytest.fixture(scope="module")
def runs(files, cnn_files, tmp_path_factory):
    cases = build_cases(files, tmp_path_factory.mktemp("cli_outputs"))
    # one output, no labels: a .npy of inputs is evaluation data when no metric is topk
    cwd = cases["keras_labels"][0].parent / "npy_fidelity"
    cwd.mkdir()
    np.save(cwd / "eval.npy", np.load(cnn_files / "eval.npz")["x"])
    conf = write_conf(cwd / "conf.yaml", {"evaluation": {"accuracy": {"metric": "agreement"}}})
    cases["npy_fidelity"] = (cwd, [f"--model={cnn_files / 'model.keras'}", f"--conf={conf}", "--max_trials=1",
                                   f"--calib_data={cnn_files / 'calib.npz'}", "--eval_data=eval.npy",
                                   "--output_dir=out"])
    workers = max(2, min(4, (os.cpu_count() or 2) + 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(run_cli, cwd, args) for name, (cwd, args) in cases.items()}
        return {name: f.result() for name, f in futures.items()}


def results(out: Path):
    lines = (out / "history.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines[1:]]  # the first line describes the run
    return history, json.loads((out / "summary.json").read_text())


def test_labels_named_after_the_outputs(runs, digits):
    run = runs["keras_labels"]
    assert run.returncode == 0, run
    assert run.stderr == "", run
    history, summary = results(run.out)
    rows = {r["output"]: r for r in summary["outputs"]}
    assert rows["digit"]["metric"] == "top1" and rows["digit"]["criterion"] == "relative 1 % (higher is better)"
    assert rows["intensity"]["metric"] == "MAE" and rows["intensity"]["criterion"] == "absolute 0.02 (lower is better)"
    assert summary["met_criterion"] and all(r["meets"] for r in rows.values())
    assert summary["fp32_accuracy"] == 0.0  # the worst share of tolerance: 0 for the float model itself
    assert len(history) == 3 and all(set(r["outputs"]) == {"digit", "intensity"} for r in history)
    best = history[summary["best_trial"] - 1] if summary["best_trial"] else None
    if best is not None:
        assert {k: r["best"] for k, r in rows.items()} == best["outputs"]
    assert f"output digit: top1 {rows['digit']['best']:.6g}" in run.stdout, run
    assert "output intensity: MAE" in run.stdout and "## Outputs" in (run.out / "report.md").read_text()


def test_a_tflite_file_without_labels_is_compared_with_the_float_model(runs):
    from ai_edge_litert.interpreter import Interpreter

    run = runs["tflite_fidelity"]
    assert run.returncode == 0, run
    history, summary = results(run.out)
    rows = {r["output"]: r for r in summary["outputs"]}
    assert rows["Identity"]["metric"] == "agreement" and rows["Identity"]["fp32"] == 1.0
    assert rows["Identity_1"]["metric"] == "NRMSE" and rows["Identity_1"]["fp32"] == 0.0
    assert summary["met_criterion"] and rows["Identity_1"]["best"] <= 0.3
    assert summary["handed_back"] == "float" or rows["Identity_1"]["best"] > 0  # int8 is not exact
    inputs = Interpreter(model_path=str(run.out / "best_model.tflite")).get_input_details()
    assert [(d["name"], d["dtype"]) for d in inputs] == [("image", np.float32), ("ink", np.int32)]


def test_dry_run_lists_the_outputs(runs):
    run = runs["dry_run"]
    assert run.returncode == 0, run
    assert "outputs: 0 Identity (10,), 1 Identity_1 (1,)" in run.stdout, run


def test_a_npy_of_inputs_is_evaluation_data_against_the_float_model(runs):
    run = runs["npy_fidelity"]
    assert run.returncode == 0, run
    summary = json.loads((run.out / "summary.json").read_text())
    assert summary["fp32_accuracy"] == 1.0 and summary["outputs"] is None


BAD_INPUT = {
    "label_for_no_output": ["eval.npz has an array named 'digits', which names no input or output",
                            "outputs: digit, intensity", "y_0..y_1"],
    "label_shape": ["eval.npz: the labels of output intensity have shape (2,), the output is (1,)"],
    "y_for_two_outputs": ["eval.npz has one label array (y)", "2 outputs (digit, intensity)"],
    "metric_for_no_output": ["conf: evaluation.accuracy.outputs.score names no output of the model",
                             "digit, intensity"],
    "relative_on_zero_error": ["relative criterion cannot work for output Identity's NRMSE", "exactly 0",
                               "float model's own outputs", "absolute", "agreement"],
    "topk_without_labels": ["inputs.npz has no labels (Identity or y_0) for output Identity", "agreement"],
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_error_line(runs, case):
    run = runs[case]
    assert run.returncode == 2, run
    lines = run.error_lines()
    assert len(lines) == 1 and lines[0].startswith("tf-tpe-tune: error: "), run
    for word in BAD_INPUT[case]:
        assert word in lines[0], f"{word!r} not in the error line\n{run}"
    assert snapshot(run.cwd) == run.before and not run.out.exists(), run
