"""The default stop rule (no exit policy in the conf) against a 100-trial run, on the small zoo.

    python benchmarks/default_stop.py                 # 5 seeds, every small case (~10 min on 2 cores)
    options: --seeds N --cases a,b --reference-trials N --cache DIR

Per case: one run of `--reference-trials` trials (tpe, timeout and patience off) gives the
reference, the fastest configuration it found that meets the case's criterion (or the float
model, when that is what it hands back); then `--seeds` default runs (no exit policy: patience).
Every answer and the reference are realized again and their latency ratios to the float model
measured side by side in one session (median of 5 interleaved measurements each), so the
comparison does not depend on each run's own noisy reading. Printed per case: the median and the
worst of (default answer latency / reference latency), and the median and largest trial count.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import zoo  # noqa: E402
from tf_tpe_tuner import Conf, tune, walk  # noqa: E402
from tf_tpe_tuner.data import ArrayData  # noqa: E402
from tf_tpe_tuner.evaluate import TFLiteModel  # noqa: E402
from tf_tpe_tuner.realize_denylist import DenylistRealizer  # noqa: E402

SMALL = ("cnn", "cnn_outliers", "rescnn", "mlp", "diabetes_mse", "friedman_mse")
PERF = {"warmup": 20, "iteration": 300, "num_threads": 1}


def answer_of(result) -> frozenset | None:
    """The int8 set handed back (an empty set: the float model); None when nothing met."""
    if result.handed_back == "float":
        return frozenset()
    return frozenset(result.int8_units) if result.met_criterion else None


def run(case, seed: int, exit_policy: dict | None) -> tuple[frozenset | None, int, str]:
    conf = zoo._merge(case.conf, {"evaluation": {"performance": PERF},
                                  "tuning": {"random_seed": seed, **({"exit_policy": exit_policy}
                                                                     if exit_policy else {})}})
    with tempfile.TemporaryDirectory() as out:
        result = tune(case.model, Conf(conf), case.calib_x, eval_data=(case.eval_x, case.eval_y),
                      output_dir=out, report=False)
    return answer_of(result), result.trials, result.stop_reason


def side_by_side(case, keys: list[frozenset]) -> dict[frozenset, float]:
    """Latency ratio to fp32 of each configuration, measured in one session (median of 5)."""
    realizer = DenylistRealizer(walk(case.model), ArrayData([case.calib_x]))
    fp32 = TFLiteModel(realizer.realize_float().tflite_model)
    models = {k: TFLiteModel(realizer.realize(k).tflite_model) if k else None for k in keys}
    ratios: dict[frozenset, list[float]] = {k: [] for k in keys}
    for _ in range(5):
        for k, model in models.items():
            ratios[k].append(1.0 if model is None else
                             model.latency_ratio(fp32, PERF["warmup"], PERF["iteration"]))
    return {k: float(np.median(v)) for k, v in ratios.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cases", default=",".join(SMALL))
    parser.add_argument("--reference-trials", type=int, default=100)
    parser.add_argument("--cache", default=zoo.DEFAULT_CACHE)
    args = parser.parse_args()
    rows = []
    for case in zoo.load_cases(args.cache, args.cases.split(",")):
        reference, ref_trials, _ = run(case, 0, {"timeout": 36000, "max_trials": args.reference_trials})
        answers = [run(case, 1000 + seed, None) for seed in range(args.seeds)]
        keys = sorted({reference, *(a for a, _, _ in answers)} - {None}, key=sorted)
        lat = side_by_side(case, keys)
        ratios = [lat[a] / lat[reference] if a is not None and reference is not None else float("nan")
                  for a, _, _ in answers]
        trials = [n for _, n, _ in answers]
        rows.append((case.name, ref_trials, lat.get(reference, float("nan")), float(np.median(ratios)),
                     max(ratios), float(np.median(trials)), max(trials),
                     sorted({r.split(":")[0] for _, _, r in answers})))
        print(f"{case.name}: reference {sorted(reference) if reference is not None else None} "
              f"({ref_trials} trials); default answers {[sorted(a) if a is not None else None for a, _, _ in answers]}, "
              f"trials {trials}", flush=True)
    print("\n| case | reference lat/fp32 | default / reference latency: median | worst | trials: median | max | stop reasons |")
    print("|---|---|---|---|---|---|---|")
    for name, _, ref, med, worst, tmed, tmax, reasons in rows:
        print(f"| {name} | {ref:.3f} | {med:.3f} | {worst:.3f} | {tmed:g} | {tmax} | {', '.join(reasons)} |")


if __name__ == "__main__":
    main()
