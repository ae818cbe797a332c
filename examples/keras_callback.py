"""Tune while training: a Keras callback that tunes the model every 5 epochs and at the end.

    python examples/keras_callback.py [--workdir callback_out]

Trains the demo CNN on scikit-learn's digits for 10 epochs with `TpeTuningCallback`; the
tunings land in callback_out/epoch_005/, epoch_010/ and final/ (the same as epoch_010/: the
weights did not change after it, so it is copied, not searched again). Under a minute on
2 cores.
"""
import argparse
import sys

from tf_tpe_tuner.callback import TpeTuningCallback

from demo import build_cnn, digits, keras  # the demo's CNN, data and tf_keras, beside this file

CONF = {
    "quantization": {"calibration": {"sampling_size": 200}},
    "tuning": {"accuracy_criterion": {"relative": 0.01},
               "exit_policy": {"max_trials": 4, "timeout": 300}},
    "evaluation": {"performance": {"iteration": 100}},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="callback_out")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_val, y_val) = digits()
    model = build_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    tuning = TpeTuningCallback(CONF, x_train[:200], (x_val, y_val), args.workdir,
                               every_n_epochs=5, overwrite=True, progress="auto")
    history = model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=2, callbacks=[tuning])

    print("tpe_speedup per tuned epoch:", history.history.get("tpe_speedup"))
    if tuning.result is None:
        print("every tuning failed:", tuning.errors)
        return 1
    print(f"last tuning: {', '.join(tuning.result.int8_units)} int8, "
          f"accuracy {tuning.result.accuracy:.4f}, {tuning.result.speedup:.2f}x faster; "
          f"folders: {', '.join(tuning.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
