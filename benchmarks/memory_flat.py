"""Does a long run keep its memory flat? Peak RSS after 50 and after N trials.

    python benchmarks/memory_flat.py [--trials 300] [--backend annotate]

A 10-unit MLP on scikit-learn's digits (2^10 configurations, so every trial is a new one),
tuned with max_trials=N and no early stop; prints the process's peak and current RSS after
trial 1, 50, 100, ... N.
"""
import argparse
import os
import resource
import sys
import tempfile
import time


import tf_tpe_tuner
from tf_tpe_tuner._tf import keras
from sklearn.datasets import load_digits


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--backend", default=None)
    args = parser.parse_args()
    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,), name="features")
    h = inputs
    for i in range(9):
        h = keras.layers.Dense(32, activation="relu", name=f"dense{i}")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="out")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:1000], y[:1000], epochs=5, verbose=0)
    conf = {"evaluation": {"performance": {"warmup": 5, "iteration": 50}},
            "tuning": {"exit_policy": {"max_trials": args.trials, "timeout": 24 * 3600},
                       "accuracy_criterion": {"relative": 0.5}}}
    if args.backend:
        conf["quantization"] = {"backend": args.backend}
    marks = {1, 50} | set(range(100, args.trials + 1, 50))
    start = time.monotonic()

    def on_trial_end(record):
        if record.trial in marks:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"trial {record.trial:4d}: peak RSS {peak:7.1f} MiB, now {rss_mib():7.1f} MiB, "
                  f"{time.monotonic() - start:6.1f} s", flush=True)

    print("$ python " + " ".join(sys.argv))
    with tempfile.TemporaryDirectory() as out:
        tf_tpe_tuner.tune(model, conf, x[:100], eval_data=(x[1000:], y[1000:]), output_dir=out,
                          q_hooks={"on_trial_end": on_trial_end})
    return 0


if __name__ == "__main__":
    sys.exit(main())
