"""Shared fixtures: small real models trained on scikit-learn data, once per test session."""
import os


import sys

import numpy as np
import pytest

from tf_tpe_tuner._tf import keras

# The bundled demo's CNN and data split are the tests' main subjects too.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "examples"))
from demo import build_cnn  # noqa: E402
from demo import digits as demo_digits  # noqa: E402

FAST_PERF = {"warmup": 5, "iteration": 50, "num_threads": 1}


def fast_conf(**tuning):
    """A conf dict with a short latency loop; `tuning` entries go under `tuning:`."""
    return {"evaluation": {"performance": dict(FAST_PERF)}, "tuning": tuning}


@pytest.fixture(scope="session")
def digits():
    return demo_digits()


def build_nested_residual():
    """A residual block as a nested Functional model inside a Sequential-style outer graph."""
    block_in = keras.Input((8, 8, 16))
    h = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv")(block_in)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.Add(name="add")([block_in, h])
    block = keras.Model(block_in, h, name="block")
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inputs)
    h = block(h)
    h = keras.layers.AveragePooling2D(name="avg")(h)
    h = keras.layers.Flatten(name="flat")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(h)
    return keras.Model(inputs, outputs, name="residual")


def train(model, data, epochs):
    (x, y), _ = data
    keras.utils.set_random_seed(0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def cnn(digits):
    keras.utils.set_random_seed(0)
    return train(build_cnn(), digits, epochs=8)


@pytest.fixture(scope="session")
def residual(digits):
    keras.utils.set_random_seed(0)
    return train(build_nested_residual(), digits, epochs=8)


@pytest.fixture(scope="session")
def cnn_files(cnn, digits, tmp_path_factory):
    """The CNN and its data saved as a user would: model.keras, calib.npz, eval.npz."""
    (x, _), (xt, yt) = digits
    root = tmp_path_factory.mktemp("cnn_files")
    cnn.save(root / "model.keras")
    np.savez(root / "calib.npz", x=x[:100])
    np.savez(root / "eval.npz", x=xt, y=yt)
    return root


def trial_lines(path) -> list[str]:
    """history.jsonl's trial lines (its first line describes the run)."""
    import json
    from pathlib import Path

    path = Path(path)
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for i, line in enumerate(lines) if not (i == 0 and set(json.loads(line)) == {"run"})]
