"""How much the latency the search sees moves when the same model is measured again.

    python benchmarks/latency_spread.py [--repeats 20] [--models cnn,mobilenetv2] [--cache DIR]

For each zoo model (`benchmarks/zoo.py`), the all-int8 model and a mixed one (every other unit
int8, realized with the denylist backend) are each measured `--repeats` times, spread over the
run, by the two methods, alternating between them so that both see the same machine load:

- before: `TFLiteModel.latency_ms(20, 300)` on a fresh interpreter (median of 300 invokes), the
  value the loss used, divided into the fp32 latency measured once at the start;
- after:  `Evaluator.evaluate` with `set_latency_reference(fp32 model)` called once at the
  start: 10 interleaved rounds of 30 invokes (at least 1 ms) of the candidate and of the fp32
  model, the median of the per-round ratios, times the reference latency.

Printed per model and method: median latency (us), the coefficient of variation (std / mean) and
the full range (max - min) / median, in %, and the same for the ratio to the fp32 model that the
loss really uses (speed-up = 1 / ratio). Lower is steadier.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import zoo  # noqa: E402
from tf_tpe_tuner import walk  # noqa: E402
from tf_tpe_tuner.data import ArrayData  # noqa: E402
from tf_tpe_tuner.evaluate import Evaluator, TFLiteModel, make_metric  # noqa: E402
from tf_tpe_tuner.realize_denylist import DenylistRealizer  # noqa: E402


def spread(values) -> tuple[float, float, float]:
    v = np.asarray(values)
    return float(np.median(v)), float(100 * v.std() / v.mean()), float(100 * (v.max() - v.min()) / np.median(v))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--models", default="cnn,mobilenetv2")
    ap.add_argument("--cache", default=zoo.DEFAULT_CACHE)
    args = ap.parse_args(argv)
    rows = []
    for case in zoo.load_cases(args.cache, names=args.models.split(",")):
        graph = walk(case.model)
        realizer = DenylistRealizer(graph, ArrayData([case.calib_x]))
        fp32 = realizer.realize_float().tflite_model
        models = {"all-int8": realizer.realize(graph.unit_names).tflite_model,
                  "mixed": realizer.realize(graph.unit_names[::2]).tflite_model}
        ev = Evaluator(make_metric("topk"), ArrayData([case.eval_x[:64]], case.eval_y[:64]))
        fp32_alone = TFLiteModel(fp32).latency_ms(20, 300)
        ev.set_latency_reference(fp32)
        for label, tflite in models.items():
            before, after, ratio_before, ratio_after = [], [], [], []
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                ms = TFLiteModel(tflite).latency_ms(20, 300)
                before.append(ms)
                ratio_before.append(ms / fp32_alone)
                evaluation = ev.evaluate(tflite)
                after.append(evaluation.latency_ms)
                ratio_after.append(evaluation.latency_ratio)
            took = time.perf_counter() - t0
            for method, values in (("before", before), ("after", after)):
                med, cv, rng = spread(values)
                ratios = ratio_before if method == "before" else ratio_after
                rows.append((case.name, label, method, med * 1e3, cv, rng, float(np.median(ratios)),
                             spread(ratios)[1]))
            print(f"{case.name} {label}: {args.repeats} x 2 measurements in {took:.1f} s", flush=True)
    print()
    print(f"{'model':<14}{'config':<10}{'method':<8}{'median us':>10}{'CV %':>8}{'range %':>9}"
          f"{'ratio to fp32':>15}{'its CV %':>10}")
    for name, label, method, med, cv, rng, ratio, ratio_cv in rows:
        print(f"{name:<14}{label:<10}{method:<8}{med:>10.1f}{cv:>8.1f}{rng:>9.1f}{ratio:>15.3f}{ratio_cv:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
