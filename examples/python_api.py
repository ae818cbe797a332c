"""Tune from Python: train a small CNN on scikit-learn's digits, then `tf_tpe_tuner.tune()` it.

    python examples/python_api.py [--workdir api_out]

Writes api_out/: best_model.tflite, best_config.yaml, history.jsonl, summary.json, and the
report (report.md, report.json, pareto.png). Takes about a minute on 2 cores.
"""
import argparse
import os
import sys

import tf_tpe_tuner

from demo import build_cnn, digits, keras  # the demo's CNN, data and tf_keras, beside this file

CONF = {
    "quantization": {"calibration": {"sampling_size": 200}},
    "tuning": {
        "accuracy_criterion": {"relative": 0.01},      # at most 1 % below the float model
        "exit_policy": {"max_trials": 8, "timeout": 600},  # 8 trials (the timeout is a cap)
        "random_seed": 1978,
    },
    "evaluation": {"performance": {"iteration": 200, "num_threads": 1}},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="api_out")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_rest, y_rest) = digits()
    x_val, y_val = x_rest[:400], y_rest[:400]      # the search chooses on these
    x_test, y_test = x_rest[400:], y_rest[400:]    # held apart: honest final numbers
    model = build_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)

    result = tf_tpe_tuner.tune(model, CONF, x_train[:200], eval_data=(x_val, y_val),
                               output_dir=args.workdir, overwrite=True,
                               test_data=(x_test, y_test), progress="auto")

    print(f"best trial {result.best_trial}: int8 units {', '.join(result.int8_units) or 'none'}")
    print(f"  accuracy {result.accuracy:.4f} (fp32 {result.baseline.accuracy:.4f}), "
          f"latency {result.latency_ms:.4f} ms ({result.speedup:.2f}x faster), "
          f"{'meets' if result.met_criterion else 'does not meet'} the criterion")
    test = result.report["test"]
    print(f"  on {test['samples']} held-out samples: accuracy {test['best_accuracy']:.4f} "
          f"(fp32 {test['fp32_accuracy']:.4f})")
    for row in result.report["units"]:
        print(f"  {row['unit']:<8} {row['dtype']:<5} output error if alone int8: "
              f"{100 * row['sensitivity']['rel_rmse']:.2f} %")
    with open(os.path.join(args.workdir, "model.tflite"), "wb") as f:
        f.write(result.tflite_model)
    print(f"wrote {args.workdir}/model.tflite; see {args.workdir}/report.md and pareto.png")
    return 0 if result.met_criterion else 1


if __name__ == "__main__":
    sys.exit(main())
