"""Issue 15, item 1: the tuner on pretrained models, one table row per model.

    python benchmarks/pretrained_zoo.py [--models face_landmark,hand_landmark_full,mobilenetv2] [--seed 0]

Models: MediaPipe 0.10.14's face_landmark (1.3 ms a call) and hand_landmark_full (8-10 ms), read
from the wheel that `tests/pretrained.py` fetches and checks (sha256), with photos that
scikit-image bundles, prepared as each model's metadata says; and the zoo's 32x32 MobileNetV2
(`zoo.py`, trained on digits). No labels: the float model is the reference (fidelity criteria,
per model below). Each row: the float latency, all-int8 and the handed-back model's latency as
ratios to float (all-int8 measured side by side with float, interleaved; the handed-back one by
the run itself), the handed-back model's fidelity, the trials and the wall time of one run of
the default stop rule. Latency settings: warmup 10 / 100 iterations, 30 for hand_landmark_full
(8-10 ms a call: the fast setting). Measure on a quiet machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

import pretrained  # noqa: E402

from tf_tpe_tuner import tune  # noqa: E402
from tf_tpe_tuner.evaluate import TFLiteModel  # noqa: E402
from tf_tpe_tuner.run_setup import model_graph  # noqa: E402
from tf_tpe_tuner.realizers import make_realizer  # noqa: E402
from tf_tpe_tuner.data import ArrayData  # noqa: E402

FAST = {"warmup": 10, "iteration": 100, "num_threads": 1}
# name -> (inputs(n, seed), conf, what the criterion means)
CASES = {
    "face_landmark": (
        pretrained.faces,
        {"evaluation": {"accuracy": {"metric": "NRMSE", "outputs": {
            1: {"metric": {"agreement": {"threshold": 0.0}}, "accuracy_criterion": {"relative": 0.01}}}},
            "performance": FAST},
         "tuning": {"accuracy_criterion": {"absolute": 0.02}}},
        "landmarks NRMSE <= 0.02, face flag agreement >= 99 %"),
    "hand_landmark_full": (
        lambda n, seed: pretrained.crops("hand_landmark_full", n, seed),
        {"evaluation": {"accuracy": {"metric": "MAE", "combine": "Identity"},
                        "performance": {**FAST, "iteration": 30}},
         "tuning": {"accuracy_criterion": {"absolute": 5.0, "higher_is_better": False}}},
        "landmarks MAE <= 5 px"),
    "mobilenetv2": (
        None,
        {"evaluation": {"accuracy": {"metric": {"agreement": {}}}, "performance": FAST},
         "tuning": {"accuracy_criterion": {"relative": 0.01}}},
        "top-1 agreement >= 99 %"),
}


def inputs(name: str):
    if name == "mobilenetv2":
        from zoo import digits32, load_cases

        case = load_cases(names=["mobilenetv2"], log=lambda *a: None)[0]
        (_, _), (xt, _) = digits32()
        return case.model, case.calib_x[:64], xt[:300]
    images = CASES[name][0](48, seed=1)
    return pretrained.model_bytes(name), images[:24], images[24:]


def float_and_all_int8(model, calib):
    """(the model's graph, its float TFLiteModel, its all-int8 one calibrated on `calib`)."""
    graph = model_graph(model)
    realizer = make_realizer("denylist", graph, ArrayData([calib]))
    return (graph, TFLiteModel(realizer.realize_float().tflite_model),
            TFLiteModel(realizer.realize(graph.unit_names).tflite_model))


def row(name: str, seed: int) -> str:
    model, calib, held = inputs(name)
    _, conf, meaning = CASES[name]
    conf = {**conf, "tuning": {**conf["tuning"], "random_seed": seed}}
    graph, fp32, int8 = float_and_all_int8(model, calib)
    perf = conf["evaluation"]["performance"]
    all_int8 = int8.latency_ratio(fp32, perf["warmup"], perf["iteration"])
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = tune(model, conf, calib, eval_data=held, output_dir=out, report=False)
        wall = time.perf_counter() - start
    fidelity = ", ".join(f"{o['output']} {o['metric']} {o['best']:.4g}" for o in result.outputs or []) \
        or f"{result.metric} {result.accuracy:.4g}"
    ratio = result.latency_ms / result.baseline.latency_ms if result.latency_ms else float("nan")
    return (f"| {name} ({len(graph.units)} units) | {result.baseline.latency_ms:.2f} ms | {all_int8:.2f} | "
            f"{ratio:.2f} ({result.handed_back}, {len(result.int8_units)} int8) | {fidelity} ({meaning}) | "
            f"{result.trials} | {wall:.0f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(CASES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| model | float | all-int8 / float | handed back / float | fidelity | trials | wall |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        print(row(name, args.seed), flush=True)


if __name__ == "__main__":
    main()
