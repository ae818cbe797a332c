"""Data that cannot be right is refused (one line, TunerInputError, nothing written); data that
is probably wrong is warned about (TunerInputWarning). Here the library functions, `tune()` and
the callback; the command line's side of the same cases is in test_cli.py."""
import warnings

import numpy as np
import pytest

from conftest import build_cnn, fast_conf
from tf_tpe_tuner import Conf, TunerInputError, tune
from tf_tpe_tuner._tf import keras
from tf_tpe_tuner.checks import (TunerInputWarning, warn_if_baseline_at_chance, warn_if_ranges_differ,
                                 warn_if_test_overlaps)
from tf_tpe_tuner.data import ArrayData, as_array_data, check_against_model, file_kind, load_npz
from tf_tpe_tuner.evaluate import Evaluator, make_metric

SHAPES = [(None, 8, 8, 1)]
NAMES = ["image"]


def images(n=20, seed=0, scale=1.0):
    return (np.random.RandomState(seed).rand(n, 8, 8, 1) * scale).astype("float32")


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# -- file formats -------------------------------------------------------------------------------
def test_npy_file_is_calibration_inputs(tmp_path):
    x = images()
    np.save(tmp_path / "calib.npy", x)
    data = load_npz(str(tmp_path / "calib.npy"), NAMES, "calibration data")
    assert np.array_equal(data.x[0], x) and data.y is None
    assert file_kind(str(tmp_path / "calib.npy"), "--calib_data") == "npy"


def test_npy_file_is_refused_where_labels_are_needed(tmp_path):
    np.save(tmp_path / "eval.npy", images())
    data = as_array_data(str(tmp_path / "eval.npy"), NAMES, "evaluation data")
    with pytest.raises(TunerInputError) as err:
        Evaluator(make_metric("topk"), check_against_model(data, SHAPES, "evaluation data"))
    assert "eval.npy is a .npy file" in one_line(err) and "numpy.savez" in str(err.value)
    with pytest.raises(TunerInputError) as err:
        file_kind(str(tmp_path / "eval.npy"), "--eval_data", labels_needed=True)
    assert one_line(err).startswith("--eval_data file ") and "no labels" in str(err.value)


def test_npy_file_for_a_model_with_two_inputs_is_refused(tmp_path):
    np.save(tmp_path / "calib.npy", images())
    with pytest.raises(TunerInputError) as err:
        load_npz(str(tmp_path / "calib.npy"), ["a", "b"], "calibration data")
    assert "2 inputs" in one_line(err) and "a, b" in str(err.value)


def test_npz_that_is_not_a_zip_archive_says_so(tmp_path):
    (tmp_path / "calib.npz").write_text("x,y\n0.1,3\n")
    with pytest.raises(TunerInputError) as err:
        load_npz(str(tmp_path / "calib.npz"), NAMES, "calibration data")
    message = one_line(err)
    assert "calib.npz is not an .npz file" in message and "zip archive" in message
    assert "pickle" not in message


def test_damaged_zip_archive_says_so(tmp_path):
    np.savez(tmp_path / "calib.npz", x=images())
    (tmp_path / "cut.npz").write_bytes((tmp_path / "calib.npz").read_bytes()[:100])
    with pytest.raises(TunerInputError) as err:
        load_npz(str(tmp_path / "cut.npz"), NAMES, "calibration data")
    assert "damaged zip archive" in one_line(err)


# -- values --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_refused(bad):
    x = images()
    x[7, 3, 3, 0] = bad
    with pytest.raises(TunerInputError) as err:
        check_against_model(ArrayData([x], source="calibration data file c.npz"), SHAPES, "calibration data")
    assert one_line(err).startswith("calibration data file c.npz: the inputs hold NaN or infinity")
    assert "sample 7" in str(err.value)


def test_inputs_that_overflow_float32_are_refused():
    x = images().astype(np.float64)
    x[2, 0, 0, 0] = 1e300  # finite in float64, infinite once cast to the model's float32
    with pytest.raises(TunerInputError, match="sample 2"):
        check_against_model(ArrayData([x]), SHAPES, "evaluation data")


def test_non_finite_labels_are_refused():
    y = np.arange(20, dtype="float32") % 10
    y[4] = np.nan
    with pytest.raises(TunerInputError) as err:
        check_against_model(ArrayData([images()], y), SHAPES, "evaluation data")
    assert one_line(err).startswith("evaluation data: the labels (y) hold NaN or infinity")


def evaluator(y, metric="topk"):
    data = check_against_model(ArrayData([images(len(y))], y, source="evaluation data file e.npz"),
                               SHAPES, "evaluation data")
    return Evaluator(make_metric(metric), data)


@pytest.mark.parametrize("shape", [(20,), (20, 1)])
def test_fractional_float_labels_are_refused_for_topk(shape):
    y = (np.arange(20) % 10 + 0.5).astype("float32").reshape(shape)
    with pytest.raises(TunerInputError) as err:
        evaluator(y).check_labels([(None, 10)])
    message = one_line(err)
    assert message.startswith("evaluation data file e.npz: the labels (y) are floats that are not whole numbers")
    assert "0..9" in message and "(N, 10)" in message


def test_whole_float_one_hot_and_soft_labels_are_accepted():
    classes = np.arange(20) % 10
    evaluator(classes.astype("float32")).check_labels([(None, 10)])
    evaluator(np.eye(10, dtype="float32")[classes]).check_labels([(None, 10)])
    soft = np.random.RandomState(0).dirichlet(np.ones(10), size=20).astype("float32")
    evaluator(soft).check_labels([(None, 10)])
    # regression targets are not class indices: MSE takes any finite float
    evaluator(np.linspace(0, 3, 20).reshape(20, 1), "mse").check_labels([(None, 1)])


def test_check_labels_of_other_data():
    ev = evaluator((np.arange(20) % 10).astype("int64"))
    test = ArrayData([images()], np.full(20, 0.25), source="test data")
    with pytest.raises(TunerInputError, match="^test data: the labels"):
        ev.check_labels([(None, 10)], test)


# -- through tune() and the callback ------------------------------------------------------------
@pytest.fixture(scope="module")
def small_cnn(digits):
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = build_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:200], y[:200], epochs=1, verbose=0)
    return model


def test_tune_refuses_nan_calibration_data_and_writes_nothing(small_cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    calib = x[:64].copy()
    calib[5, 0, 0, 0] = np.nan
    with pytest.raises(TunerInputError, match="^calibration data: the inputs hold NaN"):
        tune(small_cnn, fast_conf(), calib, eval_data=(xt, yt), output_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_tune_refuses_fractional_labels(small_cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    with pytest.raises(TunerInputError, match="not whole numbers"):
        tune(small_cnn, fast_conf(), x[:64], eval_data=(xt, yt + 0.3), output_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_callback_reports_the_refusal_and_training_goes_on(digits, tmp_path):
    from tf_tpe_tuner.callback import TpeTuningCallback

    (x, y), (xt, yt) = digits
    labels = yt.astype("float32")
    labels[0] = np.inf
    callback = TpeTuningCallback(fast_conf(), x[:64], (xt, labels), str(tmp_path), progress="quiet", verbose=0)
    keras.utils.set_random_seed(0)
    model = build_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[callback])
    assert "labels (y) hold NaN or infinity" in callback.errors["final"]
    assert not (tmp_path / "final").exists()


# -- warnings ------------------------------------------------------------------------------------
def no_warning(call, *args):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        call(*args)
    assert not [w for w in seen if issubclass(w.category, TunerInputWarning)], [str(w.message) for w in seen]


def test_calibration_range_unlike_the_evaluation_range_is_warned():
    calib = ArrayData([images(scale=255.0)], source="calibration data file c.npz")
    evaluation = ArrayData([images(seed=1)], source="evaluation data file e.npz")
    with pytest.warns(TunerInputWarning, match=r"c\.npz: the calibration inputs range over 0\..*255.*e\.npz"):
        warn_if_ranges_differ(calib, evaluation)
    no_warning(warn_if_ranges_differ, ArrayData([images(scale=5.0)]), evaluation)  # 5x: fine
    no_warning(warn_if_ranges_differ, calib, None)


def test_baseline_at_chance_is_warned():
    with pytest.warns(TunerInputWarning, match="no better than chance"):
        warn_if_baseline_at_chance("top1", 0.11, [(None, 10)])  # chance 0.1, margin 0.02
    no_warning(warn_if_baseline_at_chance, "top1", 0.13, [(None, 10)])
    with pytest.warns(TunerInputWarning):
        warn_if_baseline_at_chance("top1", 0.5, [(None, 1)])  # one sigmoid output: 2 classes
    no_warning(warn_if_baseline_at_chance, "top5", 0.6, [(None, 10)])  # top-5 chance is 0.5
    no_warning(warn_if_baseline_at_chance, "MSE", 0.0, [(None, 1)])


def test_test_data_sharing_samples_with_the_evaluation_data_is_warned():
    evaluation = ArrayData([images(30)], np.zeros(30), source="evaluation data file e.npz")
    test = ArrayData([np.concatenate([images(10, seed=5), images(30)[:3]])], np.zeros(13),
                     source="test data file t.npz")
    with pytest.warns(TunerInputWarning, match="t.npz shares 3 of its 13 samples with the evaluation data"):
        warn_if_test_overlaps(test, evaluation)
    no_warning(warn_if_test_overlaps, ArrayData([images(10, seed=5)]), evaluation)


def test_relative_criterion_above_half_is_warned():
    with pytest.warns(TunerInputWarning, match="relative is 0.6"):
        Conf({"tuning": {"accuracy_criterion": {"relative": 0.6}}})
    no_warning(Conf, {"tuning": {"accuracy_criterion": {"relative": 0.5}}})
    no_warning(Conf, {"tuning": {"accuracy_criterion": {"absolute": 0.6}}})
