"""A real model with two inputs and two outputs, trained on scikit-learn's digits: the image
(float32) and an int32 id (the ink bucket: the image's mean intensity in tenths of 0.5, read
through an Embedding) in; the digit's class (softmax) and the mean pixel intensity (regression)
out. Shared by test_multi_output.py and test_cli_outputs.py."""
import numpy as np

from tf_tpe_tuner._tf import keras, tf

OUTPUTS = ["digit", "intensity"]


def ink_bucket(x: np.ndarray) -> np.ndarray:
    return np.clip((x.mean(axis=(1, 2, 3)) * 20).astype("int32"), 0, 9).reshape(-1, 1)


def intensity(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(1, 2, 3)).reshape(-1, 1).astype("float32")


def build_two_headed(keras_module=keras) -> "keras.Model":
    k = keras_module
    image = k.Input((8, 8, 1), name="image")
    ids = k.Input((1,), name="ink", dtype="int32")
    h = k.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(image)
    h = k.layers.MaxPooling2D(name="pool")(h)
    h = k.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(h)
    h = k.layers.Flatten(name="flat")(h)
    e = k.layers.Flatten(name="ink_flat")(k.layers.Embedding(10, 4, name="ink_embedding")(ids))
    h = k.layers.Dense(64, activation="relu", name="fc")(k.layers.Concatenate(name="join")([h, e]))
    # the regression head is built first: the outputs' order is the model's, not the graph's
    reg = k.layers.Dense(1, name="intensity")(h)
    cls = k.layers.Dense(10, activation="softmax", name="digit")(h)
    return k.Model([image, ids], [cls, reg], name="two_headed")


def train_two_headed(digits, keras_module=keras, epochs: int = 12) -> "keras.Model":
    (x, y), _ = digits
    keras_module.utils.set_random_seed(0)
    model = build_two_headed(keras_module)
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 20.0])
    model.fit([x, ink_bucket(x)], [y, intensity(x)], epochs=epochs, batch_size=32, verbose=0)
    return model


def to_tflite(model) -> bytes:
    """A converter-made float .tflite of a tf_keras model, the int32 input kept int32."""
    specs = [tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype, name=name)
             for t, name in zip(model.inputs, model.input_names)]
    concrete = tf.function(lambda *xs: model(list(xs), training=False), input_signature=specs).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.experimental_lower_to_saved_model = False
    return converter.convert()


def inputs_of(x: np.ndarray) -> dict:
    return {"image": x, "ink": ink_bucket(x)}
