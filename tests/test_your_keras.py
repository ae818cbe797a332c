"""`import tf_tpe_tuner` leaves the user's Keras alone (issue 12, item 2): a Keras 3 user who
imports the package and tunes, on the default backend and on the annotation backend (which loads
tfmot, whose import would select Keras 2 for the whole process), keeps Keras 3 everywhere."""
import json
import subprocess
import sys

from test_quiet import CLEAN_ENV

USER_PROGRAM = r"""
import json, os, sys
import numpy as np
import keras                                   # a Keras 3 user's program
import tensorflow as tf
from sklearn.datasets import load_digits

seen = {"before": [keras.__version__, os.environ.get("TF_USE_LEGACY_KERAS")]}
import tf_tpe_tuner
digits = load_digits()
x = (digits.images[..., None] / 16.0).astype(np.float32)
y = digits.target.astype(np.int64)
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(x[:1000], y[:1000], epochs=2, verbose=0)
conf = {"tuning": {"exit_policy": {"max_trials": 2}},
        "evaluation": {"performance": {"warmup": 1, "iteration": 3}}}
out = sys.argv[1]
tf_tpe_tuner.tune(model, conf, x[:100], eval_data=(x[1000:1300], y[1000:1300]), output_dir=out + "/k3")
seen["default_backend"] = [keras.__version__, tf.keras.__version__, os.environ.get("TF_USE_LEGACY_KERAS"),
                           "tensorflow_model_optimization" in sys.modules]

import tf_keras                                # a tf_keras model on the annotation backend: tfmot loads
legacy = tf_keras.Sequential([tf_keras.Input((8, 8, 1)), tf_keras.layers.Conv2D(8, 3, activation="relu"),
                              tf_keras.layers.Flatten(), tf_keras.layers.Dense(10, activation="softmax")])
legacy.compile("adam", "sparse_categorical_crossentropy")
legacy.fit(x[:1000], y[:1000], epochs=2, verbose=0)
tf_tpe_tuner.tune(legacy, {**conf, "quantization": {"backend": "annotate"}}, x[:100],
                  eval_data=(x[1000:1300], y[1000:1300]), output_dir=out + "/annotate")
fresh = keras.layers.Dense(2)
seen["annotate_backend"] = [keras.__version__, tf.keras.__version__, os.environ.get("TF_USE_LEGACY_KERAS"),
                            "tensorflow_model_optimization" in sys.modules]
seen["tf.keras layer is Keras 3"] = type(tf.keras.layers.Dense(2)).__module__.startswith("keras.")
print("SEEN " + json.dumps(seen))
"""


def test_a_keras3_user_keeps_keras3_while_tuning(tmp_path):
    env = {k: v for k, v in CLEAN_ENV.items() if k != "TF_USE_LEGACY_KERAS"}
    proc = subprocess.run([sys.executable, "-c", USER_PROGRAM, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("SEEN "))[5:])
    version, legacy_flag = seen["before"]
    assert version.startswith("3.") and legacy_flag is None
    assert seen["default_backend"] == [version, version, None, False]  # tfmot not even imported
    assert seen["annotate_backend"] == [version, version, None, True]
    assert seen["tf.keras layer is Keras 3"]
