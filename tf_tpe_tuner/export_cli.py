"""tf-tpe-export: rebuild a tuned TFLite model from checked-in files, without searching.

    tf-tpe-export --model=model.keras --config=out/best_config.yaml --calib_data=calib.npz \\
        --output=model.tflite [--input_type=int8] [--output_type=int8] [--batch=1] \\
        [--keras_io_names] [--eval_data=eval.npz [--conf=conf.yaml] [--tolerance=0]]

Exit status, as for tf-tpe-tune: 0 the model was written (and reproduces the recorded int8
units, and the recorded accuracy when --eval_data is given), 1 a reproduction check failed
(the model is still written), 2 bad input (flags, files, model, data: a one-line message),
3 an internal error.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

from . import _cli_common

# Own flag set: tf-tpe-tune's flags live in absl's global one, and both modules can be
# imported in one process (tests, `python -m`).
FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "The tuned Keras model: .keras, .h5 or SavedModel directory (tf_keras).",
                    flag_values=FLAGS)
flags.DEFINE_string("config", None, "best_config.yaml written by tf-tpe-tune.", flag_values=FLAGS)
flags.DEFINE_string("calib_data", None, ".npz with the calibration data used for tuning (array x, "
                    "or one array per model input).", flag_values=FLAGS)
flags.DEFINE_string("output", None, "Where to write the TFLite model.", flag_values=FLAGS)
flags.DEFINE_enum("input_type", None, ["float32", "int8"], "Model input type (default: as tuned, float32). "
                  "int8 needs the unit reading the input to be int8.", flag_values=FLAGS)
flags.DEFINE_enum("output_type", None, ["float32", "int8"], "Model output type (default: as tuned, "
                  "float32). int8 needs the unit writing the output to be int8.", flag_values=FLAGS)
flags.DEFINE_enum("batch", None, ["1", "dynamic"], "Batch size: 1 (a static model) or dynamic "
                  "(default: as tuned, dynamic). A model that fixes its batch (pretrained models as "
                  "shipped, inputs without a dynamic batch) keeps it: it runs one sample at a time.",
                  flag_values=FLAGS)
flags.DEFINE_boolean("keras_io_names", False, "Name the inputs and outputs after the Keras model's "
                     "inputs and outputs, with a serving_default signature.", flag_values=FLAGS)
flags.DEFINE_string("eval_data", None, "The tuning's evaluation data (.npz; a .npy of inputs when no "
                    "metric is topk): check that the rebuilt model gives the accuracy recorded in the "
                    "config, scored as the tuning scored it.", flag_values=FLAGS)
flags.DEFINE_string("conf", None, "The tuning conf, for the metrics of the --eval_data check (every "
                    "output's metric and criterion, combine; default: top-1 accuracy).", flag_values=FLAGS)
flags.DEFINE_float("tolerance", 0.0, "Accepted absolute difference from the recorded accuracy.",
                   lower_bound=0, flag_values=FLAGS)
flags.DEFINE_boolean("allow_unsafe_model", False, "Load .h5/SavedModel models with Lambda layers "
                     "and .keras files outside safe mode.", flag_values=FLAGS)

EXIT_OK, EXIT_CHECK_FAILED = 0, 1
PROG = "tf-tpe-export"


def fail(message: str) -> None:
    _cli_common.fail(PROG, message)


def parse_flags(argv: list[str]) -> list[str]:
    _cli_common.help_if_asked(argv, __doc__, FLAGS, "model")
    rest = _cli_common.parse_or_fail(PROG, FLAGS, argv)
    flags.FLAGS.mark_as_parsed()  # absl's app.run checks its global flag set
    return rest


def check_flags() -> None:
    for name, what in (("model", "a .keras or .h5 file or a SavedModel directory"),
                       ("config", "best_config.yaml written by tf-tpe-tune"),
                       ("calib_data", "an .npz file"), ("output", "the TFLite file to write")):
        if not getattr(FLAGS, name):
            fail(f"--{name} is required ({what})")
    for name in ("model", "config", "calib_data", "eval_data", "conf"):
        path = getattr(FLAGS, name)
        if path and not os.path.exists(path):
            fail(f"--{name} file {path} does not exist")
    out = FLAGS.output
    if os.path.isdir(out):
        fail(f"--output {out} is a directory, expected a file name")
    parent = os.path.dirname(os.path.abspath(out))
    if os.path.exists(parent) and not os.path.isdir(parent):
        fail(f"--output {out}: {parent} is not a directory")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    check_flags()
    _cli_common.one_line_warnings(PROG)
    return _cli_common.run_guarded(PROG, _run, "interrupted; nothing written")


def _run() -> int:
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)  # the converter's chatter
    from .batching import fixed_batch
    from .conf import Conf
    from .export import write_atomic
    from .model_io import load_model
    from .rebuild import check_accuracy, load_best_config, rebuild
    from .run_setup import model_graph

    config = load_best_config(FLAGS.config)
    conf = Conf(FLAGS.conf) if FLAGS.conf else None
    model = load_model(FLAGS.model, allow_unsafe=FLAGS.allow_unsafe_model)
    graph = model_graph(model, config["realization"]["backend"])
    exported = rebuild(model, config, FLAGS.calib_data, input_type=FLAGS.input_type,
                       output_type=FLAGS.output_type, batch=FLAGS.batch,
                       keras_io_names=FLAGS.keras_io_names, graph=graph)
    status = EXIT_OK
    checked = None
    if FLAGS.eval_data:
        checked = check_accuracy(exported, FLAGS.eval_data, conf, FLAGS.tolerance, graph=graph)
    write_atomic(FLAGS.output, exported.tflite_model)
    io = exported.io
    print(f"rebuilt {len(exported.int8_units)}/{len(config['units'])} units int8 "
          f"({', '.join(exported.int8_units) or 'none'}) with the {config['realization']['backend']} "
          f"realizer; input {io['input_type']}, output {io['output_type']}, batch {io['batch']}"
          f"{' (fixed by the model: one sample at a time)' if fixed_batch(graph.input_shapes) else ''}, "
          f"inputs {', '.join(exported.input_names)}, outputs {', '.join(exported.output_names)}")
    if not exported.int8_units_match:
        print(f"{PROG}: check failed: the tuned model had int8 units "
              f"{', '.join(exported.recorded_int8_units) or 'none'}, the rebuilt one has "
              f"{', '.join(exported.int8_units) or 'none'}", file=sys.stderr)
        status = EXIT_CHECK_FAILED
    if checked is not None:
        line = (f"accuracy {exported.accuracy:.6f} on {FLAGS.eval_data}, recorded "
                f"{float(exported.recorded_accuracy):.6f} (tolerance {FLAGS.tolerance:g})")
        if checked:
            print(f"check ok: {line}")
        else:
            print(f"{PROG}: check failed: {line}", file=sys.stderr)
            status = EXIT_CHECK_FAILED
    print(f"wrote {FLAGS.output} ({len(exported.tflite_model)} bytes)")
    return status


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
