"""Promises at their edges (issue 14): timeouts that bound the sensitivity too, histories that are
never truncated in the middle and never written by two runs, and smaller holes: fail-closed model
checks, negative seeds, shared layers, q_func exports, exact best_config, eval_data with
eval_func."""
import json
import os
import subprocess
import sys
import time

import h5py
import pytest
import yaml

from conftest import fast_conf
from cost_latency import int8_pays
from tf_tpe_tuner import Conf, TunerInputError, tune, walk
from tf_tpe_tuner._tf import keras
from tf_tpe_tuner.errors import ModelNotSupportedError
from tf_tpe_tuner.history import JsonlHistory
from tf_tpe_tuner.model_io import load_keras_model
from tf_tpe_tuner.rebuild import rebuild

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_the_timeout_bounds_the_sensitivity_measurement_too(cnn, digits, tmp_path, monkeypatch):
    """The clock passes the timeout while the per-unit sensitivity is measured: it stops there,
    no trial starts, and the report shows what was measured instead of measuring it again."""
    from tf_tpe_tuner import sensitivity
    from tf_tpe_tuner.realize_tflite import TfliteRealizer
    from tf_tpe_tuner.study import study

    jump = {"s": 0.0}
    monkeypatch.setattr(study, "monotonic", lambda: time.monotonic() + jump["s"])
    quantize, measure = TfliteRealizer.quantize, sensitivity.unit_sensitivity
    calls, measuring = [], []

    def counting(self, units):
        if measuring:  # the latency model's designs, measured before, do not count
            calls.append(1)
        if len(calls) == 2:  # the second unit's model: time runs out
            jump["s"] = 3600.0
        return quantize(self, units)

    def marked(*args, **kwargs):
        measuring.append(1)
        return measure(*args, **kwargs)
    monkeypatch.setattr(TfliteRealizer, "quantize", counting)
    monkeypatch.setattr(sensitivity, "unit_sensitivity", marked)
    (x, _), (xt, yt) = digits
    result = tune(cnn, fast_conf(exit_policy={"timeout": 60}), x[:64], eval_data=(xt, yt),
                  output_dir=str(tmp_path))
    assert result.stop_reason.startswith("timeout") and result.trials == 0
    assert not result.sensitivity.complete and len(result.sensitivity.scores) == 2
    assert len(calls) == 2  # the report measured nothing more
    report = json.loads((tmp_path / "report.json").read_text())
    assert sum(1 for row in report["units"] if row.get("sensitivity")) == 2


def test_a_corrupted_line_in_the_middle_is_an_error_and_the_file_stays(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    tune(cnn, fast_conf(exit_policy={"max_trials": 4}), x[:64], eval_data=(xt, yt), output_dir=str(tmp_path),
         report=False)
    path = tmp_path / "history.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2][:40] + "\n"  # trial 2 (line 3, after the run line) cut short
    path.write_text("".join(lines))
    before = path.read_bytes()
    with pytest.raises(TunerInputError, match=r"history\.jsonl, line 3, is not a trial record"):
        tune(cnn, fast_conf(exit_policy={"max_trials": 6}), x[:64], eval_data=(xt, yt),
             output_dir=str(tmp_path), resume=True)
    assert path.read_bytes() == before
    # a torn last line (no newline: killed mid-write) is still cut off, and the run goes on
    path.write_text("".join(lines[:2] + lines[3:]) + '{"trial": 9, "conf')
    result = tune(cnn, fast_conf(exit_policy={"max_trials": 4}), x[:64], eval_data=(xt, yt),
                  output_dir=str(tmp_path), resume=True, report=False, overwrite=False)
    assert [r.trial for r in result.history][:3] == [1, 3, 4] and result.trials == 4


def test_a_second_run_on_the_same_history_is_refused(cnn_files, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "tf_tpe_tuner", f"--model={cnn_files / 'model.keras'}",
            f"--calib_data={cnn_files / 'calib.npz'}", f"--eval_data={cnn_files / 'eval.npz'}",
            f"--output_dir={out}", "--max_trials=1"]
    with JsonlHistory(str(out / "history.jsonl")).locked():  # as a run in this process would
        refused = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2, refused.stderr
    assert "being written by another tuning run (pid" in refused.stderr
    assert not (out / "history.jsonl").exists() and not (out / "summary.json").exists()
    assert not (out / "history.jsonl.lock").exists()  # the holder removed it when done


def test_a_negative_seed_is_bad_input():
    with pytest.raises(TunerInputError, match=r"tuning.random_seed must be a whole number >= 0, got -3"):
        Conf({"tuning": {"random_seed": -3}})


def test_a_shared_layer_is_refused_with_a_clear_message():
    inputs = keras.Input((8,))
    dense = keras.layers.Dense(8, name="twice")
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(dense(dense(inputs))))
    with pytest.raises(ModelNotSupportedError, match="layer 'twice' is called more than once"):
        walk(model)


def test_a_q_func_run_cannot_be_rebuilt_from_yaml_alone(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    calls = []
    result = tune(cnn, fast_conf(exit_policy={"max_trials": 1}), x[:64], eval_data=(xt, yt),
                  output_dir=str(tmp_path), q_func=lambda qmodel: calls.append(1), report=False,
                  latency_func=int8_pays)  # a quantized model is handed back on any CPU
    config = yaml.safe_load((tmp_path / "best_config.yaml").read_text())
    assert config["realization"]["q_func"] is True and config["realization"]["backend"] == "annotate"
    assert config["realization"]["fp32_guard"] == "fp16_round_trip"
    with pytest.raises(TunerInputError, match="tuned with a q_func"):
        rebuild(cnn, str(tmp_path / "best_config.yaml"), x[:64])
    exported = rebuild(cnn, str(tmp_path / "best_config.yaml"), x[:64], q_func=lambda qmodel: calls.append(1))
    assert set(exported.int8_units) == set(result.int8_units) and len(calls) == 2


def test_best_config_records_the_realization_that_was_used(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    tune(cnn, fast_conf(exit_policy={"max_trials": 1}), x[:64], eval_data=(xt, yt), output_dir=str(tmp_path),
         report=False)
    realization = yaml.safe_load((tmp_path / "best_config.yaml").read_text())["realization"]
    assert realization["backend"] == "denylist" and "fp32_guard" not in realization
    assert realization["q_func"] is False


def test_eval_data_and_eval_func_together_are_bad_input(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    with pytest.raises(TunerInputError, match="not both"):
        tune(cnn, fast_conf(), x[:64], eval_data=(xt, yt), eval_func=lambda m: 1.0, output_dir=str(tmp_path))
    assert not os.listdir(tmp_path)


def _lambda_model():
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(h)))


def test_a_keras_savedmodel_with_a_lambda_is_found_by_parsing_its_config(tmp_path):
    _lambda_model().save(tmp_path / "saved", save_format="tf")
    with pytest.raises(TunerInputError, match="contains a Lambda layer"):
        load_keras_model(str(tmp_path / "saved"))


@pytest.mark.parametrize("fmt", ["h5", "keras", "savedmodel"])
def test_a_model_whose_config_cannot_be_read_is_refused_unless_allowed(cnn, tmp_path, fmt):
    """Fail closed: without a readable config there is no knowing whether code is inside."""
    if fmt == "h5":
        path = tmp_path / "m.h5"
        cnn.save(path)
        with h5py.File(path, "a") as f:
            del f.attrs["model_config"]
    elif fmt == "keras":
        import zipfile
        cnn.save(tmp_path / "good.keras")
        path = tmp_path / "m.keras"
        with zipfile.ZipFile(tmp_path / "good.keras") as src, zipfile.ZipFile(path, "w") as dst:
            for item in src.infolist():
                data = src.read(item.filename)
                dst.writestr(item, b"{not json" if item.filename == "config.json" else data)
    else:
        path = tmp_path / "saved"
        cnn.save(path, save_format="tf")
        (path / "keras_metadata.pb").write_bytes(b"\x00garbage")
    with pytest.raises(TunerInputError, match="cannot be read.*--allow_unsafe_model"):
        load_keras_model(str(path))
    with pytest.raises(TunerInputError) as allowed:  # allowed: the check lets the loader try
        load_keras_model(str(path), allow_unsafe=True)
    assert "could not be loaded as a tf_keras model" in str(allowed.value)
