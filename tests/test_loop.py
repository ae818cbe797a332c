"""The loop's promises (issue 11): one criterion, a trial described once, a default that
searches past the first pass, stop reasons, resumable histories that never mix two runs, and the
tool's own failures kept apart from the user's. Real models, real trials."""
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import FAST_PERF, fast_conf, trial_lines
from cost_latency import int8_pays, int8_slower
from tf_tpe_tuner import Conf, TpeTuneStrategy, TunerInputError, tune
from tf_tpe_tuner.checks import TunerInputWarning
from tf_tpe_tuner.history import LATENCY_SIDE_BY_SIDE
from tf_tpe_tuner.study import Criterion, StopRule
from tf_tpe_tuner.study.loss import calculate_loss, loss_config

ENV_KEYS = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def cli(files, out, conf_path, *extra):
    import os
    env = {**os.environ, **ENV_KEYS}
    args = [sys.executable, "-m", "tf_tpe_tuner", f"--model={files / 'model.keras'}", f"--conf={conf_path}",
            f"--calib_data={files / 'calib.npz'}", f"--eval_data={files / 'eval.npz'}", f"--output_dir={out}",
            *extra]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)


def write_conf(path, **tuning):
    path.write_text(yaml.safe_dump({"evaluation": {"performance": FAST_PERF}, "tuning": tuning}))
    return path


def test_one_boundary_for_the_criterion():
    relative = Criterion("relative", 0.01, True)
    assert relative.drop(0.80, 0.792) == pytest.approx(0.01)
    assert relative.meets(0.80, 0.80 * (1 - 0.01))  # exactly at the tolerance: meets
    assert not relative.meets(0.80, 0.7919)
    assert relative.threshold(0.80) == pytest.approx(0.792)
    lower = Criterion("absolute", 0.05, False)
    assert lower.meets(1.0, 1.05) and not lower.meets(1.0, 1.0501) and lower.threshold(1.0) == 1.05
    # the loss scores a trial at the boundary as inside it, as the criterion does
    config = loss_config(0.01, 1.0, 1.0)
    at_boundary = relative.drop(0.80, 0.80 * (1 - 0.01))
    assert calculate_loss(at_boundary, 2.0, config) == pytest.approx(0.0, abs=1e-9)
    assert calculate_loss(at_boundary + 1e-6, 2.0, config) > 80


def test_the_stop_rule_gives_the_first_reason_that_holds():
    rule = StopRule(max_trials=10, timeout=60, patience=3)
    facts = dict(trials=4, seen=4, space_size=16, elapsed=5.0, goal=lambda: 2, since_improvement=1)
    assert rule.reason(**facts) == ""
    assert rule.reason(**{**facts, "since_improvement": 3}).startswith("patience")
    assert rule.reason(**{**facts, "since_improvement": None}) == ""  # nothing meets the criterion yet
    assert rule.reason(**{**facts, "elapsed": 60.0}).startswith("timeout (60 s)")
    assert rule.reason(**{**facts, "seen": 16, "elapsed": 60.0}).startswith("search space exhausted")
    assert rule.reason(**{**facts, "trials": 10, "seen": 16}).startswith("max_trials (10)")
    goal_first = StopRule(max_trials=10, timeout=0)
    assert goal_first.reason(**facts) == "goal met: trial 2 meets the criterion and beats float (timeout 0)"
    assert goal_first.reason(**{**facts, "goal": lambda: None}) == ""
    assert goal_first.reason(**facts, timeout=None) == ""  # the caller's timeout instead of the rule's


def test_the_trial_description_is_picklable_and_runs_alike(cnn, digits, tmp_path):
    """What a Ray worker receives: built there, it realizes and scores as the local runner does."""
    (x, _), (xt, yt) = digits
    strategy = TpeTuneStrategy(cnn, Conf(fast_conf(workspace={"path": str(tmp_path)})), x[:64],
                               eval_dataloader=(xt, yt))
    spec = pickle.loads(pickle.dumps(strategy.prepared.spec))
    assert getattr(spec.realizer.graph, "model", None) is None  # the default backend sends no Keras model
    config = {**strategy.all_int8_config(), "conv2": "fp32"}
    here, there = strategy.study.runner.run(config), spec.runner().run(config)
    assert here.ok and there.ok
    assert here.tflite_model == there.tflite_model and here.accuracy == there.accuracy
    assert set(there.int8_units) == set(config) - {"conv2"}


def test_a_default_run_searches_past_the_first_pass(cnn_files, tmp_path):
    """No exit policy in the conf: all-int8 meets 1 % on this CNN, and the run goes on (it used
    to stop there), until the patience rule or the space ends it; the reason is printed and kept."""
    conf = write_conf(tmp_path / "conf.yaml")
    run = cli(cnn_files, tmp_path / "out", conf)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["trials"] > 1
    assert summary["stop_reason"].startswith(("patience", "search space exhausted"))
    assert f"stopped: {summary['stop_reason']}" in run.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["stop_reason"] == summary["stop_reason"]
    for line in trial_lines(tmp_path / "out" / "history.jsonl"):
        record = json.loads(line)
        assert record["latency_ratio"] > 0 and record["latency_source"] == LATENCY_SIDE_BY_SIDE
    # a resume of the finished run has nothing left to do, and says so
    again = cli(cnn_files, tmp_path / "out", conf, "--resume")
    assert again.returncode == 0, again.stderr
    assert "nothing left to do" in again.stdout
    assert len(trial_lines(tmp_path / "out" / "history.jsonl")) == summary["trials"]


def test_timeout_zero_stops_at_the_first_configuration_that_beats_float(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    result = tune(cnn, fast_conf(exit_policy={"timeout": 0}), x[:64], eval_data=(xt, yt),
                  output_dir=str(tmp_path), latency_func=int8_pays)  # all-int8 beats float on any CPU
    assert result.trials == 1 and result.handed_back == "quantized"
    assert result.stop_reason.startswith("goal met")


def test_the_float_model_handed_back_is_described_whole_even_where_op_wise_pins_int8(cnn, digits, tmp_path):
    """best_config.yaml rebuilds what best_model.tflite is: with every configuration slower than
    float, the float model itself, conv1 included, though the conf pins conv1 to int8; the run
    says so (a warning, and the one-line outcome)."""
    from tf_tpe_tuner.model_compare import same_model
    from tf_tpe_tuner.rebuild import rebuild

    (x, _), (xt, yt) = digits
    conf = {**fast_conf(exit_policy={"max_trials": 2}),
            "quantization": {"op_wise": {"conv1": {"activation": {"dtype": ["int8"]}}}}}
    with pytest.warns(TunerInputWarning, match=r"op_wise pins conv1 to int8, .* they run float"):
        result = tune(cnn, conf, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path), report=True,
                      latency_func=int8_slower)
    assert "op_wise pins to int8 run float in it: conv1." in (tmp_path / "report.md").read_text()
    assert result.handed_back == "float" and all(r.config["conv1"] == "int8" for r in result.history)
    assert result.pinned_int8_run_float == ["conv1"]
    assert result.describe().endswith("units op_wise pins to int8 run float in it: conv1")
    config = yaml.safe_load((tmp_path / "best_config.yaml").read_text())
    assert set(config["units"].values()) == {"fp32"} and config["int8_units"] == []
    rebuilt = rebuild(cnn, str(tmp_path / "best_config.yaml"), x[:64])
    assert not rebuilt.int8_units
    assert same_model(rebuilt.tflite_model, (tmp_path / "best_model.tflite").read_bytes())


def test_resume_is_scored_from_the_recorded_ratios(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    first = tune(cnn, fast_conf(exit_policy={"max_trials": 2}), x[:64], eval_data=(xt, yt),
                 output_dir=str(tmp_path), report=False)
    ratios = {r.trial: r.latency_ratio for r in first.history}
    resumed = tune(cnn, fast_conf(exit_policy={"max_trials": 3}), x[:64], eval_data=(xt, yt),
                   output_dir=str(tmp_path), resume=True, report=False)
    for record in resumed.history[:2]:
        assert record.latency_ratio == ratios[record.trial]
        assert record.latency_ms == pytest.approx(record.latency_ratio * resumed.baseline.latency_ms)


@pytest.mark.parametrize("change,named", [
    ({"tuning": {"accuracy_criterion": {"relative": 0.02}}}, "criterion"),
    ({"quantization": {"calibration": {"sampling_size": 32}}}, "calibration"),
    ({"quantization": {"op_wise": {"conv1": {"activation": {"dtype": ["fp32"]}}}}}, "op_wise"),
    ({"evaluation": {"accuracy": {"metric": {"topk": 2}}}}, "metric"),
])
def test_resume_never_mixes_two_runs(cnn, digits, tmp_path, change, named):
    (x, _), (xt, yt) = digits
    tune(cnn, fast_conf(exit_policy={"max_trials": 1}), x[:64], eval_data=(xt, yt), output_dir=str(tmp_path),
         report=False)
    before = (tmp_path / "history.jsonl").read_bytes()
    conf = fast_conf(exit_policy={"max_trials": 2})
    for section, values in change.items():
        conf.setdefault(section, {}).update(values)
    with pytest.raises(TunerInputError, match=rf"cannot resume .*{named}"):
        tune(cnn, conf, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path), resume=True)
    assert (tmp_path / "history.jsonl").read_bytes() == before


def test_resume_into_a_directory_holding_another_runs_results_is_refused(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    for name in ("a", "b"):
        tune(cnn, fast_conf(exit_policy={"max_trials": 1}), x[:64], eval_data=(xt, yt),
             output_dir=str(tmp_path / name), report=False)
    summary = (tmp_path / "b" / "summary.json").read_text()
    with pytest.raises(TunerInputError, match="already holds results"):
        tune(cnn, fast_conf(exit_policy={"max_trials": 2}), x[:64], eval_data=(xt, yt),
             output_dir=str(tmp_path / "b"), resume=str(tmp_path / "a"))
    assert (tmp_path / "b" / "summary.json").read_text() == summary


def test_a_user_function_that_always_fails_is_failed_trials(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    calls = []

    def eval_func(model):
        calls.append(1)
        if len(calls) > 1:  # the float baseline works, every trial breaks
            raise RuntimeError("my metric broke")
        return float(np.mean(model(xt).argmax(-1) == yt))

    result = tune(cnn, fast_conf(exit_policy={"max_trials": 4}), x[:64], eval_func=eval_func,
                  output_dir=str(tmp_path), report=False)
    assert result.trials == 4 and result.accuracy is None and result.handed_back is None
    assert all(r.status == "failed" and r.error_origin == "user" and "my metric broke" in r.error
               for r in result.history)
