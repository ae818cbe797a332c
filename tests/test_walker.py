import numpy as np
import pytest

from conftest import build_cnn
from tf_tpe_tuner import ModelNotSupportedError, TunerInputError, walk
from tf_tpe_tuner._tf import keras, tf
from tf_tpe_tuner.walker import apply_op_wise, unit_edges


def test_functional_units_fuse_bn_and_relu(cnn):
    graph = walk(cnn)
    assert graph.unit_names == ["conv1", "conv2", "conv3", "fc1", "logits"]
    assert graph.unit("conv2").layer_types == ("Conv2D", "BatchNormalization", "ReLU")
    reasons = {f.name: f for f in graph.float_layers}
    assert reasons["pool"].passthrough and reasons["flatten"].passthrough


def test_unit_edges_are_the_tensors_between_units(cnn, residual):
    # (producer, reader, elements): pass-through layers carry their producer's tensor (the pool
    # halves conv2's 8x8x32), model inputs and outputs are float ends (None)
    assert unit_edges(walk(cnn)) == [(None, "conv1", 64), ("conv1", "conv2", 1024), ("conv2", "conv3", 512),
                                     ("conv3", "fc1", 512), ("fc1", "logits", 64), ("logits", None, 10)]
    edges = unit_edges(walk(residual))
    readers = {}
    for source, reader, _ in edges:
        readers.setdefault(reader, set()).add(source)
    assert readers["block/add"] == {"stem", "block/conv"}  # the skip and the branch
    assert all(source != reader for source, reader, _ in edges)
    assert edges[-1][1] is None and edges[0][0] is None


def test_sequential():
    model = keras.Sequential([
        keras.Input((16,)), keras.layers.Dense(8, activation="relu", name="a"),
        keras.layers.Dropout(0.1, name="drop"), keras.layers.Dense(3, name="b")])
    graph = walk(model)
    assert graph.unit_names == ["a", "b"]
    assert [f.name for f in graph.float_layers] == ["drop"]


def test_nested_model_is_inlined_with_outer_inner_names(residual):
    graph = walk(residual)
    assert graph.unit_names == ["stem", "block/conv", "block/add", "avg", "head"]
    assert graph.unit("block/conv").layer_types == ("Conv2D", "BatchNormalization", "ReLU")
    x = np.random.RandomState(0).rand(4, 8, 8, 1).astype("float32")
    np.testing.assert_allclose(graph.model(x).numpy(), residual(x).numpy(), rtol=1e-5, atol=1e-6)


def test_batchnorm_depthwise_and_unsupported_layers():
    inputs = keras.Input((8, 8, 4))
    h = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(inputs)
    h = keras.layers.BatchNormalization(name="dw_bn")(h)
    h = keras.layers.ReLU(6.0, name="dw_relu")(h)
    h = keras.layers.BatchNormalization(name="lonely_bn")(h)
    h = keras.layers.LayerNormalization(name="ln")(h)
    h = keras.layers.Conv2D(4, 1, name="pw")(h)
    graph = walk(keras.Model(inputs, h))
    assert graph.unit_names == ["dw", "pw"]
    assert graph.unit("dw").layer_types == ("DepthwiseConv2D", "BatchNormalization", "ReLU")
    reasons = {f.name: f.reason for f in graph.float_layers}
    assert "BatchNormalization" in reasons["lonely_bn"]
    assert "not supported" in reasons["ln"]


def test_walking_leaves_the_users_model_alone(cnn):
    before = [w.copy() for w in cnn.get_weights()]
    graph = walk(cnn)
    assert graph.model is not cnn
    assert all(layer not in cnn.layers for layer in graph.model.layers[1:])
    for a, b in zip(before, cnn.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(tf.zeros((1, 3)))
    with pytest.raises(ModelNotSupportedError, match="subclassed"):
        walk(net)


def test_model_without_quantizable_layer_is_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.LayerNormalization()(inputs))
    with pytest.raises(ModelNotSupportedError, match="nothing to tune"):
        walk(model)


def test_keras3_model_is_refused_with_advice():
    import keras as keras3

    model = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)])
    with pytest.raises(ModelNotSupportedError, match="tf_keras"):
        walk(model)


def test_op_wise_patterns():
    graph = walk(build_cnn())
    assert apply_op_wise(graph, {"conv[12]": "fp32", "logits": "int8"}) == {
        "conv1": "fp32", "conv2": "fp32", "logits": "int8"}
    with pytest.raises(TunerInputError, match="matches no unit"):
        apply_op_wise(graph, {"nope": "fp32"})
