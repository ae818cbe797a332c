"""Does int8 pay on this CPU? All-int8 latency over float, side by side, for the pretrained models.

    python benchmarks/int8_pays.py [--models hand_landmark_lite,hand_landmark_full,...] [--rounds 3]

Int8 speed differs between CPUs (hand_landmark_lite's all-int8 ran at 0.59-0.61x float on one
Xeon and at 0.96-0.98x on a Xeon with AMX), and the tests that expect a quantized model handed back
need one whose all-int8 pays by a wide margin. Each reading: fresh interpreters, the two models
interleaved (`TFLiteModel.latency_ratio`), 1 thread, warmup 10, 100 iterations (30 for the
4-10 ms models). Inputs as `tests/pretrained.py` prepares them; calibration on 24 of them.
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import pretrained  # noqa: E402
from pretrained_zoo import float_and_all_int8  # noqa: E402

RUNNABLE = ["face_landmark", "hand_landmark_lite", "hand_landmark_full", "pose_detection", "palm_detection_lite"]
SLOW = {"hand_landmark_full", "pose_detection"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(RUNNABLE))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("| model (units) | float | all-int8 / float, per reading |")
    print("|---|---|---|")
    for name in args.models.split(","):
        images = pretrained.faces(24, 1) if name == "face_landmark" else pretrained.crops(name, 24, 1)
        graph, fp32, int8 = float_and_all_int8(pretrained.model_bytes(name), images)
        iterations = 30 if name in SLOW else 100
        ratios = [int8.latency_ratio(fp32, 10, iterations) for _ in range(args.rounds)]
        print(f"| {name} ({len(graph.units)}) | {fp32.latency_ms(10, iterations):.2f} ms | "
              f"{' / '.join(f'{r:.3f}' for r in ratios)} |", flush=True)


if __name__ == "__main__":
    main()
