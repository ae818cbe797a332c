"""The denylist realization backend on real models: calibrate once, re-quantize per configuration."""
import itertools

import numpy as np
import pytest

from conftest import fast_conf
from tf_tpe_tuner import Conf, TunerInputError, walk
from tf_tpe_tuner._tf import keras
from tf_tpe_tuner.data import ArrayData
from tf_tpe_tuner.evaluate import TFLiteModel
from tf_tpe_tuner.realize import AnnotationRealizer
from tf_tpe_tuner.realize_denylist import DenylistRealizer
from tf_tpe_tuner.realizers import make_realizer
from tf_tpe_tuner.trial import int8_units
from tf_tpe_tuner.strategy import TpeTuneStrategy


def accuracy(tflite, x, y):
    pred = TFLiteModel(tflite, num_threads=1).predict(ArrayData([x], y), 256)
    return float(np.mean(pred.argmax(-1) == y))


def op_types(tflite):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interp = Interpreter(model_content=tflite,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    out = []
    for op in interp._get_ops_details():
        detail = interp._get_tensor_details(op["outputs"][0], 0)
        out.append((op["op_name"], np.dtype(detail["dtype"]).name, detail["name"]))
    return out


@pytest.mark.parametrize("fixture", ["cnn", "residual"])
def test_every_configuration_is_realized_exactly(fixture, request, digits):
    """All 2^5 configurations: int8 exactly where asked, read back from the model."""
    (x, _), _ = digits
    graph = walk(request.getfixturevalue(fixture))
    realizer = DenylistRealizer(graph, ArrayData([x[:32]]))
    for bits in itertools.product([0, 1], repeat=len(graph.unit_names)):
        int8 = {u for u, b in zip(graph.unit_names, bits) if b}
        realization = realizer.realize(int8)
        assert realization.int8_units == int8, sorted(int8)
        expected_layers = [graph.display_names[layer] for u in graph.units if u.name in int8 for layer in u.layers]
        assert list(realization.int8_layers) == expected_layers


@pytest.mark.parametrize("int8", [None, ["conv1", "conv3", "logits"], ["conv2", "fc1"]])
def test_same_accuracy_as_the_annotation_path(cnn, digits, int8):
    (x, _), (xt, yt) = digits
    graph = walk(cnn)
    int8 = graph.unit_names if int8 is None else int8
    calib = ArrayData([x[:100]])
    ours = DenylistRealizer(graph, calib).realize(int8)
    theirs = AnnotationRealizer(graph, calib).realize(int8)
    assert ours.int8_units == theirs.int8_units == set(int8)
    assert abs(accuracy(ours.tflite_model, xt, yt) - accuracy(theirs.tflite_model, xt, yt)) <= 0.005


def test_calibrates_once_and_times_its_steps(cnn, digits):
    (x, _), _ = digits
    realizer = DenylistRealizer(walk(cnn), ArrayData([x[:64]]))
    first = realizer.realize(["conv1"])
    calibrated = realizer.calibrate()
    second = realizer.realize(["conv2"])
    assert realizer.calibrate() is calibrated
    assert "calibrate" in first.seconds and "calibrate" not in second.seconds
    assert set(second.seconds) == {"quantize", "inspect"}
    assert realizer.realize([]).int8_units == frozenset()  # nothing int8: the float model


def test_same_scale_unit_asked_fp32_stays_float(residual, digits):
    """The quantizer ignores the denylist for AVERAGE_POOL_2D after an int8 Add; we force it."""
    (x, _), _ = digits
    graph = walk(residual)
    realizer = DenylistRealizer(graph, ArrayData([x[:64]]))
    realization = realizer.realize(["block/add"])
    assert realization.int8_units == {"block/add"}
    ops = {name: dtype for name, dtype, _ in op_types(realization.tflite_model)}
    assert ops["ADD"] == "int8" and ops["AVERAGE_POOL_2D"] == "float32"


def test_pass_through_between_float_units_runs_float(cnn, digits):
    """MaxPool between fp32 conv2 and fp32 conv3: float, as on the annotation path (no Q/DQ pair)."""
    (x, _), _ = digits
    realizer = DenylistRealizer(walk(cnn), ArrayData([x[:64]]))
    ops = op_types(realizer.realize(["conv1", "fc1", "logits"]).tflite_model)
    assert ("MAX_POOL_2D", "float32") in [(n, d) for n, d, _ in ops]
    ops = op_types(realizer.realize(["conv3"]).tflite_model)  # its reader is int8: int8
    assert ("MAX_POOL_2D", "int8") in [(n, d) for n, d, _ in ops]


def test_renamed_output_op_is_read_back(digits):
    """A final linear Dense becomes an op TFLite names `Identity`: found through the model output."""
    (x, y), _ = digits
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Flatten(name="flat")(inputs)
    h = keras.layers.Dense(16, activation="relu", name="fc")(h)
    outputs = keras.layers.Dense(1, name="out")(h)  # regression head, no activation
    model = keras.Model(inputs, outputs)
    keras.utils.set_random_seed(0)
    model.compile("adam", "mse")
    model.fit(x[:256], y[:256].astype("float32"), epochs=2, verbose=0)
    graph = walk(model)
    realizer = DenylistRealizer(graph, ArrayData([x[:64]]))
    for int8 in ([], ["out"], ["fc"], ["fc", "out"]):
        assert realizer.realize(int8).int8_units == set(int8), int8


def test_q_func_needs_the_annotation_backend(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    graph = walk(cnn)
    with pytest.raises(TunerInputError, match="quantization.backend: annotate"):
        DenylistRealizer(graph, ArrayData([x[:32]]), q_func=lambda m: None)
    conf = fast_conf(workspace={"path": str(tmp_path)})
    conf["quantization"] = {"backend": "denylist"}
    with pytest.raises(TunerInputError, match="q_func"):
        TpeTuneStrategy(cnn, Conf(conf), x[:32], q_func=lambda m: None, eval_dataloader=(xt, yt))
    # the default backend ("auto") takes the annotation path when a q_func is given
    strategy = TpeTuneStrategy(cnn, Conf(fast_conf(workspace={"path": str(tmp_path)})), x[:32],
                               q_func=lambda m: None, eval_dataloader=(xt, yt))
    assert strategy.realizer.name == "annotate"
    conf["quantization"] = {"backend": "annotate"}
    strategy = TpeTuneStrategy(cnn, Conf(conf), x[:32], q_func=lambda m: None, eval_dataloader=(xt, yt))
    assert strategy.realizer.name == "annotate"


def test_backend_from_the_conf(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    assert Conf().get("quantization.backend") == "auto"
    strategy = TpeTuneStrategy(cnn, Conf(fast_conf(workspace={"path": str(tmp_path)})), x[:32],
                               eval_dataloader=(xt, yt))
    assert strategy.realizer.name == "denylist"
    with pytest.raises(TunerInputError, match="quantization.backend"):
        Conf({"quantization": {"backend": "tfmot"}})
    with pytest.raises(TunerInputError, match="'tfmot' does not exist"):
        make_realizer("tfmot", walk(cnn), ArrayData([x[:8]]))


def test_tuning_with_the_denylist_backend(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    conf = Conf(fast_conf(workspace={"path": str(tmp_path)}, exit_policy={"max_trials": 4, "timeout": 3600}))
    result = TpeTuneStrategy(cnn, conf, x[:64], eval_dataloader=(xt, yt)).traverse()
    assert result.trials == 4 and result.realization["backend"] == "denylist"
    for record in result.history:
        assert record.status == "ok"
        assert set(record.int8_units) == int8_units(record.config)  # what was asked is what was built
    assert accuracy(result.tflite_model, xt, yt) == pytest.approx(result.accuracy)
