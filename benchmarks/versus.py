"""Issue 15, item 2: are this commit's answers no slower than an earlier commit's? One run of
each (same seed, same data, each in a fresh process), then the two handed-back models measured
side by side in one process: fresh interpreters each round, interleaved, median of the rounds.

    python benchmarks/versus.py [--against 96c9375] [--models mobilenetv2,face_landmark] [--seed 0]

Models: those of `same_seed.py`. The earlier commit is checked out with `git archive` into a
temporary directory; both runs use this checkout's benchmarks and test data. Prints per model:
each answer's int8 units, its ratio to float, the ratio of this commit's answer to the
earlier one's (below 1: faster), and the units int8 in one answer only. Measure on a quiet
machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ROUNDS = 7

ONE_RUN = r"""
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2], sys.argv[3]]
import tf_tpe_tuner
assert tf_tpe_tuner.__file__.startswith(sys.argv[1]), tf_tpe_tuner.__file__
import same_seed_inputs
model, calib, held, conf = same_seed_inputs.case(sys.argv[4], int(sys.argv[5]))
import tempfile
from tf_tpe_tuner import tune
with tempfile.TemporaryDirectory() as out:
    r = tune(model, conf, calib, eval_data=held, output_dir=out, report=False)
open(sys.argv[6], "wb").write(r.tflite_model)
print("RUN " + json.dumps({"int8": len(r.int8_units), "units": len(r.config), "trials": r.trials,
                           "int8_units": sorted(r.int8_units)}))
"""


def run(tree: str, model: str, seed: int, out: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run([sys.executable, "-c", ONE_RUN, tree, HERE, os.path.join(ROOT, "tests"),
                               model, str(seed), out], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RUN "))[4:])


def side_by_side(paths: list[str], reference: bytes, perf: dict) -> list[float]:
    """Each model's latency ratio to `reference`, median of ROUNDS interleaved rounds."""
    from tf_tpe_tuner.evaluate import TFLiteModel
    models = [open(p, "rb").read() for p in paths]
    readings = [[] for _ in models]
    for _ in range(ROUNDS):
        for i, m in enumerate(models):
            readings[i].append(TFLiteModel(m).latency_ratio(TFLiteModel(reference), perf["warmup"], perf["iteration"]))
    return [statistics.median(r) for r in readings]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="96c9375")
    parser.add_argument("--models", default="mobilenetv2,face_landmark,hand_landmark_full")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path[:0] = [HERE, os.path.join(ROOT, "tests")]
    import same_seed_inputs
    with tempfile.TemporaryDirectory() as tmp:
        earlier = os.path.join(tmp, "earlier")
        archive = os.path.join(tmp, "earlier.tar")
        subprocess.run(["git", "-C", ROOT, "archive", "-o", archive, args.against], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(earlier)
        for model in args.models.split(","):
            paths = [os.path.join(tmp, f"{model}-{who}.tflite") for who in ("earlier", "now")]
            then = run(earlier, model, args.seed, paths[0])
            now = run(ROOT, model, args.seed, paths[1])
            _, _, _, conf = same_seed_inputs.case(model, args.seed)
            perf = conf["evaluation"]["performance"]
            float_model = same_seed_inputs.float_model(model)
            to_float = side_by_side(paths, float_model, perf)
            now_vs_then = side_by_side(paths[1:], open(paths[0], "rb").read(), perf)[0]
            print(f"{model}: {args.against} {then['int8']}/{then['units']} int8 in {then['trials']} trials "
                  f"{to_float[0]:.3f}x float | now {now['int8']}/{now['units']} in {now['trials']} trials "
                  f"{to_float[1]:.3f}x float | now / {args.against}: {now_vs_then:.3f}", flush=True)
            then_only = sorted(set(then["int8_units"]) - set(now["int8_units"]))
            now_only = sorted(set(now["int8_units"]) - set(then["int8_units"]))
            same = open(paths[0], "rb").read() == open(paths[1], "rb").read()
            print(f"  int8 only {args.against}: {', '.join(then_only) or '-'}; int8 only now: "
                  f"{', '.join(now_only) or '-'}{' (the same TFLite bytes)' if same else ''}", flush=True)


if __name__ == "__main__":
    main()
