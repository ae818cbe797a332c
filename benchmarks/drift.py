"""Issue 15, item 2: how a zoo model's design ratios move over minutes on this machine.

    python benchmarks/drift.py [--model mobilenetv2] [--seconds 180] [--window 30]

The run's latency model fits its costs from designs read against the all-int8 model (every op
type float in turn, all-float: `latency_model.designs`). This reads those designs round-robin
against all-int8 (`TFLiteModel.latency_ratio`, fresh interpreters, the case's latency settings)
for `--seconds`, and prints per design: the median, the medians of successive `--window`-second
windows (the machine's slow drift: what a run measuring in one window sees against a run in
another), the lag-1 correlation of successive readings, and the spread of 5-reading medians
taken back to back against 5 readings spread over the whole time (how much a design's median,
read as `latency_model.measure` reads it, moves). Models: `same_seed_inputs.py`'s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "tests")]

import same_seed_inputs  # noqa: E402
from tf_tpe_tuner.conf import Conf  # noqa: E402
from tf_tpe_tuner.evaluate import TFLiteModel  # noqa: E402
from tf_tpe_tuner.latency_model import REPEATS, designs, from_graph  # noqa: E402
from tf_tpe_tuner.run_setup import prepare  # noqa: E402

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv2")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    model, calib, held, case_conf = same_seed_inputs.case(args.model, 0)
    conf = Conf(case_conf)
    prepared = prepare(model, conf, calib, eval_data=held)
    units, realizer = list(prepared.space.searched), prepared.spec.realizer
    plan = designs(units, from_graph(prepared.graph, units, prepared.space.fixed).kinds)
    tflites = {name: prepared.spec.evaluation.reference if not int8 else realizer.realize(sorted(int8)).tflite_model
               for name, int8 in plan.items() if "every other" not in name}
    int8_bytes = realizer.realize(units).tflite_model
    perf = conf.get("evaluation.performance")
    series: dict[str, list[tuple[float, float]]] = {name: [] for name in tflites}
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        for name, tflite in tflites.items():
            ratio = TFLiteModel(tflite).latency_ratio(TFLiteModel(int8_bytes), perf["warmup"], perf["iteration"])
            series[name].append((time.perf_counter() - start, ratio))
    print(f"{args.model}: {len(units)} units, designs read against all-int8 for {args.seconds:.0f} s, "
          f"windows of {args.window:.0f} s")
    for name, readings in series.items():
        times, values = np.array([t for t, _ in readings]), np.array([v for _, v in readings])
        mid = float(np.median(values))
        in_window = [(times >= w) & (times < w + args.window) for w in np.arange(0, args.seconds, args.window)]
        windows = [float(np.median(values[mask])) for mask in in_window if mask.any()]
        back_to_back = [np.median(values[i:i + REPEATS]) for i in range(0, len(values) - REPEATS + 1, REPEATS)]
        step = len(values) // REPEATS
        spread_out = [np.median(values[i::step][:REPEATS]) for i in range(step)]
        lag1 = float(np.corrcoef(values[:-1], values[1:])[0, 1])
        print(f"  {name:34s} {len(values):5d} readings, median {mid:.3f}; windows "
              + " ".join(f"{w:.3f}" for w in windows)
              + f" (range {(max(windows) - min(windows)) / mid:.1%}); lag-1 correlation {lag1:.2f}; "
              f"5-reading medians: back to back sd {statistics.pstdev(back_to_back) / mid:.1%}, "
              f"spread over the run sd {statistics.pstdev(spread_out) / mid:.1%}", flush=True)


if __name__ == "__main__":
    main()
