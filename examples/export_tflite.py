"""Rebuild a tuned model from checked-in files, as an export pipeline would, with `tf-tpe-export`.

    python examples/export_tflite.py [--workdir export_out]

1. Makes the files a repository would hold: model.keras, calib.npz, eval.npz, conf.yaml, and
   a tuning run's best_config.yaml (`tf-tpe-tune`; the conf keeps the first and last units
   int8 with op_wise, so that the model can take and give int8 tensors).
2. Runs `tf-tpe-export` on them: int8 input and output, batch 1, input/output names from the
   Keras model, and the --eval_data check that the rebuilt model has the recorded accuracy. On a
   CPU where int8 does not pay, the float model is handed back: it takes and gives float32.
3. Does the same from Python with `tf_tpe_tuner.rebuild.rebuild()`, float I/O.
About a minute and a half on 2 cores.
"""
import argparse
import os
import subprocess
import sys

import numpy as np

from demo import build_cnn, digits, keras  # the demo's CNN, data and tf_keras, beside this file

CONF = """\
quantization:
  calibration: {sampling_size: 200}
  op_wise:                      # int8 at both ends: int8 input and output become possible
    'conv1|logits|logits:softmax': {activation: {dtype: [int8]}}
tuning:
  accuracy_criterion: {relative: 0.01}
  exit_policy: {max_trials: 4, timeout: 300}
evaluation:
  performance: {iteration: 100}
"""


def command(*args: str) -> int:
    """Run one of the package's commands (`python -m` works without the venv's bin on PATH)."""
    print("$", " ".join(args))
    return subprocess.call([sys.executable, "-m", *args])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="export_out")
    args = parser.parse_args()
    path = lambda name: os.path.join(args.workdir, name)  # noqa: E731
    os.makedirs(args.workdir, exist_ok=True)

    # 1. The checked-in files.
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = digits()
    model = build_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
    model.save(path("model.keras"))
    np.savez(path("calib.npz"), x=x_train[:200])
    np.savez(path("eval.npz"), x=x_test, y=y_test)
    with open(path("conf.yaml"), "w") as f:
        f.write(CONF)
    status = command("tf_tpe_tuner", f"--model={path('model.keras')}", f"--conf={path('conf.yaml')}",
                     f"--calib_data={path('calib.npz')}", f"--eval_data={path('eval.npz')}",
                     f"--output_dir={path('tuned')}", "--overwrite")
    if status not in (0, 1):  # 1: criterion missed, the best attempt is still there
        return status

    # 2. The export command: tf-tpe-export (here through python -m).
    from tf_tpe_tuner.best_config import load_best_config

    io = "float32" if load_best_config(path("tuned/best_config.yaml"))["handed_back"] == "float" else "int8"
    if io == "float32":
        print("the float model was handed back (no quantized configuration is faster on this CPU): "
              "float32 input and output")
    exported_file = path(f"model_{io}_io.tflite")
    status = command("tf_tpe_tuner.export_cli", f"--model={path('model.keras')}",
                     f"--config={path('tuned/best_config.yaml')}", f"--calib_data={path('calib.npz')}",
                     f"--output={exported_file}", f"--input_type={io}", f"--output_type={io}",
                     "--batch=1", "--keras_io_names", f"--eval_data={path('eval.npz')}")
    if status != 0:
        return status

    # 3. The same from Python: float I/O, dynamic batch, as tuned.
    from ai_edge_litert.interpreter import Interpreter
    from tf_tpe_tuner.model_io import load_keras_model
    from tf_tpe_tuner.model_compare import same_model
    from tf_tpe_tuner.rebuild import check_accuracy, rebuild

    saved = load_keras_model(path("model.keras"))
    exported = rebuild(saved, path("tuned/best_config.yaml"), path("calib.npz"))
    ok = check_accuracy(exported, path("eval.npz"))
    with open(path("tuned/best_model.tflite"), "rb") as f:
        same = same_model(exported.tflite_model, f.read())
    print(f"python rebuild: int8 units {', '.join(exported.int8_units)}; accuracy {exported.accuracy:.4f} "
          f"(recorded {exported.recorded_accuracy:.4f}): {'ok' if ok else 'MISMATCH'}; "
          f"same ops and weights as tuned/best_model.tflite: {same}")

    interpreter = Interpreter(model_path=exported_file)
    runner = interpreter.get_signature_runner()
    detail = interpreter.get_input_details()[0]
    sample = x_test[:1].astype(np.float32)
    if io == "int8":
        scale, zero = detail["quantization"]
        sample = np.clip(np.round(sample / scale) + zero, -128, 127).astype(np.int8)
    output = runner(image=sample)["logits"]
    print(f"{os.path.basename(exported_file)}: signature {interpreter.get_signature_list()}, input {detail['dtype'].__name__} "
          f"{detail['shape_signature'].tolist()}; predicts {int(output.argmax())} for a {int(y_test[0])}")
    return 0 if ok and same else 1


if __name__ == "__main__":
    sys.exit(main())
