import pytest

from tf_tpe_tuner import Conf, TunerInputError


def test_defaults_follow_neural_compressor():
    conf = Conf(None)
    assert conf.get("tuning.strategy.name") == "tpe"
    assert conf.criterion == ("relative", 0.01)
    assert conf.higher_is_better is True
    assert conf.max_trials == 100 and conf.timeout is None  # no time limit
    assert conf.patience == 8  # no exit policy set: the run stops by patience
    assert conf.seed == 1978
    assert conf.get("quantization.calibration.sampling_size") == 100
    assert conf.workspace == "./tpe_workspace"
    assert conf.metric_name == "topk" and conf.metric_topk == 1


@pytest.mark.parametrize("policy,patience", [
    ({"max_trials": 20}, None), ({"timeout": 0}, None), ({"timeout": 60}, None),
    ({"patience": 3}, 3), ({"max_trials": 20, "patience": 4}, 4)])
def test_an_exit_policy_you_set_is_yours(policy, patience):
    conf = Conf({"tuning": {"exit_policy": policy}})
    assert conf.patience == patience
    assert conf.max_trials == policy.get("max_trials", 100)
    assert conf.timeout == policy.get("timeout")


def test_yaml_file_is_read(tmp_path):
    path = tmp_path / "conf.yaml"
    path.write_text("tuning:\n  exit_policy:\n    max_trials: 7\n  accuracy_criterion:\n    absolute: 0.02\n")
    conf = Conf(str(path))
    assert conf.max_trials == 7
    assert conf.criterion == ("absolute", 0.02)


@pytest.mark.parametrize("raw, words", [
    ({"tuning": {"exit_policy": {"max_trials": "ten"}}}, ["tuning.exit_policy.max_trials", "whole number"]),
    ({"tuning": {"exit_policy": {"max_trials": 0}}}, ["max_trials", ">= 1"]),
    ({"tuning": {"exit_policy": {"timeout": -1}}}, ["timeout", ">= 0"]),
    ({"tuning": {"exit_polcy": {}}}, ["unknown key tuning.exit_polcy", "tuning.exit_policy"]),
    ({"tuning": {"accuracy_criterion": {"relative": 0.01, "absolute": 0.1}}}, ["exactly one"]),
    ({"tuning": {"strategy": {"name": "bayes"}}}, ["tuning.strategy.name", "tpe"]),
    ({"evaluation": {"accuracy": {"metric": {"F1": {}}}}}, ["metric", "topk"]),
    ({"quantization": {"op_wise": {"conv1": {"activation": {"dtype": ["bf16"]}}}}}, ["op_wise.conv1", "fp32"]),
])
def test_mistakes_name_the_key(raw, words):
    with pytest.raises(TunerInputError) as err:
        Conf(raw)
    for word in words:
        assert word in str(err.value)


def test_yaml_syntax_error_gives_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("tuning:\n  exit_policy:\n    max_trials: [1\n")
    with pytest.raises(TunerInputError, match="line"):
        Conf(str(path))


def test_missing_file():
    with pytest.raises(TunerInputError, match="does not exist"):
        Conf("/nonexistent/conf.yaml")


def test_lower_is_better_metrics_and_op_wise():
    conf = Conf({"evaluation": {"accuracy": {"metric": {"MSE": {}}}},
                 "quantization": {"op_wise": {"conv.*": {"activation": {"dtype": ["fp32"]}},
                                              "fc1": {"activation": {"dtype": "int8"}}}}})
    assert conf.higher_is_better is False
    assert conf.op_wise == {"conv.*": "fp32", "fc1": "int8"}


def test_override_applies_flags():
    conf = Conf(None).override(**{"tuning.exit_policy.max_trials": 3, "tuning.random_seed": None})
    assert conf.max_trials == 3 and conf.seed == 1978
