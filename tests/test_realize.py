"""The realization step on real models: annotate, apply, calibrate, convert, read back."""
import numpy as np
import pytest

from tf_tpe_tuner import walk
from tf_tpe_tuner._tf import tf
from tf_tpe_tuner.data import ArrayData
from tf_tpe_tuner.evaluate import TFLiteModel
from tf_tpe_tuner.realize import AnnotationRealizer, build_annotated_model, calibrate, \
    int8_flat_layers, plan_annotations, quantize_apply


def accuracy(tflite, x, y):
    pred = TFLiteModel(tflite, num_threads=1).predict(ArrayData([x], y), 256)
    return float(np.mean(pred.argmax(-1) == y))


def converter_ptq(model, calib):
    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    return converter.convert()


@pytest.mark.parametrize("fixture", ["cnn", "residual"])
def test_all_int8_matches_converter_ptq(fixture, request, digits):
    model = request.getfixturevalue(fixture)
    (x, _), (xt, yt) = digits
    calib = x[:100]
    graph = walk(model)
    realization = AnnotationRealizer(graph, ArrayData([calib])).realize(graph.unit_names)
    assert realization.int8_units == frozenset(graph.unit_names)
    ours = accuracy(realization.tflite_model, xt, yt)
    ptq = accuracy(converter_ptq(model, calib), xt, yt)
    assert ours >= ptq - 0.005, (ours, ptq)
    assert ours > 0.9


def test_uncalibrated_ranges_would_be_wrong(cnn, digits):
    """The reason calibration exists: tfmot's fresh ranges ruin the model."""
    (x, _), (xt, yt) = digits
    graph = walk(cnn)
    qmodel = quantize_apply(build_annotated_model(graph, plan_annotations(graph, graph.unit_names)))
    from tf_tpe_tuner.realize import convert
    raw = convert(qmodel, graph.input_shapes, graph.input_names, True)
    assert accuracy(raw, xt, yt) < 0.5
    assert calibrate(qmodel, ArrayData([x[:64]]), 32) > 0
    calibrated = convert(qmodel, graph.input_shapes, graph.input_names, True)
    assert accuracy(calibrated, xt, yt) > 0.9


def op_types(tflite):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interp = Interpreter(model_content=tflite,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    out = []
    for op in interp._get_ops_details():
        dtype = interp._get_tensor_details(op["outputs"][0], 0)["dtype"]
        out.append((op["op_name"], np.dtype(dtype).name))
    return out


def test_mixed_configuration_has_float_and_int8_ops(cnn, digits):
    (x, _), _ = digits
    graph = walk(cnn)
    realization = AnnotationRealizer(graph, ArrayData([x[:64]])).realize(["conv1", "fc1"])
    assert realization.int8_units == {"conv1", "fc1"}
    ops = op_types(realization.tflite_model)
    assert ("CONV_2D", "int8") in ops and ("CONV_2D", "float32") in ops
    assert ("FULLY_CONNECTED", "int8") in ops and ("FULLY_CONNECTED", "float32") in ops


@pytest.mark.parametrize("fp32_unit", ["conv2", "conv3", "fc1"])
def test_fp32_unit_between_int8_units_stays_float(cnn, digits, fp32_unit):
    """The converter quantizes a float op whose inputs and outputs carry ranges; we prevent it."""
    (x, _), _ = digits
    graph = walk(cnn)
    int8 = [u for u in graph.unit_names if u != fp32_unit]
    realization = AnnotationRealizer(graph, ArrayData([x[:64]])).realize(int8)
    assert realization.int8_units == frozenset(int8)


def test_lone_unit_after_float_layers_really_is_int8(residual, digits):
    """tfmot leaves a lone annotated layer float when its producer is not quantized."""
    (x, _), _ = digits
    graph = walk(residual)
    for unit in graph.unit_names:
        realization = AnnotationRealizer(graph, ArrayData([x[:64]])).realize([unit])
        assert realization.int8_units == {unit}, unit


def test_realizing_does_not_touch_the_users_model(cnn, digits):
    (x, _), _ = digits
    before = [w.copy() for w in cnn.get_weights()]  # BN moving mean/variance included
    graph = walk(cnn)
    AnnotationRealizer(graph, ArrayData([x[:64]])).realize(graph.unit_names)
    for a, b in zip(before, cnn.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_int8_layers_read_back_from_the_model(cnn, digits):
    (x, _), _ = digits
    graph = walk(cnn)
    realizer = AnnotationRealizer(graph, ArrayData([x[:64]]))
    float_model = realizer.realize_float().tflite_model
    assert int8_flat_layers(float_model, graph.unit_of_layer) == set()
    realization = realizer.realize(["conv2"])
    assert realization.int8_layers == ("conv2", "bn2", "relu2")


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["cnn", "residual"])
def test_every_configuration_is_realized_exactly(fixture, request, digits):
    """All 2^5 configurations: the TFLite model is int8 exactly where asked."""
    import itertools
    (x, _), _ = digits
    graph = walk(request.getfixturevalue(fixture))
    realizer = AnnotationRealizer(graph, ArrayData([x[:32]]))
    for bits in itertools.product([0, 1], repeat=len(graph.unit_names)):
        int8 = {u for u, b in zip(graph.unit_names, bits) if b}
        assert realizer.realize(int8).int8_units == int8, sorted(int8)


def test_fp32_add_relu_unit_between_int8_units_stays_float():
    """Add+ReLU is one unit; tfmot would quantize the Add's output for the ReLU's sake."""
    from tf_tpe_tuner._tf import keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    stem = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    r = keras.layers.Conv2D(8, 3, padding="same", name="conv")(stem)
    h = keras.layers.Add(name="add")([stem, r])
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, name="head")(h))
    graph = walk(model)
    assert graph.unit("add").layer_types == ("Add", "ReLU")
    x = np.random.RandomState(0).rand(16, 8, 8, 1).astype("float32")
    realizer = AnnotationRealizer(graph, ArrayData([x]))
    for int8 in ({"stem", "conv", "gap", "head"}, {"stem", "gap"}, {"conv", "head"}):
        assert realizer.realize(int8).int8_units == int8, sorted(int8)
