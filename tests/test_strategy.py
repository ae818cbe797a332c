"""The strategy's methods and their meanings, on a real CNN with real trials."""
import json

import numpy as np
import pytest

from conftest import fast_conf, trial_lines
from cost_latency import int8_pays
from tf_tpe_tuner import Conf, TFLiteModel, TpeTuneStrategy, tune
from tf_tpe_tuner.history import JsonlHistory, TrialRecord


def make(cnn, digits, tmp_path, dicts=None, latency_func=None, **tuning):
    (x, _), (xt, yt) = digits
    tuning.setdefault("workspace", {"path": str(tmp_path)})
    return TpeTuneStrategy(cnn, Conf(fast_conf(**tuning)), x[:64], eval_dataloader=(xt, yt), dicts=dicts,
                           latency_func=latency_func)


@pytest.fixture
def strategy(cnn, digits, tmp_path):
    return make(cnn, digits, tmp_path)


def test_loss_inside_the_criterion_rewards_speed(strategy):
    cfg = strategy.loss_function_config
    assert strategy.calculate_loss(0.0, 1.0, cfg) == pytest.approx(10.0)
    assert strategy.calculate_loss(0.0, 2.0, cfg) == pytest.approx(0.0, abs=1e-9)
    assert strategy.calculate_loss(0.0, 4.0, cfg) == pytest.approx(-10.0)
    assert strategy.calculate_loss(0.005, 2.0, cfg) == pytest.approx(0.0, abs=1e-9)


def test_loss_outside_the_criterion_pays_80_plus_10_per_percent(strategy):
    cfg = strategy.loss_function_config
    inside = strategy.calculate_loss(0.0, 2.0, cfg)
    at_2 = strategy.calculate_loss(0.02, 2.0, cfg)
    at_3 = strategy.calculate_loss(0.03, 2.0, cfg)
    assert at_2 - inside == pytest.approx(80 + 20, rel=0.02)
    assert at_3 - at_2 == pytest.approx(10, rel=0.05)  # exp(): about 10 per 1 %


def record(trial, acc, lat, config=None):
    return TrialRecord(trial=trial, config=config or {"conv1": "int8"}, accuracy=acc, latency_ms=lat)


def test_find_best_prefers_the_fastest_that_meets(strategy):
    from tf_tpe_tuner.strategy.base import Baseline
    strategy.baseline = Baseline(accuracy=0.90, latency_ms=1.0)
    history = [record(1, 0.899, 0.6), record(2, 0.80, 0.2), record(3, 0.895, 0.5), record(4, 0.88, 0.4)]
    best = strategy.add_loss_to_tuned_history_and_find_best(history)
    assert best.trial == 3  # 0.2 ms misses by far, 0.4 ms misses by 2.2 %
    assert [r.met_criterion for r in history] == [True, False, True, False]
    assert all(r.loss is not None for r in history)
    nobody = strategy.add_loss_to_tuned_history_and_find_best([record(1, 0.80, 0.2), record(2, 0.88, 0.4)])
    assert nobody.trial == 2  # lowest loss when none meets


def test_absolute_and_lower_is_better_criteria(cnn, digits, tmp_path):
    from tf_tpe_tuner.strategy.base import Baseline
    s = make(cnn, digits, tmp_path, accuracy_criterion={"absolute": 0.05, "higher_is_better": False})
    s.baseline = Baseline(accuracy=1.0, latency_ms=1.0)
    history = [record(1, 1.04, 0.5), record(2, 1.06, 0.4), record(3, 0.5, 0.9)]
    s.add_loss_to_tuned_history_and_find_best(history)
    assert [r.met_criterion for r in history] == [True, False, True]


def resumed(trial, acc, ratio, int8):
    return {"trial": trial, "config": {u: ("int8" if u in int8 else "fp32")
                                       for u in ("conv1", "conv2", "conv3", "fc1", "logits")},
            "accuracy": acc, "latency_ratio": ratio, "int8_units": list(int8)}


def test_stop_rules(cnn, digits, tmp_path):
    nothing = make(cnn, digits, tmp_path / "a")
    nothing.study.evaluate_baseline()
    assert not nothing.stop(0, 0) and not nothing.stop(None, 0)
    assert nothing.stop(None, nothing.conf.max_trials)
    # trial 1 meets the criterion at half the float latency
    base = nothing.baseline.accuracy
    s = make(cnn, digits, tmp_path / "b", dicts={"history": [resumed(1, base, 0.5, ["conv1"])]})
    s.study.evaluate_baseline()
    assert s.stop(0, 1)  # goal met with timeout 0
    assert not s.stop(3600, 1)  # with a timeout it keeps searching
    assert s.stop(1e-9, 1)  # timeout passed
    # a configuration that meets but is not faster than float does not end a timeout-0 run
    slow = make(cnn, digits, tmp_path / "c", dicts={"history": [resumed(1, base, 0.995, ["conv1"])]})
    slow.study.evaluate_baseline()
    assert not slow.stop(0, 1)


def test_runs_exactly_max_trials_and_writes_history(cnn, digits, tmp_path):
    s = make(cnn, digits, tmp_path, exit_policy={"max_trials": 4, "timeout": 3600})
    result = s.traverse()
    assert result.trials == 4
    lines = trial_lines(tmp_path / "history.jsonl")
    assert len(lines) == 4
    first = json.loads(lines[0])
    assert set(first["config"].values()) == {"int8"}  # trial 1 is all-int8
    assert first["int8_units"] == list(first["config"])
    keys = [frozenset(u for u, d in json.loads(l)["config"].items() if d == "int8") for l in lines]
    assert len(set(keys)) == 4  # no configuration evaluated twice
    assert result.tflite_model and result.met_criterion


def test_same_seed_same_configurations(cnn, digits, tmp_path):
    # Latency is measured, so it varies between runs; with latency_weight 0 the losses depend
    # on accuracy alone and TPE's model-based phase (after 3 initial points) is repeatable too.
    runs = []
    for i, seed in enumerate([7, 7, 8]):
        s = make(cnn, digits, tmp_path / str(i), random_seed=seed,
                 strategy={"latency_weight": 0.0, "tpe": {"n_initial_points": 3}},
                 exit_policy={"max_trials": 7, "timeout": 3600})
        runs.append([r.config for r in s.traverse().history])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_stops_at_first_hit_with_timeout_zero(cnn, digits, tmp_path):
    result = make(cnn, digits, tmp_path, exit_policy={"max_trials": 10, "timeout": 0},
                  latency_func=int8_pays).traverse()  # the first hit beats float on any CPU
    assert result.trials == 1 and result.met_criterion


def test_cached_proposals_do_not_count_and_space_end_stops(cnn, digits, tmp_path):
    conf = {"quantization": {"op_wise": {"conv[123]|fc1|logits:softmax": {"activation": {"dtype": ["fp32"]}}}}}
    (x, _), (xt, yt) = digits
    c = fast_conf(exit_policy={"max_trials": 10, "timeout": 3600}, workspace={"path": str(tmp_path)})
    c.update(conf)
    result = TpeTuneStrategy(cnn, Conf(c), x[:64], eval_dataloader=(xt, yt)).traverse()
    assert result.trials == 2  # only `logits` is searched: two configurations exist
    assert all(r.config["conv1"] == "fp32" for r in result.history)


def test_resume_from_dicts_continues(cnn, digits, tmp_path):
    first = make(cnn, digits, tmp_path / "a", exit_policy={"max_trials": 3, "timeout": 3600}).traverse()
    saved = [json.loads(l) for l in trial_lines(tmp_path / "a" / "history.jsonl")]
    s = make(cnn, digits, tmp_path / "b", dicts={"history": saved},
             exit_policy={"max_trials": 5, "timeout": 3600})
    result = s.traverse()
    assert result.trials == 5
    assert [r.trial for r in result.history] == [1, 2, 3, 4, 5]
    new_lines = trial_lines(tmp_path / "b" / "history.jsonl")
    assert [json.loads(l)["trial"] for l in new_lines] == [4, 5]  # nothing evaluated twice
    assert {frozenset(r.config.items()) for r in first.history} <= {frozenset(r.config.items()) for r in result.history}


def test_hooks_q_func_and_eval_func(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    seen = {"begin": [], "end": [], "q_func": 0, "eval": []}

    def eval_func(model):
        assert isinstance(model, TFLiteModel) and model.tflite_model[4:8] == b"TFL3"
        acc = float(np.mean(model(xt).argmax(-1) == yt))
        seen["eval"].append(acc)
        return acc

    def q_func(qmodel):
        seen["q_func"] += 1
        assert any("quant" in layer.name for layer in qmodel.layers)

    hooks = {"on_trial_begin": lambda n, cfg: seen["begin"].append(n),
             "on_trial_end": lambda rec: seen["end"].append(rec.trial)}
    conf = Conf(fast_conf(exit_policy={"max_trials": 2, "timeout": 3600}))
    result = tune(cnn, conf, x[:64], eval_func=eval_func, output_dir=str(tmp_path),
                  q_func=q_func, q_hooks=hooks, latency_func=int8_pays)  # a trial is handed back on any CPU
    assert seen["begin"] == seen["end"] == [1, 2]
    assert seen["q_func"] == 2
    assert len(seen["eval"]) == 3  # baseline + 2 trials
    assert result.accuracy in seen["eval"][1:]


def test_failed_trial_is_recorded_and_search_goes_on(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    calls = []

    def eval_func(model):
        calls.append(1)
        if len(calls) == 2:  # the first trial (after the baseline) breaks
            raise RuntimeError("boom")
        return float(np.mean(model(xt).argmax(-1) == yt))

    conf = Conf(fast_conf(exit_policy={"max_trials": 3, "timeout": 3600}))
    result = tune(cnn, conf, x[:64], eval_func=eval_func, output_dir=str(tmp_path),
                  latency_func=int8_pays)  # a trial that meets beats float on any CPU: it is the best
    statuses = [r.status for r in result.history]
    assert statuses == ["failed", "ok", "ok"]
    assert "boom" in result.history[0].error
    assert result.best_trial in (2, 3)


def test_history_drops_a_torn_last_line(tmp_path):
    store = JsonlHistory(str(tmp_path / "history.jsonl"))
    store.append(record(1, 0.9, 1.0))
    with open(store.path, "a") as f:
        f.write('{"trial": 2, "config": {"a"')
    assert [r.trial for r in store.load()] == [1]


def test_output_dir_with_results_is_refused(cnn, digits, tmp_path):
    from tf_tpe_tuner import TunerInputError
    (x, _), (xt, yt) = digits
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(TunerInputError, match="already holds results"):
        tune(cnn, fast_conf(), x[:64], eval_data=(xt, yt), output_dir=str(tmp_path))
    assert (tmp_path / "summary.json").read_text() == "{}"
