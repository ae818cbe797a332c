"""Tuning MediaPipe 0.10.14's shipped float models end to end on the command line (issue 13,
item 6): `python -m tf_tpe_tuner --model=<name>.tflite --conf=conf.yaml --calib_data=calib.npz
--eval_data=eval.npy` with inputs only, no labels: every scored output is compared with the model
as shipped (fidelity), per output, as a user of these models would score them.

face_landmark (outputs conv2d_21: 468 landmarks x (x, y, z) in pixels of the 192 px input;
conv2d_31: the face flag, a logit, 7..34 on these crops): all-int8 runs at ~3.6x the float
latency (int8 PRELU is slow here), so what is handed back must not be slower than float (the
float model itself is fine). Conf: the landmarks' MAE at most 1 px (absolute), the face flag
`agreement` at threshold 0 (a logit: face when > 0) with `relative: 0.01`, i.e. the flag says
"face" for exactly the images the float model does (24 images: no flip allowed).

hand_landmark_full (outputs Identity: 21 landmarks x (x, y, z) in pixels of the 224 px input;
Identity_1: hand presence, a probability 0..0.18 here; Identity_2: handedness, a probability;
Identity_3: world landmarks in metres): tuned on a latency that makes int8 pay
(`tests/cost_latency.py`, through `--latency_func`), it must be handed back quantized and faster.
On the clock, all-int8 reads 0.42-0.67x float on three CPUs seen, but 0.99-1.06x on an AVX2-only
AMD EPYC (no VNNI), where float is rightly handed back: the test must not depend on the CPU. Conf:
the landmarks' MAE at most 8 px (absolute; all-int8 6.0 px), presence `agreement` at threshold
0.5 (a probability) with `relative: 0.05`: the same side of 0.5 on at least 95 % of the images.
Handedness and world landmarks are left out with `combine: [Identity, Identity_1]`: there is no
bundled photo of a hand (the inputs are random photo crops), and the handedness and 3D shape of
a hand that is not there are noise (all-int8's world landmarks: NRMSE 1.3 of their spread); a
tracker that uses them would score them on hand photos.

The search budget is the one the Python-API version of this test had (10 trials with the
per-unit sensitivity first for face_landmark; 4 without it for hand_landmark_full, whose
all-int8 first trial meets the criterion). The `eval_func` path is covered on small models
(test_loop.py, test_multi_output.py, ...); this module does not repeat it here.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import cost_latency
import pretrained
from test_pretrained import io_names, metadata
from tf_tpe_tuner.evaluate import TFLiteModel
from tf_tpe_tuner.outputs import in_model_order

pytestmark = pytest.mark.slow

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
PERF = {"warmup": 10, "iteration": 100, "num_threads": 1}

CONFS = {
    "face_landmark": {
        "evaluation": {"accuracy": {
            "metric": "MAE",  # every output unless given its own: the landmarks, in input pixels
            "outputs": {"conv2d_31": {"metric": {"agreement": {"threshold": 0.0}},  # the face flag, a logit
                                      "accuracy_criterion": {"relative": 0.01}}}},
            "performance": PERF},
        "tuning": {"accuracy_criterion": {"absolute": 1.0},  # landmarks within 1 px on average
                   "exit_policy": {"max_trials": 10}, "strategy": {"tpe": {"sensitivity": True}}}},
    "hand_landmark_full": {
        "evaluation": {"accuracy": {
            "metric": "MAE",
            "outputs": {"Identity_1": {"metric": {"agreement": {"threshold": 0.5}},  # presence, a probability
                                       "accuracy_criterion": {"relative": 0.05}}},
            "combine": ["Identity", "Identity_1"]},  # handedness and world landmarks left out
            "performance": {**PERF, "iteration": 30}},  # 4-5 ms a call: the fast setting
        "tuning": {"accuracy_criterion": {"absolute": 8.0},  # landmarks within 8 px on average
                   "exit_policy": {"max_trials": 4}, "strategy": {"tpe": {"sensitivity": False}}}},
}
IMAGES = {"face_landmark": pretrained.faces,
          "hand_landmark_full": lambda n, seed: pretrained.crops("hand_landmark_full", n, seed)}
# output -> (metric as reported, the criterion as reported)
ROWS = {"face_landmark": {"conv2d_21": ("MAE", "absolute 1 (lower is better)"),
                          "conv2d_31": ("agreement", "relative 1 % (higher is better)")},
        "hand_landmark_full": {"Identity": ("MAE", "absolute 8 (lower is better)"),
                               "Identity_1": ("agreement", "relative 5 % (higher is better)")}}
# output -> its tolerance: absolute px for the landmarks' MAE, the relative share for agreement
SHARE_OF = {"face_landmark": {"conv2d_21": 1.0, "conv2d_31": 0.01},
            "hand_landmark_full": {"Identity": 8.0, "Identity_1": 0.05}}


def run(args, cwd, module="tf_tpe_tuner"):
    done = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"exit {done.returncode}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
    return done


def tuned(name, root: Path, *extra):
    """The model, data and conf written to `root`, and the command line run on them."""
    root.mkdir()
    model = pretrained.model_file(name, root)
    x = IMAGES[name](48, seed=1)
    np.savez(root / "calib.npz", x=x[:24])
    np.save(root / "eval.npy", x[24:])  # inputs only: the model as shipped is the reference
    (root / "conf.yaml").write_text(yaml.safe_dump(CONFS[name]))
    done = run([f"--model={model}", "--conf=conf.yaml", "--calib_data=calib.npz", "--eval_data=eval.npy",
                "--output_dir=out", "--progress=log", *extra], root)
    return root, done


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    return tuned("face_landmark", tmp_path_factory.mktemp("pretrained_cli") / "face_landmark")


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    return tuned("hand_landmark_full", tmp_path_factory.mktemp("pretrained_cli") / "hand_landmark_full",
                 cost_latency.FLAG)


def fidelity(name, tflite: bytes, held: np.ndarray) -> dict:
    """Recomputed here, from the handed-back model and the model as shipped: the landmarks' MAE
    (px) and the share of images whose flag is on the same side of its threshold."""
    shipped = pretrained.model_bytes(name)
    ref, got = (in_model_order(m, m(held)) for m in (TFLiteModel(shipped), TFLiteModel(tflite)))
    threshold = 0.0 if name == "face_landmark" else 0.5
    return {"landmarks": float(np.mean(np.abs(got[0] - ref[0]))),
            "flag": float(np.mean((got[1] > threshold) == (ref[1] > threshold)))}


def check_run(name, root: Path, done) -> dict:
    """What both models must show: the criterion met, per-output values in summary.json,
    report.json, report.md, history.jsonl and the printed lines, and the interface kept."""
    out = root / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["met_criterion"] is True, done.stdout
    rows = {r["output"]: r for r in summary["outputs"]}
    assert set(rows) == set(ROWS[name]), rows  # hand_landmark_full: only the two combined outputs
    for output, (metric, criterion) in ROWS[name].items():
        row = rows[output]
        assert (row["metric"], row["criterion"], row["meets"]) == (metric, criterion, True), row
        assert row["fp32"] == (1.0 if metric == "agreement" else 0.0), row  # the float model against itself
        assert f"output {output}: {metric} {row['best']:.6g}" in done.stdout, done.stdout
    report = json.loads((out / "report.json").read_text())
    assert {r["output"]: r["best"] for r in report["outputs"]} == {k: r["best"] for k, r in rows.items()}
    markdown = (out / "report.md").read_text()
    assert "## Outputs" in markdown and all(f"| {output} | {metric} |" in markdown
                                            for output, (metric, _) in ROWS[name].items())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()[1:]]
    assert history and all(set(h["outputs"]) == set(ROWS[name]) for h in history if h["status"] == "ok")
    best = (out / "best_model.tflite").read_bytes()
    shipped = pretrained.model_bytes(name)
    assert io_names(best) == io_names(shipped)
    assert metadata(best)["TFLITE_METADATA"] == metadata(shipped)["TFLITE_METADATA"]
    held = np.load(root / "eval.npy")
    measured = fidelity(name, best, held)
    landmarks = rows[list(ROWS[name])[0]]
    assert measured["landmarks"] == pytest.approx(landmarks["best"], rel=1e-5, abs=1e-6)
    assert measured["flag"] == pytest.approx(rows[list(ROWS[name])[1]]["best"])
    return summary


def test_face_landmark_is_handed_back_not_slower_than_float(face):
    """All-int8 is slower than float here: the search must not hand that back; the float model
    itself, byte for byte, or a configuration the run measured faster, meeting both outputs."""
    root, done = face
    summary = check_run("face_landmark", root, done)
    best = (root / "out" / "best_model.tflite").read_bytes()
    measured = fidelity("face_landmark", best, np.load(root / "eval.npy"))
    assert measured["landmarks"] <= 1.0 and measured["flag"] == 1.0
    if summary["handed_back"] == "float":
        assert best == pretrained.model_bytes("face_landmark")
    else:
        assert summary["speedup"] > 1.0, summary  # handed back only when measured faster than float


def test_hand_landmark_full_is_handed_back_quantized_and_faster(hand):
    root, done = hand
    summary = check_run("hand_landmark_full", root, done)
    assert summary["handed_back"] != "float", summary
    assert summary["quantized_layers"], summary
    assert summary["speedup"] > 1.0, summary
    measured = fidelity("hand_landmark_full", (root / "out" / "best_model.tflite").read_bytes(),
                        np.load(root / "eval.npy"))
    assert measured["landmarks"] <= 8.0 and measured["flag"] >= 0.95


@pytest.mark.parametrize("which", ["face", "hand"])
def test_export_checks_the_recorded_accuracy_of_several_outputs(which, request):
    """tf-tpe-export --eval_data (inputs only) with the tuning conf scores the rebuilt model as
    the tuning did and finds the accuracy recorded in best_config.yaml, exactly: face_landmark's
    both outputs against the model as shipped; hand_landmark_full's only the two `combine`
    names (the recorded accuracy is the worst output's share of its tolerance)."""
    root, _ = request.getfixturevalue(which)
    name = root.name
    config = yaml.safe_load((root / "out" / "best_config.yaml").read_text())
    done = run([f"--model={name}.tflite", "--config=out/best_config.yaml", "--calib_data=calib.npz",
                "--output=exported.tflite", "--eval_data=eval.npy", "--conf=conf.yaml"], root,
               module="tf_tpe_tuner.export_cli")
    assert "check ok: accuracy" in done.stdout, done.stdout
    assert f"recorded {float(config['accuracy']):.6f} (tolerance 0)" in done.stdout, done.stdout
    # the recorded accuracy: the worst output's drop as a share of its tolerance
    rows = json.loads((root / "out" / "summary.json").read_text())["outputs"]
    shares = {r["output"]: (r["best"] - r["fp32"]) / SHARE_OF[name][r["output"]] if r["metric"] == "MAE" else
              (r["fp32"] - r["best"]) / (r["fp32"] * SHARE_OF[name][r["output"]]) for r in rows}
    assert float(config["accuracy"]) == pytest.approx(max(shares.values()), abs=1e-9), shares
    exported = (root / "exported.tflite").read_bytes()
    assert io_names(exported) == io_names(pretrained.model_bytes(name))
