"""The realization step on real models: annotate, apply, calibrate, convert, read back."""
import numpy as np
import pytest

from tf_tpe_tuner import realize as realize_module
from tf_tpe_tuner import walk
from tf_tpe_tuner._tf import keras, tf
from tf_tpe_tuner.data import ArrayData
from tf_tpe_tuner.evaluate import TFLiteModel
from tf_tpe_tuner.realize import AnnotationRealizer, build_annotated_model, calibrate, \
    fold_batch_norms, int8_flat_layers, plan_annotations, quantize_apply
from tf_tpe_tuner.realize_denylist import DenylistRealizer


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


def bn_model(head: str, **bn_options):
    """stem -> `head` (conv, depthwise or dense) -> BatchNormalization -> ReLU -> logits, with
    random BN statistics and head bias, so that folding has something to fold."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="stem")(inputs)
    if head == "conv":
        h = keras.layers.Conv2D(8, 3, padding="same", name="head")(h)
    elif head == "depthwise":
        h = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="head")(h)
    else:
        h = keras.layers.Dense(8, name="head")(keras.layers.Flatten(name="flat")(h))
    h = keras.layers.ReLU(name="relu")(keras.layers.BatchNormalization(name="bn", **bn_options)(h))
    if head != "dense":
        h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))
    rng = np.random.RandomState(1)
    bn = model.get_layer("bn")
    n = bn.moving_mean.shape[0]
    random = {"gamma": rng.uniform(-2, 2, n), "beta": rng.normal(0, 1, n), "moving_mean": rng.normal(0, 1, n),
              "moving_variance": rng.uniform(0.01, 4, n)}
    bn.set_weights([random[v.name.split("/")[-1].split(":")[0]] for v in bn.weights])
    model.get_layer("head").bias.assign(rng.normal(0, 0.5, n))
    return model


@pytest.mark.parametrize("head, bn_options", [("conv", {}), ("depthwise", {}), ("dense", {}),
                                              ("conv", {"scale": False})])
def test_folding_batch_norm_keeps_the_float_outputs(head, bn_options, digits):
    (x, _), _ = digits
    graph = walk(bn_model(head, **bn_options))
    weights = fold_batch_norms(graph.model)
    assert set(weights) == {"head", "bn"}
    *_, mean, variance = weights["bn"]
    np.testing.assert_array_equal(mean, 0.0)
    np.testing.assert_array_equal(variance + graph.model.get_layer("bn").epsilon, np.float32(1))
    annotated = build_annotated_model(graph, plan_annotations(graph, graph.unit_names), weights)
    np.testing.assert_allclose(annotated(x).numpy(), graph.model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_no_folding_without_beta():
    """A BN without beta cannot carry the shifted mean."""
    assert fold_batch_norms(walk(bn_model("conv", center=False)).model) == {}


def weight_scales(tflite, op_name):
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=tflite)
    op = next(op for op in interp._get_ops_details() if op["op_name"] == op_name)
    return interp._get_tensor_details(op["inputs"][1], 0)["quantization_parameters"]["scales"]


@pytest.mark.parametrize("head, op_name", [("conv", "CONV_2D"), ("depthwise", "DEPTHWISE_CONV_2D")])
def test_weights_are_quantized_as_the_converter_does(head, op_name, digits):
    """BN folded first, a depthwise kernel per output channel: the denylist backend's weights."""
    (x, _), _ = digits
    graph = walk(bn_model(head))
    calib = ArrayData([x[:64]])
    ours = AnnotationRealizer(graph, calib).realize(["head"])
    theirs = DenylistRealizer(graph, calib).realize(["head"])
    assert ours.int8_units == theirs.int8_units == {"head"}
    np.testing.assert_allclose(weight_scales(ours.tflite_model, op_name),
                               weight_scales(theirs.tflite_model, op_name), rtol=1e-5)


def test_a_q_func_gets_tfmot_s_own_scheme(digits):
    """A q_func may fine-tune: no folded BN, tfmot's per-multiplier depthwise ranges."""
    (x, _), _ = digits
    graph = walk(bn_model("depthwise"))
    seen = {}

    def q_func(qmodel):
        seen.update({v.name: v.numpy() for v in qmodel.weights})

    realization = AnnotationRealizer(graph, ArrayData([x[:64]]), q_func=q_func).realize(["head"])
    assert realization.int8_units == {"head"}
    (mean,) = [value for name, value in seen.items() if "moving_mean" in name]
    np.testing.assert_array_equal(mean, graph.model.get_layer("bn").moving_mean.numpy())
    assert seen["quant_head/depthwise_kernel_min:0"].shape == (2,)  # the depth multiplier


def test_later_realizations_reuse_the_recorded_ranges(cnn, digits, monkeypatch):
    """Ranges are the float model's, whatever the configuration: recorded once, then looked up;
    recorded again only for a quantizer not seen yet."""
    (x, _), (xt, _) = digits
    graph = walk(cnn)
    calib = ArrayData([x[:64]])
    passes = []
    recording = realize_module._recording_fake_quants
    monkeypatch.setattr(realize_module, "_recording_fake_quants",
                        lambda ranges: passes.append(ranges) or recording(ranges))
    predict = lambda tflite: TFLiteModel(tflite, num_threads=1).predict(ArrayData([xt]), 256)  # noqa: E731
    realizer = AnnotationRealizer(graph, calib)
    realizer.realize(graph.unit_names)
    assert len(passes) == 1
    # conv1 reads the model input (tfmot's QuantizeLayer, named afresh in each model); conv2 reads
    # conv1's range through a barrier and its ReLU's range is the one all-int8 has
    for int8, new_quantizer in ((["conv1", "conv3", "fc1", "logits"], False),
                                (["conv1", "conv3", "logits"], True)):  # fc1's output range: new
        before = len(passes)
        cached = realizer.realize(int8)
        assert len(passes) == before + new_quantizer
        fresh = AnnotationRealizer(graph, calib).realize(int8)
        assert cached.int8_units == fresh.int8_units == set(int8)
        np.testing.assert_array_equal(predict(cached.tflite_model), predict(fresh.tflite_model))
