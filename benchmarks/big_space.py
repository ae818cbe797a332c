"""Issue 15, items 3 and 4: big spaces in few trials, and the default stop rule at scale.

    python benchmarks/big_space.py [--models mobilenetv2] [--seeds 3] [--reference-trials 150]

Per model (`same_seed_inputs.py`): the reference is the fastest configuration meeting the
criterion among those that 150-trial runs of tpe and of random search (each `--seeds` seeds)
found, their fastest few re-measured side by side (the minimum of many noisy readings is biased
low). Then, with the default sampler: `--seeds` runs of 20 trials, and `--seeds` runs of the
default stop rule. Every configuration that met the criterion in those runs is re-measured side
by side with the reference (fresh interpreters, interleaved, median of ROUNDS); those within
RECHECK of the fastest are read again (RECHECK_ROUNDS) to choose the reference, and once more, with
the default stop rule's answers, to compare (the fastest of many readings is biased low). Each run reports the first
trial whose configuration is within 1.05x the reference, and (default stop rule) the
handed-back configuration's ratio to the reference and its trials. Measure on a quiet machine;
MobileNetV2's 150-trial runs take about 40 s each (7 min in all), a pretrained model's far longer.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "tests")]

import same_seed_inputs  # noqa: E402
from tf_tpe_tuner import tune  # noqa: E402
from tf_tpe_tuner.data import ArrayData  # noqa: E402
from tf_tpe_tuner.evaluate import TFLiteModel  # noqa: E402
from tf_tpe_tuner.realizers import make_realizer  # noqa: E402
from tf_tpe_tuner.run_setup import model_graph  # noqa: E402

ROUNDS = 5
NEAR = 1.05
RECHECK, RECHECK_ROUNDS = 1.15, 9  # configurations within 1.15x of the first reference are read again
REFERENCE_CANDIDATES = 8  # per reference run, its fastest meeting configurations by reading


def run(model, calib, held, conf: dict, strategy: str, seed: int, exit_policy: dict | None):
    tuning = {**conf["tuning"], "random_seed": seed, "strategy": {"name": strategy}}
    if exit_policy is not None:
        tuning["exit_policy"] = exit_policy
    with tempfile.TemporaryDirectory() as out:
        start = time.monotonic()
        result = tune(model, {**conf, "tuning": tuning}, calib, eval_data=held, output_dir=out, report=False)
    return result, time.monotonic() - start


def int8_set(record) -> frozenset[str]:
    return frozenset(u for u, c in record.config.items() if c == "int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenetv2")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--reference-trials", type=int, default=150)
    args = parser.parse_args()
    for name in args.models.split(","):
        model, calib, held, conf = same_seed_inputs.case(name, 0)
        perf = conf["evaluation"]["performance"]
        graph = model_graph(model)
        realizer = make_realizer("denylist", graph, ArrayData([calib]))
        reference_bytes = graph.reference_model or graph.float_model
        candidates: set[frozenset[str]] = set()
        for strategy in ("tpe", "random"):
            for seed in range(args.seeds):
                result, secs = run(model, calib, held, conf, strategy, seed, {"max_trials": args.reference_trials})
                meeting = sorted((r for r in result.history if r.met_criterion and r.status == "ok"),
                                 key=lambda r: r.latency_ratio)
                candidates |= {int8_set(r) for r in meeting[:REFERENCE_CANDIDATES]}
                print(f"{name}: reference run {strategy} seed {seed}: {result.trials} trials in {secs:.0f} s, "
                      f"{len(meeting)} meeting", flush=True)
        short = [run(model, calib, held, conf, "tpe", seed, {"max_trials": 20}) for seed in range(args.seeds)]
        default = [run(model, calib, held, conf, "tpe", seed, None) for seed in range(args.seeds)]
        for result, _ in short + default:
            candidates |= {int8_set(r) for r in result.history if r.met_criterion and r.status == "ok"}
        first = measure(sorted(candidates, key=sorted), realizer, reference_bytes, perf)
        # the fastest of many noisy readings reads low by chance (the winner's curse): those that
        # could be within NEAR of it are read again to choose the reference, and once more, afresh,
        # to compare (so that the reference's reading is not the least of those it is compared to)
        close = sorted((c for c in first if first[c] <= RECHECK * min(first.values())), key=sorted)
        chosen_by = measure(close, realizer, reference_bytes, perf, RECHECK_ROUNDS)
        best = min(close, key=lambda c: (chosen_by[c], sorted(c)))
        # the handed-back answers are compared in that same sitting whatever their first reading:
        # this machine's speed drifts by several % between minutes, so an answer left with its
        # first reading is compared against a reference read at another time (seen: 1.10x where
        # side by side it read within 1.5 %)
        answers = {int8_set(next(r for r in result.history if r.trial == result.best_trial))
                   for result, _ in default if result.best_trial is not None}
        compared = sorted(set(close) | answers, key=sorted)
        ratios = {**first, **measure(compared, realizer, reference_bytes, perf, RECHECK_ROUNDS)}
        reference = ratios[best]
        print(f"{name}: reference {reference:.3f}x float (the fastest of {len(first)} meeting configurations: "
              f"{min(first.values()):.3f}x at first; the {len(close)} within {RECHECK}x of that read again, "
              f"{RECHECK_ROUNDS} rounds, the fastest {chosen_by[best]:.3f}x, and again to compare); its float "
              f"units: {', '.join(sorted(set(graph.unit_names) - best))}")
        firsts = []
        for seed, (result, secs) in enumerate(short):
            near = [r.trial for r in result.history if r.met_criterion and r.status == "ok"
                    and ratios[int8_set(r)] <= NEAR * reference]
            firsts.append(min(near) if near else float("inf"))
            print(f"  20 trials, seed {seed}: first within {NEAR}x the reference at trial {firsts[-1]} ({secs:.0f} s)")
        print(f"  median over seeds: {statistics.median(firsts)} (goal <= 20)")
        within = []
        for seed, (result, secs) in enumerate(default):
            if result.best_trial is None:
                ratio = 1.0 / reference
                what = "the float model"
            else:
                best = next(r for r in result.history if r.trial == result.best_trial)
                ratio = ratios[int8_set(best)] / reference
                what = f"trial {result.best_trial} (float: {', '.join(sorted(set(graph.unit_names) - int8_set(best)))})"
            within.append((ratio, result.trials))
            print(f"  default stop rule, seed {seed}: {what}, {ratio:.3f}x the reference, {result.trials} trials ({secs:.0f} s)")
        print(f"  median: {statistics.median(w[0] for w in within):.3f}x the reference (goal <= 1.05), "
              f"{statistics.median(w[1] for w in within)} trials (goal <= 25)", flush=True)


def measure(configs: list[frozenset[str]], realizer, reference: bytes, perf: dict, rounds: int = ROUNDS) -> dict:
    """Each configuration's latency ratio to the float model: `rounds` interleaved rounds, each
    with fresh interpreters, median. Each is read against the all-int8 model, whose own ratio to
    float is read in the same rounds: on a Xeon with AMX the ratio of a quantized model to float
    drifts by up to 18 % either side between minutes while two quantized models keep within a
    few % (BUILD_NOTES, "Float drifts against int8"), so configurations are compared by their
    ratios to one quantized model."""
    anchor = realizer.realize(sorted(realizer.graph.unit_names)).tflite_model
    models = {c: realizer.realize(sorted(c)).tflite_model for c in configs}
    readings = {c: [] for c in configs}
    to_float = []
    for _ in range(rounds):
        to_float.append(TFLiteModel(anchor).latency_ratio(TFLiteModel(reference), perf["warmup"], perf["iteration"]))
        for c in configs:
            readings[c].append(TFLiteModel(models[c]).latency_ratio(TFLiteModel(anchor), perf["warmup"],
                                                                    perf["iteration"]))
    scale = statistics.median(to_float)
    return {c: statistics.median(v) * scale for c, v in readings.items()}


if __name__ == "__main__":
    main()
