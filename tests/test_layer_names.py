"""Units are named after the Keras layers they come from, exactly (issue 12, item 4).

Checked independently of the name mapping: a conv or matmul unit's weights in the float TFLite
model must be the weights of the Keras layer it is named after. The Keras 3 model sets the
name trap (its own scopes call layer `conv2d` `conv2d_1`, the name of another layer here), nests
a model whose layer is also named `conv2d`, and calls one Dense twice.
"""
import numpy as np

from tf_tpe_tuner.run_setup import model_graph


def _op_weights(graph) -> dict[str, np.ndarray]:
    """{unit name: its op's weight tensor (input 1) as stored in the float TFLite model}."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(graph.float_model))
    sg = model.subgraphs[0]
    out = {}
    for op in sg.operators:
        node = sg.tensors[op.outputs[0]].name.decode()
        unit = graph.unit_of_layer.get(node)
        kind = fu.opcode_to_name(model, op.opcodeIndex)
        if unit is None or kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        tensor = sg.tensors[op.inputs[1]]
        data = model.buffers[tensor.buffer].data
        out[unit] = np.frombuffer(bytes(data), np.float32).reshape(tensor.shape)
    return out


def _keras_kernel(layer, kind: str) -> np.ndarray:
    kernel = layer.get_weights()[0]
    if kind == "dense":
        return kernel.T  # TFLite: (out, in)
    return np.transpose(kernel, (3, 0, 1, 2))  # HWIO -> OHWI


def keras3_trap_model():
    import keras

    keras.utils.set_random_seed(0)
    inner_in = keras.Input((8, 8, 8))
    block = keras.Model(inner_in, keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2d")(inner_in),
                        name="block")
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2d_1")(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv2d")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = block(h)
    flat = keras.layers.Flatten(name="flatten")(h)
    shared = keras.layers.Dense(16, activation="relu", name="shared")
    a = shared(keras.layers.Dense(16, name="dense")(flat))
    b = shared(keras.layers.Dense(16, name="dense_1")(flat))
    mixed = keras.layers.Add(name="add")([a, b])
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(mixed), name="trap")


def tf_keras_nested_model():
    from tf_tpe_tuner._tf import keras

    keras.utils.set_random_seed(0)
    inner_in = keras.Input((8, 8, 8))
    block = keras.Model(inner_in, keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inner_in),
                        name="block")
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    h = block(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(h), name="nested")


def test_keras3_units_are_named_after_their_layers_exactly():
    model = keras3_trap_model()
    graph = model_graph(model)
    assert graph.unit_names == ["conv2d_1", "conv2d", "block/conv2d", "dense_1", "dense", "shared", "shared#2",
                                "add", "head", "head:softmax"]  # in op order
    weights = _op_weights(graph)
    layers = {"conv2d_1": model.get_layer("conv2d_1"), "conv2d": model.get_layer("conv2d"),
              "block/conv2d": model.get_layer("block").get_layer("conv2d"),
              "dense": model.get_layer("dense"), "dense_1": model.get_layer("dense_1"),
              "head": model.get_layer("head")}
    for unit, layer in layers.items():
        kind = "dense" if unit.startswith(("dense", "head")) else "conv"
        np.testing.assert_array_equal(weights[unit], _keras_kernel(layer, kind), err_msg=unit)
    # the shared layer's two calls: both its weights, one unit each
    for unit in ("shared", "shared#2"):
        np.testing.assert_array_equal(weights[unit], _keras_kernel(model.get_layer("shared"), "dense"))


def test_names_are_the_same_across_conversions():
    model = keras3_trap_model()
    assert model_graph(model).unit_names == model_graph(model).unit_names


def test_tf_keras_units_are_named_after_their_layers_outer_inner():
    model = tf_keras_nested_model()
    graph = model_graph(model)
    assert graph.unit_names == ["conv", "block/conv", "head", "head:softmax"]
    weights = _op_weights(graph)
    np.testing.assert_array_equal(weights["conv"], _keras_kernel(model.get_layer("conv"), "conv"))
    np.testing.assert_array_equal(weights["block/conv"],
                                  _keras_kernel(model.get_layer("block").get_layer("conv"), "conv"))
    np.testing.assert_array_equal(weights["head"], _keras_kernel(model.get_layer("head"), "dense"))
