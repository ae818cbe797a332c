"""Several outputs, several inputs (one of them int32), and fidelity metrics, through the library:
labels per output, per-output metrics and criteria, the worst share of tolerance as the run's
accuracy, the float model's outputs as labels, `eval_func` with every output. On a real model
trained on digits (tests/multi_output_models.py). The command line's side: test_cli_outputs.py."""
import numpy as np
import pytest

from conftest import FAST_PERF
from multi_output_models import OUTPUTS, intensity, inputs_of, to_tflite, train_two_headed
from tf_tpe_tuner import Conf, TunerInputError, tune
from tf_tpe_tuner.conf_outputs import MetricSpec
from tf_tpe_tuner.data import ArrayData, as_array_data, check_against_model
from tf_tpe_tuner.evaluate import TFLiteModel, make_metric
from tf_tpe_tuner.outputs import OutputScore, Scoring, in_model_order, labels_by_output
from tf_tpe_tuner.study.criterion import Criterion


def conf(accuracy=None, criterion=None, trials=3):
    tuning = {"exit_policy": {"max_trials": trials}}
    if criterion:
        tuning["accuracy_criterion"] = criterion
    return {"evaluation": {"performance": dict(FAST_PERF), "accuracy": accuracy or {}}, "tuning": tuning}


@pytest.fixture(scope="module")
def two_headed(digits):
    return train_two_headed(digits)


@pytest.fixture(scope="module")
def data(digits):
    (x, y), (xt, yt) = digits
    return {"calib": inputs_of(x[:100]), "eval": {**inputs_of(xt), "digit": yt, "intensity": intensity(xt)},
            "inputs": inputs_of(xt), "xt": xt, "yt": yt, "x": x}


# -- labels per output, by name or position (no TensorFlow) ----------------------------------------
def scoring_of(names):
    crit = Criterion("relative", 0.01)
    return Scoring(tuple(OutputScore(n, i, MetricSpec(), crit) for i, n in enumerate(names)), tuple(names))


def test_labels_are_named_after_outputs_or_by_position():
    x = np.zeros((4, 3), "float32")
    npz = {"x": x, "digit": np.arange(4), "y_1": np.ones((4, 1))}
    data = labels_by_output(as_array_data(npz, ["x"], "evaluation data"), scoring_of(OUTPUTS))
    assert [a.tolist() for a in data.y] == [[0, 1, 2, 3], [[1.0]] * 4]
    only_one = labels_by_output(as_array_data({"x": x, "intensity": np.ones(4)}, ["x"], "e"), scoring_of(OUTPUTS))
    assert only_one.y[0] is None and only_one.y[1].shape == (4,)
    by_list = labels_by_output(ArrayData([x], [np.arange(4), np.ones(4)]), scoring_of(OUTPUTS))
    assert by_list.y[1].tolist() == [1.0] * 4
    # a one-output model's .npz as before: y, and other arrays are not its business
    single = labels_by_output(as_array_data({"x": x, "y": np.arange(4), "notes": np.ones(4)}, ["x"], "e"),
                              scoring_of(["out"]))
    assert single.y[0].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("arrays, words", [
    ({"digits": np.arange(4)}, ["array named 'digits'", "names no input or output", "digit, intensity", "y_0..y_1"]),
    ({"y_2": np.arange(4)}, ["'y_2'", "names no input or output"]),
    ({"y": np.arange(4)}, ["one label array (y)", "2 outputs", "y_0..y_1"]),
    ({"digit": np.arange(4), "y_0": np.arange(4)}, ["labels of output digit twice"]),
    ({"digit": np.arange(3)}, ["labels of output digit number 3 for 4 samples"]),
    ({"intensity": np.array([0.1, np.nan, 0.2, 0.3])}, ["labels of output intensity hold NaN"]),
])
def test_labels_that_cannot_be_an_outputs_are_refused(arrays, words):
    data = as_array_data({"x": np.zeros((4, 3), "float32"), **arrays}, ["x"], "evaluation data file e.npz")
    with pytest.raises(TunerInputError) as err:
        labels_by_output(data, scoring_of(OUTPUTS))
    message = str(err.value)
    assert "\n" not in message and message.startswith("evaluation data file e.npz")
    for word in words:
        assert word in message, message


# -- the conf -------------------------------------------------------------------------------------
def test_conf_outputs_and_combine():
    c = Conf(conf({"metric": "agreement", "combine": ["intensity", 0],
                   "outputs": {"intensity": {"metric": {"NRMSE": {}}, "accuracy_criterion": {"absolute": 0.05}},
                               0: {"metric": {"agreement": {"threshold": 0.0}}}}}))
    assert c.metric == MetricSpec("agreement") and c.combine == ["intensity", 0]
    assert c.output_settings["intensity"].metric == MetricSpec("nrmse")
    assert c.output_settings["intensity"].criterion["absolute"] == 0.05
    assert c.output_settings[0].metric.threshold == 0.0
    assert not c.needs_labels  # agreement and NRMSE compare with the float model's outputs
    assert Conf(None).needs_labels and Conf(conf({"metric": "topk"})).metric == MetricSpec("topk", 1)


@pytest.mark.parametrize("accuracy, words", [
    ({"outputs": {"digit": {"metrc": "MSE"}}}, ["unknown key evaluation.accuracy.outputs.digit.metrc"]),
    ({"outputs": {"digit": {"accuracy_criterion": {"relative": 0.1, "absolute": 0.1}}}}, ["exactly one"]),
    ({"outputs": {"digit": {"metric": {"F1": {}}}}}, ["outputs.digit.metric 'F1' is not supported", "NRMSE"]),
    ({"metric": {"agreement": {"treshold": 0}}}, ["unknown key evaluation.accuracy.metric.agreement.treshold"]),
    ({"combine": 1.5}, ["evaluation.accuracy.combine must be worst"]),
])
def test_conf_mistakes_name_the_key(accuracy, words):
    with pytest.raises(TunerInputError) as err:
        Conf(conf(accuracy))
    for word in words:
        assert word in str(err.value), str(err.value)


# -- fidelity metrics ----------------------------------------------------------------------------------
def test_agreement_and_nrmse():
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7]])
    got = np.array([[0.2, 0.8], [0.3, 0.7], [0.45, 0.55], [0.35, 0.65]])
    assert make_metric("agreement").compute(got, ref) == 0.75  # sample 1's top class moved
    logits = np.array([[-1.0], [0.5], [2.0], [-0.1]])
    assert make_metric("agreement", threshold=0.0).compute(logits + 0.2, logits) == 0.75  # -0.1 crossed 0
    y = np.array([1.0, 2.0, 3.0, 4.0])
    nrmse = make_metric("nrmse").compute(y + 0.1, y)
    assert nrmse == pytest.approx(0.1 / np.std(y))
    assert make_metric("nrmse").higher_is_better is False and make_metric("agreement").higher_is_better


# -- tuning ------------------------------------------------------------------------------------------
def per_output(tflite, data, names=OUTPUTS):
    model = TFLiteModel(tflite)
    outs = in_model_order(model, model.predict(check_against_model(
        as_array_data(data, ["image", "ink"], "e"), [(None, 8, 8, 1), (None, 1)], "e", ["float32", "int32"]), 256))
    return dict(zip(names, outs))


def test_several_outputs_each_within_its_own_criterion(two_headed, data, tmp_path):
    """combine: worst (the default); the run's accuracy is the worst share of tolerance, and a
    trial meets the criterion exactly when each output meets its own."""
    accuracy = {"outputs": {"intensity": {"metric": {"MAE": {}}, "accuracy_criterion": {"absolute": 0.01}}}}
    result = tune(two_headed, conf(accuracy, trials=4), data["calib"], eval_data=data["eval"],
                  output_dir=str(tmp_path))
    rows = {r["output"]: r for r in result.outputs}
    assert set(rows) == set(OUTPUTS) and rows["digit"]["metric"] == "top1" and rows["intensity"]["metric"] == "MAE"
    assert result.criterion == Criterion("absolute", 1.0, False) and result.baseline.accuracy == 0.0
    assert rows["digit"]["fp32"] > 0.9 and rows["intensity"]["fp32"] < 0.05
    for record in result.history:
        digit, mae = record.outputs["digit"], record.outputs["intensity"]
        shares = [(rows["digit"]["fp32"] - digit) / rows["digit"]["fp32"] / 0.01,
                  (mae - rows["intensity"]["fp32"]) / 0.01]
        assert record.accuracy == pytest.approx(max(shares), abs=1e-9)
        assert record.met_criterion == (shares[0] <= 1 + 1e-9 and shares[1] <= 1 + 1e-9)
    assert result.met_criterion and all(r["meets"] for r in result.outputs)
    # the per-output values are those of the handed-back model, output by output
    got = per_output(result.tflite_model, data["inputs"])
    assert np.mean(np.argmax(got["digit"], 1) == data["yt"]) == pytest.approx(rows["digit"]["best"])
    mae = np.mean(np.abs(got["intensity"] - intensity(data["xt"])))
    assert mae == pytest.approx(rows["intensity"]["best"], rel=1e-6)
    assert TFLiteModel(result.tflite_model)._interpreter.get_input_details()[1]["dtype"] == np.int32


def test_a_chosen_output_alone_counts(two_headed, data, tmp_path):
    """combine: intensity; the digit output needs no labels then, and the accuracy is the MAE."""
    accuracy = {"metric": "MAE", "combine": "intensity"}
    eval_data = {**data["inputs"], "intensity": intensity(data["xt"])}
    result = tune(two_headed, conf(accuracy, {"absolute": 0.01}, trials=2), data["calib"], eval_data=eval_data,
                  output_dir=str(tmp_path))
    assert [r["output"] for r in result.outputs] == ["intensity"]
    assert result.baseline.accuracy == result.outputs[0]["fp32"]
    assert result.criterion == Criterion("absolute", 0.01, False)
    for record in result.history:
        assert record.accuracy == record.outputs["intensity"]


def test_without_labels_the_float_model_is_the_reference(two_headed, data, tmp_path):
    """Only inputs: agreement (digit) and NRMSE (intensity) against the float model's outputs;
    the float model scores 1 and 0 on them."""
    accuracy = {"metric": "agreement", "outputs": {
        "intensity": {"metric": "NRMSE", "accuracy_criterion": {"absolute": 0.2}}}}
    test = inputs_of(data["x"][100:400])  # held-out inputs: against the float model there too
    result = tune(two_headed, conf(accuracy, {"relative": 0.02}), data["calib"], eval_data=data["inputs"],
                  output_dir=str(tmp_path), test_data=test)
    rows = {r["output"]: r for r in result.outputs}
    assert rows["digit"]["fp32"] == 1.0 and rows["intensity"]["fp32"] == 0.0
    held = {r["output"]: r for r in result.report["test"]["outputs"]}
    assert held["digit"]["fp32"] == 1.0 and held["intensity"]["fp32"] == 0.0 and result.report["test"]["samples"] == 300
    assert 0.9 < held["digit"]["best"] <= 1.0 and result.report["test"]["fp32_accuracy"] == 0.0
    assert "| digit | agreement |" in (tmp_path / "report.md").read_text()
    reference = per_output(to_tflite(two_headed), data["inputs"])
    got = per_output(result.tflite_model, data["inputs"])
    agree = np.mean(np.argmax(got["digit"], 1) == np.argmax(reference["digit"], 1))
    assert agree == pytest.approx(rows["digit"]["best"])
    assert (np.sqrt(np.mean((got["intensity"] - reference["intensity"]) ** 2)) / np.std(reference["intensity"])
            == pytest.approx(rows["intensity"]["best"], rel=1e-5))


@pytest.mark.parametrize("accuracy, criterion, words", [
    ({"metric": "NRMSE"}, None, ["relative criterion cannot work for output digit's NRMSE", "exactly 0",
                                 "{absolute: 0.02}", "agreement"]),
    ({"outputs": {"intensity": {"metric": "MSE"}}, "metric": "agreement"}, {"relative": 0.05},
     ["output intensity's MSE", "exactly 0", "in the output's units", "NRMSE"]),
    ({"combine": "intensity"}, None, ["no labels (intensity or y_1) for output intensity", "agreement"]),
    ({"outputs": {"face": {"metric": "MSE"}}}, None, ["evaluation.accuracy.outputs.face names no output",
                                                      "digit, intensity"]),
    ({"combine": 2}, None, ["evaluation.accuracy.combine 2 names no output"]),
])
def test_refusals_before_any_trial(two_headed, data, tmp_path, accuracy, criterion, words):
    with pytest.raises(TunerInputError) as err:
        tune(two_headed, conf(accuracy, criterion), data["calib"], eval_data=data["inputs"],
             output_dir=str(tmp_path / "out"))
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    assert not (tmp_path / "out").exists()


def test_eval_func_receives_every_output_in_the_models_order(two_headed, data, tmp_path):
    seen = []

    def eval_func(model):
        digit, ink = model(data["inputs"]["image"], data["inputs"]["ink"])
        seen.append((digit.shape, ink.shape))
        return float(np.mean(np.argmax(digit, 1) == data["yt"]))

    result = tune(two_headed, conf(trials=2), data["calib"], eval_func=eval_func, output_dir=str(tmp_path))
    assert set(seen) == {((797, 10), (797, 1))}
    assert result.accuracy > 0.9 and result.outputs is None


def test_int_input_given_as_floats_is_cast_and_fractions_are_refused(data):
    x = check_against_model(ArrayData([data["xt"], data["inputs"]["ink"].astype("float64")]),
                            [(None, 8, 8, 1), (None, 1)], "e", ["float32", "int32"])
    assert x.x[0].dtype == np.float32 and x.x[1].dtype == np.int32
    with pytest.raises(TunerInputError, match=r"input 1\): the model's input is int32, .*not whole numbers"):
        check_against_model(ArrayData([data["xt"], data["inputs"]["ink"] + 0.5]), [(None, 8, 8, 1), (None, 1)],
                            "evaluation data", ["float32", "int32"])


def test_keras3_outputs_keep_their_names_and_the_int_input_its_dtype(digits, data):
    import keras

    from tf_tpe_tuner.run_setup import model_graph

    model = train_two_headed(digits, keras, epochs=1)
    graph = model_graph(model)
    assert graph.output_names == OUTPUTS and [s[1:] for s in graph.output_shapes] == [(10,), (1,)]
    from tf_tpe_tuner.outputs import input_dtypes
    assert input_dtypes(graph) == ["float32", "int32"]
    got = per_output(graph.float_model, data["inputs"])
    want = model.predict([data["xt"], data["inputs"]["ink"]], verbose=0)
    for name, value in zip(OUTPUTS, want):
        np.testing.assert_allclose(got[name], value, atol=1e-5)


# -- one output, as before, plus the float model as the reference ----------------------------------
def test_one_output_without_labels_scores_agreement_with_the_float_model(cnn, digits, tmp_path):
    (x, _), (xt, _) = digits
    result = tune(cnn, conf({"metric": "agreement"}, trials=2), x[:64], eval_data=xt, output_dir=str(tmp_path))
    assert result.baseline.accuracy == 1.0 and result.outputs is None and result.metric == "agreement"
    assert all(0.9 < r.accuracy <= 1.0 and r.outputs is None for r in result.history)


def test_one_output_relative_criterion_on_an_error_of_zero_is_refused(cnn, digits, tmp_path):
    (x, _), (xt, _) = digits
    with pytest.raises(TunerInputError) as err:
        tune(cnn, conf({"metric": "MSE"}), x[:64], eval_data=xt, output_dir=str(tmp_path / "out"))
    message = str(err.value)
    assert message.startswith("conf: a relative criterion cannot work for MSE: the float model's MSE on "
                              "evaluation data is exactly 0"), message
    assert "in the output's units" in message and "NRMSE" in message
    with pytest.raises(TunerInputError, match="no labels \\(y\\); the topk metric needs class labels"):
        tune(cnn, conf(), x[:64], eval_data=xt, output_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_outputs_whose_tensor_order_is_not_the_models_order(two_headed, data, tmp_path):
    """A .tflite whose output list is not in tensor-index order (the regression output listed
    first): scored by name all the same, on the float model and on every quantized one (the
    quantizer renumbers tensors, so index order and output order can differ between them)."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    from tf_tpe_tuner.outputs import output_names
    from tf_tpe_tuner.tflite_graph import read_graph

    flat = fu.read_model_from_bytearray(bytearray(to_tflite(two_headed)))
    flat.subgraphs[0].outputs = flat.subgraphs[0].outputs[::-1]
    swapped = bytes(fu.convert_object_to_bytearray(flat))
    assert output_names(read_graph(swapped)) == ["Identity_1", "Identity"]
    got = per_output(swapped, data["inputs"], names=["Identity_1", "Identity"])
    assert got["Identity_1"].shape == (797, 1) and got["Identity"].shape == (797, 10)
    eval_data = {**data["inputs"], "Identity": data["yt"], "y_0": intensity(data["xt"])}
    accuracy = {"outputs": {0: {"metric": "MAE", "accuracy_criterion": {"absolute": 0.02}}}}
    result = tune(swapped, conf(accuracy, trials=3), data["calib"], eval_data=eval_data, output_dir=str(tmp_path))
    assert [r["output"] for r in result.outputs] == ["Identity_1", "Identity"]
    assert result.baseline.outputs["Identity"] > 0.9 and result.baseline.outputs["Identity_1"] < 0.05
    for record in result.history:
        assert record.outputs["Identity"] > 0.85 and record.outputs["Identity_1"] < 0.1, record
