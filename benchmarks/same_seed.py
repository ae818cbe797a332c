"""Issue 15, item 2: does the same seed give the same answer? Each run in a fresh process and a
fresh output directory, nothing shared between runs.

    python benchmarks/same_seed.py --model mobilenetv2 --runs 10 [--seed 0]

Models: those of `pretrained_zoo.py` (face_landmark, hand_landmark_full, mobilenetv2), with its
confs. Prints one line per run (a hash of the handed-back int8 set, its size, the best trial,
the trials, the ratio to float) and how many distinct int8 sets the runs handed back.
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
import pretrained_zoo as zoo
from tf_tpe_tuner import tune
name, seed = sys.argv[1], int(sys.argv[2])
model, calib, held = zoo.inputs(name)
conf = zoo.CASES[name][1]
conf = {**conf, "tuning": {**conf["tuning"], "random_seed": seed}}
with tempfile.TemporaryDirectory() as out:
    r = tune(model, conf, calib, eval_data=held, output_dir=out, report=False)
print("RUN " + json.dumps({"int8": sorted(r.int8_units), "best_trial": r.best_trial, "trials": r.trials,
                           "ratio": r.latency_ms / r.baseline.latency_ms if r.latency_ms else None}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv2")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    answers = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as cwd:  # nothing carried over between runs
            proc = subprocess.run([sys.executable, "-c", ONE_RUN, args.model, str(args.seed), HERE,
                                   os.path.join(HERE, "..", "tests")], cwd=cwd, env=env,
                                  capture_output=True, text=True, check=True)
        result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RUN "))[4:])
        digest = hashlib.sha1(",".join(result["int8"]).encode()).hexdigest()[:8]
        answers.append(digest)
        print(f"run {run + 1}: int8 set {digest} ({len(result['int8'])} units), best trial "
              f"{result['best_trial']}, {result['trials']} trials, {result['ratio']:.3f}x float", flush=True)
    print(f"{len(set(answers))} distinct int8 set(s) in {args.runs} runs")


if __name__ == "__main__":
    main()
