"""Keras 3 models and plain TensorFlow SavedModels on the default backend (issue 12, part): they
are converted to their float TFLite model and tuned through its graph, with no tf_keras model."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import FAST_PERF
from cost_latency import int8_pays
from tf_tpe_tuner import TunerInputError, tune
from tf_tpe_tuner._tf import tf
from tf_tpe_tuner.run_setup import model_graph

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
CONF = {"evaluation": {"performance": FAST_PERF}}


def keras3_functional():
    """Digits CNN in Keras 3: a SeparableConv2D and a residual Add (layers outside tfmot's reach
    on the old path), trained for a few epochs."""
    import keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inputs)
    s = keras.layers.SeparableConv2D(16, 3, padding="same", activation="relu", name="sep")(h)
    h = keras.layers.Add(name="res")([h, s])
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv")(h)
    h = keras.layers.Flatten(name="flat")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(h)
    return keras.Model(inputs, outputs, name="k3_cnn")


def keras3_sequential():
    import keras
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(16, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")], name="k3_seq")


def keras3_nested():
    import keras
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((8, 8, 16))
    block = keras.Model(inner_in, keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inner_in),
                        name="block")
    inputs = keras.Input((8, 8, 1))
    h = block(keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs))
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(h)),
                       name="k3_nested")


def keras3_subclassed():
    import keras

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="k3_sub")
            self.conv = keras.layers.Conv2D(16, 3, activation="relu")
            self.flat = keras.layers.Flatten()
            self.head = keras.layers.Dense(10, activation="softmax")

        def call(self, x):
            return self.head(self.flat(self.conv(x)))
    keras.utils.set_random_seed(0)
    net = Net()
    net(np.zeros((1, 8, 8, 1), np.float32))
    return net


def trained(model, digits, epochs=6):
    (x, y), _ = digits
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


@pytest.mark.parametrize("build,units", [(keras3_sequential, 3), (keras3_nested, 4), (keras3_subclassed, 3)])
def test_keras3_models_of_every_shape_are_tuned(build, units, digits, tmp_path):
    (x, _), (xt, yt) = digits
    model = trained(build(), digits, epochs=3)
    assert len(model_graph(model).units) >= units
    result = tune(model, CONF, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path), report=False)
    assert result.handed_back is not None and result.trials >= 1
    assert result.met_criterion


@pytest.mark.slow
def test_a_keras3_file_is_tuned_from_the_command_line(digits, tmp_path):
    """Saved by Keras 3 (once refused): SeparableConv2D and the residual Add are units now."""
    (x, _), (xt, yt) = digits
    model = trained(keras3_functional(), digits)
    model.save(tmp_path / "k3.keras")
    np.savez(tmp_path / "calib.npz", x=x[:100])
    np.savez(tmp_path / "eval.npz", x=xt, y=yt)
    (tmp_path / "conf.yaml").write_text(yaml.safe_dump(CONF))
    dry = subprocess.run([sys.executable, "-m", "tf_tpe_tuner", f"--model={tmp_path / 'k3.keras'}", "--dry_run"],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert dry.returncode == 0, dry.stderr
    shown = [line.split()[0] for line in dry.stdout.splitlines() if line.startswith("  ")]
    # units named after the Keras layers: the separable conv's two halves, the Add, the softmax
    assert {"stem", "sep", "sep:conv_2d", "res", "conv", "head", "head:softmax"} <= set(shown), dry.stdout
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "tf_tpe_tuner", f"--model={tmp_path / 'k3.keras'}",
                          f"--conf={tmp_path / 'conf.yaml'}", f"--calib_data={tmp_path / 'calib.npz'}",
                          f"--eval_data={tmp_path / 'eval.npz'}", f"--output_dir={out}"],
                         env=ENV, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    summary = json.loads((out / "summary.json").read_text())
    # what ends up int8 depends on the CPU (on some, int8 convolutions of this size do not pay);
    # never slower than float, and every unit was realized in int8 by the search, on any CPU
    assert summary["met_criterion"] and summary["speedup"] >= 1.0, summary
    assert summary["trials"] > 1
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()[1:]]
    assert set().union(*(r["int8_units"] for r in records)) == set(model_graph(model).unit_names)
    config = yaml.safe_load((out / "best_config.yaml").read_text())
    assert (summary["handed_back"] == "quantized") == bool(config["int8_units"])


def test_a_plain_savedmodel_is_tuned_through_its_signature(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits

    class Served(tf.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec((None, 8, 8, 1), tf.float32, name="image")])
        def serve(self, image):
            return {"probabilities": self.model(image, training=False)}

    module = Served(cnn)
    tf.saved_model.save(module, str(tmp_path / "served"), signatures={"predict": module.serve})
    with pytest.raises(TunerInputError, match="no signature 'serving_default' .*predict"):
        tune(str(tmp_path / "served"), CONF, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path / "a"))
    from tf_tpe_tuner.frontends import SavedModelSource
    result = tune(SavedModelSource(str(tmp_path / "served"), "predict"), CONF, x[:64], eval_data=(xt, yt),
                  output_dir=str(tmp_path / "b"), report=False, latency_func=int8_pays)  # on any CPU
    assert result.met_criterion and result.handed_back == "quantized"
    assert len(result.config) == 6  # conv x3, fc x2, softmax: the graph's units


def test_the_keras_callback_tunes_in_keras3_training(digits, tmp_path):
    from tf_tpe_tuner.callback import TpeTuningCallback
    (x, y), (xt, yt) = digits
    model = keras3_sequential()
    model.compile("adam", "sparse_categorical_crossentropy")
    tuning = TpeTuningCallback({**CONF, "tuning": {"exit_policy": {"max_trials": 2}}}, x[:64], (xt, yt),
                               str(tmp_path / "out"))
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[tuning])
    assert tuning.result is not None and not tuning.errors and tuning.result.met_criterion
    assert (tmp_path / "out" / "final" / "best_model.tflite").exists()
    weights = [w.copy() for w in model.get_weights()]
    tuning.tune_now("again")
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))  # the model stays yours
