"""Wall-clock time for the same number of trials, local vs Ray with N workers.

    python benchmarks/ray_speedup.py [--trials 8] [--workers 2]

On MobileNetV2 (weights=None, 32x32x1, alpha 0.35, 10 classes) trained briefly on scikit-learn
digits upsampled to 32x32, realized through tfmot annotations, where a trial takes seconds. Both runs use the same conf, seed and
trial count, one after the other in this process; the ratio is printed side by side.
"""
import argparse
import sys
import tempfile
import time

import numpy as np

import tf_tpe_tuner
from tf_tpe_tuner._tf import keras, tf
from sklearn.datasets import load_digits


def digits_32():
    data = load_digits()
    x = tf.image.resize((data.images / 16.0)[..., None].astype("float32"), (32, 32)).numpy()
    order = np.random.RandomState(0).permutation(len(x))
    return x[order], data.target[order]


def mobilenet(x, y):
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 1), alpha=0.35, classes=10)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9  # the default 0.999 leaves it at 10 % on this little data
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1400], y[:1400], epochs=15, batch_size=32, verbose=0)
    return model


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print("$ python " + " ".join(sys.argv), flush=True)
    x, y = digits_32()
    model = mobilenet(x, y)
    times = {}
    for name in ("local", "ray"):
        conf = {"tuning": {"exit_policy": {"max_trials": args.trials, "timeout": 24 * 3600},
                           "executor": {"name": name, "workers": args.workers if name == "ray" else 1}},
                # the annotation path: trials of several seconds, where parallel workers pay off
                "quantization": {"backend": "annotate", "calibration": {"sampling_size": 100}}}
        with tempfile.TemporaryDirectory() as out:
            start = time.monotonic()
            result = tf_tpe_tuner.tune(model, conf, x[:100], eval_data=(x[1400:], y[1400:]), output_dir=out)
            times[name] = time.monotonic() - start
        per_trial = np.median([r.seconds for r in result.history])
        print(f"{name:5s}: {result.trials} trials in {times[name]:7.1f} s (median trial {per_trial:.1f} s), "
              f"best accuracy {result.accuracy:.4f}, latency {result.latency_ms:.4f} ms", flush=True)
    print(f"ray with {args.workers} workers is {times['local'] / times['ray']:.2f}x faster than local "
          f"for {args.trials} trials (wall clock, baseline and start-up included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
