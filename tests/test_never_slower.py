"""Never slower than float, through the real command line (issue 11, promise 1).

Two real models (tests/promise_models.py, with the measurements behind them): one whose every
int8 configuration meets the criterion but runs slower than float (the float model must be
handed back), one whose all-int8 model misses the criterion while a mix meets it well under the
float latency (that mix, or a faster one, must be handed back). Whether int8 pays depends on
the CPU (the mix reads 0.42-0.65x float on CPUs with VNNI; on an AVX2-only EPYC none beat
float), so both are tuned on a latency the test sets (`tests/cost_latency.py`, through
`--latency_func`)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

import cost_latency
from conftest import FAST_PERF, trial_lines
from promise_models import build_int8_slower_model, build_mix_wins_model

pytestmark = pytest.mark.slow  # a TensorFlow import per command line run

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def saved(build, root):
    model, (x_calib, _), (x_eval, y_eval) = build()
    root.mkdir()
    model.save(root / "model.keras")
    np.savez(root / "calib.npz", x=x_calib)
    np.savez(root / "eval.npz", x=x_eval, y=y_eval)
    (root / "conf.yaml").write_text(yaml.safe_dump({"evaluation": {"performance": FAST_PERF}}))
    return root


@pytest.fixture(scope="module")
def slower(tmp_path_factory):
    return saved(build_int8_slower_model, tmp_path_factory.mktemp("m") / "slower")


@pytest.fixture(scope="module")
def mix_wins(tmp_path_factory):
    return saved(build_mix_wins_model, tmp_path_factory.mktemp("m") / "mix")


def tune_cli(files, out, *extra):
    args = [sys.executable, "-m", "tf_tpe_tuner", f"--model={files / 'model.keras'}",
            f"--conf={files / 'conf.yaml'}", f"--calib_data={files / 'calib.npz'}",
            f"--eval_data={files / 'eval.npz'}", f"--output_dir={out}", "--progress=log", *extra]
    return subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=900)


def float_model_of(files) -> bytes:
    from tf_tpe_tuner.model_io import load_keras_model
    from tf_tpe_tuner.realize_denylist import DenylistRealizer
    from tf_tpe_tuner.walker import walk
    from tf_tpe_tuner.data import ArrayData

    graph = walk(load_keras_model(str(files / "model.keras")))
    return DenylistRealizer(graph, ArrayData([np.load(files / "calib.npz")["x"]])).realize_float().tflite_model


@pytest.mark.parametrize("extra", [(), ("--timeout=0",)], ids=["default", "timeout_0"])
def test_when_every_mix_is_slower_the_float_model_is_handed_back(slower, tmp_path, extra):
    out = tmp_path / "out"
    run = tune_cli(slower, out, cost_latency.FLAG_SLOWER, *extra)
    assert run.returncode == 0, run.stderr  # the float model meets the criterion
    summary = json.loads((out / "summary.json").read_text())
    assert summary["handed_back"] == "float", summary
    assert summary["met_criterion"] is True and summary["best_trial"] is None
    assert summary["speedup"] == pytest.approx(1.0)
    fastest = summary["fastest_quantized"]
    assert fastest["latency_ratio"] >= 1 - summary["latency_noise"]
    assert (out / "best_model.tflite").read_bytes() == float_model_of(slower)
    config = yaml.safe_load((out / "best_config.yaml").read_text())
    assert set(config["units"].values()) == {"fp32"} and config["int8_units"] == []
    assert "float model is handed back" in run.stdout
    last = [line for line in run.stdout.splitlines() if line.startswith("trial ")][-1]
    assert last.endswith("| chosen: the float model (no trial that meets is faster)"), last
    assert "The float model is handed back" in (out / "report.md").read_text()
    records = [json.loads(line) for line in trial_lines(out / "history.jsonl")]
    assert all(r["met_criterion"] for r in records if r["status"] == "ok")  # they met it, slower
    if extra:  # timeout 0: no configuration beats float, so every one of the 7 + all-fp32 is tried
        assert summary["stop_reason"].startswith("search space exhausted")


def test_when_a_mix_beats_float_the_fastest_that_meets_is_handed_back(mix_wins, tmp_path):
    out = tmp_path / "out"
    run = tune_cli(mix_wins, out, cost_latency.FLAG)
    assert run.returncode == 0, run.stderr
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(line) for line in trial_lines(out / "history.jsonl")]
    assert not records[0]["met_criterion"]  # all-int8 misses
    assert summary["handed_back"] == "quantized" and summary["met_criterion"]
    config = yaml.safe_load((out / "best_config.yaml").read_text())
    assert config["units"]["fc1"] == config["units"]["logits"] == "fp32"
    assert "conv2" in config["int8_units"]  # where the time goes (0.42-0.65x float with it int8)
    assert summary["speedup"] > 1.4
    meeting = [r for r in records if r["status"] == "ok" and r["met_criterion"] and r["int8_units"]]
    best = next(r for r in records if r["trial"] == summary["best_trial"])
    fastest = min(meeting, key=lambda r: r["latency_ratio"])
    if summary["final_choice"]:  # near-ties re-measured: the fastest reading among the contenders
        assert {str(best["trial"]), str(fastest["trial"])} <= set(summary["final_choice"]["remeasured"])
    else:
        assert best["latency_ratio"] == fastest["latency_ratio"]
