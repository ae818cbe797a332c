"""Nothing lost, nothing confusing: kill -9 and resume, Ctrl-C, failed trials, timeouts,
atomic outputs, unsafe models. Real subprocesses of the real command line."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import FAST_PERF, fast_conf, trial_lines
from cost_latency import int8_pays
from tf_tpe_tuner import tune
from tf_tpe_tuner._tf import keras
from tf_tpe_tuner.export import write_atomic

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def cli_args(files, out, conf_path, *extra):
    return [sys.executable, "-m", "tf_tpe_tuner", f"--model={files / 'model.keras'}",
            f"--conf={conf_path}", f"--calib_data={files / 'calib.npz'}",
            f"--eval_data={files / 'eval.npz'}", f"--output_dir={out}", *extra]


def write_conf(tmp_path, max_trials):
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump({"evaluation": {"performance": FAST_PERF},
                                    "tuning": {"exit_policy": {"timeout": 3600, "max_trials": max_trials}}}))
    return path


def history_lines(out):
    return trial_lines(out / "history.jsonl")


def start_held_after_trial(args, tmp_path, n, timeout=300):
    """Start the CLI and return once it has recorded trial `n` and is holding there
    (tf_tpe_tuner._test_hold): a signal sent now lands at a known point, however fast trials are."""
    hold = tmp_path / "held"
    env = {**ENV, "TF_TPE_TUNER_HOLD_AFTER_TRIAL": f"{n}:{hold}"}
    # SIGINT as at a terminal even when the test run itself ignores it (started with `&` or
    # nohup): Python installs no Ctrl-C handler in a process that inherits it ignored.
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + timeout
    while not hold.exists():  # a state that stays once reached: waiting for it races nothing
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"trial {n} not recorded within {timeout} s"
        time.sleep(0.05)
    return proc


@pytest.mark.slow
def test_kill_9_then_resume_keeps_every_finished_trial(cnn_files, tmp_path):
    out = tmp_path / "out"
    conf = write_conf(tmp_path, max_trials=6)
    proc = start_held_after_trial(cli_args(cnn_files, out, conf), tmp_path, 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    before = history_lines(out)
    assert len(before) == 2
    with open(out / "history.jsonl", "a") as f:  # as if the kill landed mid-write
        f.write('{"trial": 99, "config": {"conv1": "in')
    refused = subprocess.run(cli_args(cnn_files, out, conf), env=ENV, capture_output=True, text=True)
    assert refused.returncode == 2 and "already holds results" in refused.stderr
    resumed = subprocess.run(cli_args(cnn_files, out, conf, "--resume"), env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    after = history_lines(out)
    assert after[:len(before)] == before  # finished trials kept as they were
    records = [json.loads(line) for line in after]
    assert [r["trial"] for r in records] == list(range(1, 7))  # max_trials in total
    keys = {frozenset(k for k, v in r["config"].items() if v == "int8") for r in records}
    assert len(keys) == 6  # none evaluated twice
    printed = [line for line in resumed.stdout.splitlines() if line.startswith("trial ")]
    assert printed[0].startswith(f"trial {len(before) + 1} ")  # the count continues
    assert json.loads((out / "summary.json").read_text())["trials"] == 6


@pytest.mark.slow
def test_ctrl_c_writes_the_best_so_far_and_exits_130(cnn_files, tmp_path):
    out = tmp_path / "out"
    conf = write_conf(tmp_path, max_trials=50)
    proc = start_held_after_trial(cli_args(cnn_files, out, conf), tmp_path, 2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    assert (out / "best_model.tflite").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == len(history_lines(out)) == 2


def test_ctrl_c_while_the_report_is_written_keeps_the_results(cnn, digits, tmp_path, monkeypatch):
    from tf_tpe_tuner import TuningInterrupted, report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(report, "write_report", interrupted)
    (x, _), (xt, yt) = digits
    conf = fast_conf(exit_policy={"max_trials": 2, "timeout": 3600})
    with pytest.raises(TuningInterrupted) as stop:
        tune(cnn, conf, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path))
    assert stop.value.result.trials == 2  # the search had finished: its results are all there
    assert (tmp_path / "best_model.tflite").stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["trials"] == 2


def test_failed_trials_are_recorded_and_the_search_goes_on(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    answers = iter([None, "boom", float("nan"), "not a number"])

    def eval_func(model):
        answer = next(answers, None)
        if answer == "boom":
            raise RuntimeError("eval broke")
        if answer is None:
            return float(np.mean(model(xt).argmax(-1) == yt))
        return answer

    result = tune(cnn, fast_conf(exit_policy={"max_trials": 4, "timeout": 3600}), x[:64],
                  eval_func=eval_func, output_dir=str(tmp_path),
                  latency_func=int8_pays)  # trial 4 beats float on any CPU: it is the best
    assert [r.status for r in result.history] == ["failed", "failed", "failed", "ok"]
    assert "eval broke" in result.history[0].error
    assert "nan" in result.history[1].error
    assert "number" in result.history[2].error
    assert result.best_trial == 4
    lines = [json.loads(line) for line in history_lines(tmp_path)]
    assert [line["status"] for line in lines] == ["failed", "failed", "failed", "ok"]


@pytest.mark.slow
def test_the_tools_own_failure_on_every_trial_is_a_bug_exit_3(cnn_files, tmp_path):
    """A realization that breaks on each of the first three trials, after the float model worked,
    is the tool's bug, not data: exit 3 with the traceback (it used to end as 'criterion not met')."""
    out = tmp_path / "out"
    conf = write_conf(tmp_path, max_trials=6)
    inject = ("import sys, tf_tpe_tuner.realize_denylist as d\n"
              "def broken(self, units): raise RuntimeError('converter exploded')\n"
              "d.Requantizing.realize = broken\n"
              "from tf_tpe_tuner.cli import run\n"
              "sys.argv = sys.argv[1:]\n"
              "run()\n")
    args = cli_args(cnn_files, out, conf)
    proc = subprocess.run([sys.executable, "-c", inject, "tf-tpe-tune", *args[3:]],
                          env=ENV, capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" in proc.stderr and "converter exploded" in proc.stderr
    assert "internal error" in proc.stderr
    lines = [json.loads(line) for line in history_lines(out)]
    assert len(lines) == 3 and all(line["error_origin"] == "tool" for line in lines)


def test_timeout_ends_the_run_within_one_trial(cnn, digits, tmp_path, monkeypatch):
    """The clock is the test's: it jumps past the timeout when trial 3 ends, so no trial may
    start after that, however fast or slow the machine is."""
    from tf_tpe_tuner.study import study

    jump = {"s": 0.0}
    monkeypatch.setattr(study, "monotonic", lambda: time.monotonic() + jump["s"])

    def after_trial(record):
        if record.trial == 3:
            jump["s"] = 3600.0

    (x, _), (xt, yt) = digits
    result = tune(cnn, fast_conf(exit_policy={"max_trials": 1000, "timeout": 60}), x[:64],
                  eval_data=(xt, yt), output_dir=str(tmp_path), q_hooks={"on_trial_end": after_trial})
    assert result.trials == 3  # the 32-configuration space would have gone on to 32
    assert result.stop_reason.startswith("timeout")
    assert (tmp_path / "best_model.tflite").exists()


def test_outputs_are_written_atomically(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    target.write_text('{"old": true}')

    def dies_mid_write(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", dies_mid_write)
    with pytest.raises(OSError):
        write_atomic(str(target), '{"new": true}')
    assert target.read_text() == '{"old": true}'  # a reader never sees a half-written file
    assert os.listdir(tmp_path) == ["summary.json"]  # no temporary left behind


@pytest.mark.slow
def test_h5_model_with_lambda_is_refused_unless_allowed(tmp_path, cnn_files):
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    model.save(tmp_path / "lambda.h5")
    args = [sys.executable, "-m", "tf_tpe_tuner", f"--model={tmp_path / 'lambda.h5'}", "--dry_run"]
    refused = subprocess.run(args, env=ENV, capture_output=True, text=True)
    assert refused.returncode == 2
    assert "Lambda" in refused.stderr and "--allow_unsafe_model" in refused.stderr
    assert "Traceback" not in refused.stderr
    allowed = subprocess.run(args + ["--allow_unsafe_model"], env=ENV, capture_output=True, text=True)
    assert "--allow_unsafe_model" not in allowed.stderr  # loaded; what follows is the walker's word
