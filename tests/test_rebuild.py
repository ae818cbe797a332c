"""Reproducible export: best_config.yaml + the saved model + the calibration data give the tuned
TFLite model again (same ops, weights and quantization, same accuracy), with export options."""
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import yaml

from conftest import fast_conf
from tf_tpe_tuner import TunerInputError, tune
from tf_tpe_tuner.model_io import load_keras_model
from tf_tpe_tuner.realize import AnnotationRealizer
from tf_tpe_tuner.best_config import load_best_config
from tf_tpe_tuner.model_compare import op_list, same_model
from tf_tpe_tuner.rebuild import check_accuracy, evaluate_accuracy, rebuild
from tf_tpe_tuner.tflite_edit import QuantizedIOModel
from tf_tpe_tuner.realizers import realizer_class

TF_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWEF]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] .*"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.)$")


@pytest.fixture(scope="module")
def tuned(cnn, cnn_files, tmp_path_factory):
    """A real tuning of the CNN (3 trials); the export side only gets the files."""
    out = tmp_path_factory.mktemp("tuned")
    conf = fast_conf(exit_policy={"max_trials": 3, "timeout": 3600})
    result = tune(cnn, conf, str(cnn_files / "calib.npz"), eval_data=str(cnn_files / "eval.npz"),
                  output_dir=str(out))
    return out, result


@pytest.fixture(scope="module")
def saved_model(cnn_files):
    return load_keras_model(str(cnn_files / "model.keras"))


def config_for_trial(out, result, trial):
    """A best_config.yaml for another trial of the run, with that trial's recorded numbers."""
    config = yaml.safe_load((out / "best_config.yaml").read_text())
    record = next(r for r in result.history if r.trial == trial)
    config.update(units=dict(record.config), int8_units=list(record.int8_units),
                  accuracy=record.accuracy, trial=trial)
    return config


def test_rebuild_gives_the_tuned_model_again(tuned, saved_model, cnn_files):
    out, result = tuned
    tuned_bytes = (out / "best_model.tflite").read_bytes()
    exported = rebuild(saved_model, str(out / "best_config.yaml"), str(cnn_files / "calib.npz"))
    assert exported.int8_units == result.int8_units and exported.int8_units_match
    assert op_list(exported.tflite_model) == op_list(tuned_bytes)
    assert same_model(exported.tflite_model, tuned_bytes)  # ops, weights, scales: names aside
    assert check_accuracy(exported, str(cnn_files / "eval.npz"))  # tolerance 0
    assert exported.accuracy == result.accuracy
    assert exported.input_names == ["image"]


def test_every_trial_of_the_run_is_reproduced(tuned, saved_model, digits):
    out, result = tuned
    (x, _), (xt, yt) = digits
    for record in result.history:
        exported = rebuild(saved_model, config_for_trial(out, result, record.trial), x[:100])
        assert exported.int8_units == record.int8_units
        assert evaluate_accuracy(exported.tflite_model, (xt, yt)) == record.accuracy


def test_int8_io_batch_one_and_keras_names(tuned, saved_model, digits):
    from ai_edge_litert.interpreter import Interpreter

    out, result = tuned
    (x, _), (xt, yt) = digits
    config = config_for_trial(out, result, 1)  # the all-int8 configuration
    assert set(config["int8_units"]) == set(config["units"])
    plain = rebuild(saved_model, config, x[:100])
    exported = rebuild(saved_model, config, x[:100], input_type="int8", output_type="int8", batch=1,
                       keras_io_names=True)
    ops = op_list(exported.tflite_model)
    assert ops == [op for op in op_list(plain.tflite_model) if op[0] not in ("QUANTIZE", "DEQUANTIZE")]
    assert all(dtype == "INT8" for _, dtype in ops)
    interpreter = Interpreter(model_content=exported.tflite_model)
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.int8 and outp["dtype"] == np.int8
    assert list(inp["shape_signature"]) == [1, 8, 8, 1]
    assert inp["quantization"][0] > 0
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": [saved_model.input_names[0]], "outputs": saved_model.output_names}}
    runner = interpreter.get_signature_runner()
    sample = QuantizedIOModel(exported.tflite_model)
    q = np.clip(np.round(xt[:1] / inp["quantization"][0]) + inp["quantization"][1], -128, 127).astype(np.int8)
    assert runner(image=q)["logits"].shape == (1, 10)
    assert sample(xt[:3]).shape == (3, 10)  # a batch-1 model runs sample by sample
    assert check_accuracy(exported, (xt, yt))  # the accuracy recorded for trial 1, exactly
    assert exported.accuracy == config["accuracy"]


def test_options_that_cannot_apply_are_refused(tuned, saved_model, digits):
    out, result = tuned
    (x, _), _ = digits
    config = config_for_trial(out, result, 1)
    config["units"] = {**config["units"], "conv1": "fp32"}
    with pytest.raises(TunerInputError, match="input_type int8: model input 'image' is read by a float op"):
        rebuild(saved_model, config, x[:100], input_type="int8")
    config["units"] = {**config["units"], "conv1": "int8", "logits": "fp32", "logits:softmax": "fp32"}
    with pytest.raises(TunerInputError, match="output_type int8"):
        rebuild(saved_model, config, x[:100], output_type="int8")
    with pytest.raises(TunerInputError, match="batch must be 1 or dynamic"):
        rebuild(saved_model, config, x[:100], batch=4)


def test_config_and_data_that_do_not_fit_are_refused(tuned, saved_model, residual, digits, tmp_path):
    out, _ = tuned
    (x, _), _ = digits
    with pytest.raises(TunerInputError, match="does not describe this model"):
        rebuild(residual, str(out / "best_config.yaml"), x[:100])
    with pytest.raises(TunerInputError, match="calibrated on 100"):
        rebuild(saved_model, str(out / "best_config.yaml"), x[:50])
    with pytest.raises(TunerInputError, match="samples of shape"):
        rebuild(saved_model, str(out / "best_config.yaml"), x[:100, :4])
    bad = tmp_path / "bad.yaml"
    bad.write_text("units: [conv1]\n")
    with pytest.raises(TunerInputError, match="no `units` mapping"):
        load_best_config(str(bad))
    with pytest.raises(TunerInputError, match="does not exist"):
        load_best_config(str(tmp_path / "missing.yaml"))


def test_the_realizer_is_picked_by_backend():
    from tf_tpe_tuner.realize_denylist import DenylistRealizer
    assert realizer_class("annotate") is AnnotationRealizer
    assert realizer_class("denylist") is DenylistRealizer
    with pytest.raises(TunerInputError, match="'nope' does not exist.*denylist, annotate"):
        realizer_class("nope")


# -- the command line -----------------------------------------------------------------------------
def export_cli(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "tf_tpe_tuner.export_cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    errors = [line for line in proc.stderr.splitlines() if line.strip() and not TF_NOISE.match(line)]
    return proc, errors


@pytest.fixture(scope="module")
def cli_runs(tuned, cnn_files, tmp_path_factory):
    out, result = tuned
    root = tmp_path_factory.mktemp("export_cli")
    tampered = yaml.safe_load((out / "best_config.yaml").read_text())
    tampered["accuracy"] = 0.5
    (root / "tampered.yaml").write_text(yaml.safe_dump(tampered))
    other = dict(tampered, units={"stem": "int8", "head": "fp32"})
    (root / "other.yaml").write_text(yaml.safe_dump(other))
    common = [f"--model={cnn_files / 'model.keras'}", f"--calib_data={cnn_files / 'calib.npz'}"]
    cases = {
        "ok": common + [f"--config={out / 'best_config.yaml'}", f"--output={root / 'ok.tflite'}",
                        f"--eval_data={cnn_files / 'eval.npz'}"],
        "check_fails": common + [f"--config={root / 'tampered.yaml'}", f"--output={root / 'bad.tflite'}",
                                 f"--eval_data={cnn_files / 'eval.npz'}"],
        "other_model": common + [f"--config={root / 'other.yaml'}", f"--output={root / 'x.tflite'}"],
        "no_output": common + [f"--config={out / 'best_config.yaml'}"],
        "bad_batch": common + [f"--config={out / 'best_config.yaml'}", "--output=x.tflite", "--batch=8"],
    }
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(export_cli, *args, cwd=root) for name, args in cases.items()}
        return root, {name: f.result() for name, f in futures.items()}


@pytest.mark.slow
def test_cli_rebuilds_and_checks(cli_runs, tuned):
    root, runs = cli_runs
    out, result = tuned
    proc, errors = runs["ok"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not errors, errors
    assert "check ok: accuracy" in proc.stdout
    assert same_model((root / "ok.tflite").read_bytes(), (out / "best_model.tflite").read_bytes())


@pytest.mark.slow
def test_cli_failed_check_exits_1_and_still_writes(cli_runs):
    root, runs = cli_runs
    proc, errors = runs["check_fails"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert errors and "check failed: accuracy" in errors[0] and "recorded 0.500000" in errors[0]
    assert (root / "bad.tflite").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case, message", [
    ("other_model", "best_config.yaml does not describe this model"),
    ("no_output", "--output is required"),
    ("bad_batch", "flag --batch=8"),
])
def test_cli_bad_input_exits_2_with_one_line(cli_runs, case, message):
    _, runs = cli_runs
    proc, errors = runs[case]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(errors) == 1 and errors[0].startswith("tf-tpe-export: error: ") and message in errors[0], errors
    assert "Traceback" not in proc.stderr
