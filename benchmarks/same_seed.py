"""Issue 15, item 2: does the same seed give the same answer? Each run in a fresh process and a
fresh output directory, nothing shared between runs.

    python benchmarks/same_seed.py --model mobilenetv2 --runs 10 [--seed 0]

Models (`same_seed_inputs.py`): those of `pretrained_zoo.py` (face_landmark, hand_landmark_full,
mobilenetv2) with its confs, and the small zoo's cases (`zoo.py`: cnn, cnn_outliers, ..., with
their criteria and `compare.py`'s latency settings). `--model` takes a comma-separated list.
Prints one line per run (a hash of the handed-back int8 set, its size, the best trial, the
trials, the ratio to float, the latency model's fitted costs, the units with a cost of their own
and the noise of a reading), how many distinct int8 sets the runs handed back and, when they
differ, the units in which they do.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

ONE_RUN = r"""
import json, sys, tempfile
sys.path[:0] = [sys.argv[3], sys.argv[4]]
import same_seed_inputs
from tf_tpe_tuner import tune
model, calib, held, conf = same_seed_inputs.case(sys.argv[1], int(sys.argv[2]))
with tempfile.TemporaryDirectory() as out:
    r = tune(model, conf, calib, eval_data=held, output_dir=out, report=False)
print("RUN " + json.dumps({"int8": sorted(r.int8_units), "best_trial": r.best_trial, "trials": r.trials,
                           "ratio": r.latency_ms / r.baseline.latency_ms if r.latency_ms else None,
                           "tie": (r.latency_model or {}).get("tie"),
                           "costs": {**(r.latency_model or {}).get("cost_per_type", {}),
                                     "boundary": (r.latency_model or {}).get("boundary_cost")},
                           "own": sorted((r.latency_model or {}).get("unit_cost", {})),
                           "noise": (r.latency_model or {}).get("noise")}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv2")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    for model in args.model.split(","):
        same_seed(model, args.runs, args.seed, env)


def same_seed(model: str, runs: int, seed: int, env: dict) -> None:
    answers, sets = [], {}
    for run in range(runs):
        with tempfile.TemporaryDirectory() as cwd:  # nothing carried over between runs
            proc = subprocess.run([sys.executable, "-c", ONE_RUN, model, str(seed), HERE,
                                   os.path.join(HERE, "..", "tests")], cwd=cwd, env=env,
                                  capture_output=True, text=True, check=True)
        result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RUN "))[4:])
        digest = hashlib.sha1(",".join(result["int8"]).encode()).hexdigest()[:8]
        answers.append(digest)
        sets[digest] = frozenset(result["int8"])
        print(f"{model} run {run + 1}: int8 set {digest} ({len(result['int8'])} units), best trial "
              f"{result['best_trial']}, {result['trials']} trials, {result['ratio']:.3f}x float, "
              f"tie margin {result['tie']}; model costs {result['costs']}, units with their own "
              f"{result['own']}, noise of a reading {result['noise']}", flush=True)
    print(f"{model}: {len(set(answers))} distinct int8 set(s) in {runs} runs", flush=True)
    if len(sets) > 1:  # where they part: the units int8 in some sets and not in others
        common = frozenset.intersection(*sets.values())
        for digest, int8 in sets.items():
            print(f"  {digest} ({answers.count(digest)} runs): int8 beyond the units all sets share: "
                  f"{sorted(int8 - common) or 'none'}", flush=True)


if __name__ == "__main__":
    main()
