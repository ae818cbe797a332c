"""TpeTuningCallback inside a real model.fit(): subfolders, logs, result, failures, no side effects."""
import json
import os

import numpy as np
import pytest

from conftest import build_cnn, fast_conf
from tf_tpe_tuner import TunerInputError
from tf_tpe_tuner._tf import keras
from tf_tpe_tuner.callback import LOG_KEYS, TpeTuningCallback

CONF = fast_conf(exit_policy={"max_trials": 1, "timeout": 3600})


def fit(digits, callbacks, epochs=2):
    """The same training every time (seeded); returns the model and its History."""
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = build_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x[:500], y[:500], epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)
    return model, history


@pytest.fixture(scope="module")
def plain(digits):
    return fit(digits, [])


@pytest.fixture(scope="module")
def tuned_fit(digits, tmp_path_factory):
    (x, _), (xt, yt) = digits
    out = tmp_path_factory.mktemp("callback")
    callback = TpeTuningCallback(CONF, x[:64], (xt, yt), str(out), every_n_epochs=1, progress="quiet")
    model, history = fit(digits, [callback])
    return callback, model, history, out


def test_each_tuning_writes_its_own_subfolder(tuned_fit):
    callback, _, _, out = tuned_fit
    assert sorted(os.listdir(out)) == ["epoch_001", "epoch_002", "final"]
    for folder in ("epoch_001", "epoch_002", "final"):
        for name in ("best_model.tflite", "best_config.yaml", "summary.json", "history.jsonl"):
            assert (out / folder / name).exists(), (folder, name)
    assert list(callback.results) == ["epoch_001", "epoch_002", "final"]
    assert not callback.errors
    # Training ended right after epoch 2's tuning: final/ is that result, not a second search.
    assert callback.results["final"] is callback.results["epoch_002"] is callback.result
    summary = json.loads((out / "final" / "summary.json").read_text())
    assert summary["best_accuracy"] == callback.result.accuracy


def test_outcome_goes_into_the_epoch_logs(tuned_fit):
    callback, _, history, _ = tuned_fit
    for key in LOG_KEYS:
        assert len(history.history[key]) == 2, key
    first, last = callback.results["epoch_001"], callback.results["epoch_002"]
    assert history.history["tpe_accuracy"] == [first.accuracy, last.accuracy]
    assert history.history["tpe_speedup"] == [pytest.approx(first.speedup), pytest.approx(last.speedup)]
    assert history.history["tpe_met_criterion"][1] == float(last.met_criterion)


def test_training_is_exactly_what_it_would_have_been(tuned_fit, plain):
    """Tuning touches neither the weights nor the random state training draws from."""
    _, model, history, _ = tuned_fit
    plain_model, plain_history = plain
    for a, b in zip(model.get_weights(), plain_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert history.history["loss"] == plain_history.history["loss"]


def test_tuning_leaves_the_model_weights_alone(digits, tmp_path):
    (x, _), (xt, yt) = digits
    model, _ = fit(digits, [], epochs=1)
    before = [w.copy() for w in model.get_weights()]
    callback = TpeTuningCallback(CONF, x[:64], (xt, yt), str(tmp_path), progress="quiet", verbose=0)
    callback.set_model(model)
    assert callback.tune_now("manual") is not None
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_failed_tuning_does_not_break_training(digits, tmp_path, capsys):
    (x, _), (xt, yt) = digits
    bad_calib = x[:64, :4]  # the wrong sample shape: tune() refuses it
    callback = TpeTuningCallback(CONF, bad_calib, (xt, yt), str(tmp_path), every_n_epochs=1, progress="quiet")
    model, history = fit(digits, [callback])
    assert len(history.history["loss"]) == 2  # training ran to the end
    assert not any(key in history.history for key in LOG_KEYS)
    assert callback.result is None
    assert list(callback.errors) == ["epoch_001", "epoch_002", "final"]
    assert "TunerInputError: calibration data has samples of shape" in callback.errors["final"]
    assert "failed, training goes on" in capsys.readouterr().err


def test_an_internal_error_does_not_break_training_either(digits, tmp_path):
    (x, _), _ = digits

    def broken_eval(model):
        raise ZeroDivisionError("a bug in the user's eval_func")

    callback = TpeTuningCallback(CONF, x[:64], None, str(tmp_path), eval_func=broken_eval, verbose=0)
    _, history = fit(digits, [callback], epochs=1)
    assert len(history.history["loss"]) == 1
    assert "ZeroDivisionError" in callback.errors["final"] or "a bug" in callback.errors["final"]


def test_results_left_by_someone_else_are_not_overwritten(digits, tmp_path):
    (x, _), (xt, yt) = digits
    final = tmp_path / "final"
    final.mkdir()
    (final / "summary.json").write_text("{}")
    callback = TpeTuningCallback(CONF, x[:64], (xt, yt), str(tmp_path), progress="quiet", verbose=0)
    fit(digits, [callback], epochs=1)
    assert "already holds results" in callback.errors["final"]
    assert (final / "summary.json").read_text() == "{}"


def test_arguments_are_checked_before_training(digits):
    (x, _), (xt, yt) = digits
    with pytest.raises(TunerInputError, match="max_trialz"):
        TpeTuningCallback({"tuning": {"exit_policy": {"max_trialz": 3}}}, x[:64], (xt, yt))
    with pytest.raises(ValueError, match="every_n_epochs"):
        TpeTuningCallback(CONF, x[:64], (xt, yt), every_n_epochs=0)
    with pytest.raises(ValueError, match="eval_data"):
        TpeTuningCallback(CONF, x[:64])
