"""The bundled demo: train a small CNN on scikit-learn's digits, then tune it from the command line.

    python examples/demo.py [--workdir demo_out]

Writes demo_out/model.keras, calib.npz, eval.npz and conf.yaml, then runs
`tf-tpe-tune` on them (results in demo_out/result/). Takes about a minute on 2 cores.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
from sklearn.datasets import load_digits

# tf_keras, through the package: it keeps TensorFlow's native
# start-up lines (oneDNN, CUDA) off the terminal (`import tf_keras` alone would print them)
from tf_tpe_tuner._tf import keras

CONF = """\
model:
  name: digits_cnn
quantization:
  calibration:
    sampling_size: 200
tuning:
  accuracy_criterion:
    relative: 0.01
  exit_policy:
    timeout: 120        # search for up to 2 minutes instead of stopping at the first hit
    max_trials: 12
  random_seed: 1978
evaluation:
  accuracy:
    metric:
      topk: 1
  performance:
    num_threads: 1
"""


def digits(seed: int = 0):
    """Digits 8x8 scaled to [0, 1], split 1000 train / 797 held out."""
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    order = np.random.RandomState(seed).permutation(len(x))
    x, y = x[order], data.target[order]
    return (x[:1000], y[:1000]), (x[1000:], y[1000:])


def build_cnn() -> keras.Model:
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="conv2")(h)
    h = keras.layers.BatchNormalization(name="bn2")(h)
    h = keras.layers.ReLU(name="relu2")(h)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(64, activation="relu", name="fc1")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="logits")(h)
    return keras.Model(inputs, outputs, name="digits_cnn")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="demo_out")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = digits()
    model = build_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"trained the demo CNN: Keras test accuracy {acc:.4f}")
    path = lambda name: os.path.join(args.workdir, name)  # noqa: E731
    model.save(path("model.keras"))
    np.savez(path("calib.npz"), x=x_train[:200])
    np.savez(path("eval.npz"), x=x_test, y=y_test)
    with open(path("conf.yaml"), "w") as f:
        f.write(CONF)
    command = [sys.executable, "-m", "tf_tpe_tuner", f"--model={path('model.keras')}",
               f"--conf={path('conf.yaml')}", f"--calib_data={path('calib.npz')}",
               f"--eval_data={path('eval.npz')}", f"--output_dir={path('result')}", "--overwrite"]
    print("$", " ".join(command))
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
