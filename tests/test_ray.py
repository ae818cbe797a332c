"""Trials on a real local Ray runtime with 2 CPUs and 2 workers, one of them killed mid-run."""
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import fast_conf, trial_lines
from tf_tpe_tuner import TunerInputError, tune

pytestmark = pytest.mark.slow


def ray_worker_pids():
    out = subprocess.run(["pgrep", "-f", "ray::TrialWorker"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_two_workers_and_a_killed_one(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    killed = []

    def kill_a_worker(record):
        if not killed:
            pids = ray_worker_pids()
            assert len(pids) == 2
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    conf = fast_conf(exit_policy={"max_trials": 6, "timeout": 3600},
                     executor={"name": "ray", "workers": 2})
    result = tune(cnn, conf, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path),
                  q_hooks={"on_trial_end": kill_a_worker})
    assert killed
    assert result.trials == 6  # the run went on with the remaining worker
    statuses = [r.status for r in result.history]
    assert statuses.count("failed") == 1
    failed = next(r for r in result.history if r.status == "failed")
    assert "worker died" in failed.error
    assert sorted(r.trial for r in result.history) == list(range(1, 7))
    for name in ("best_model.tflite", "best_config.yaml", "summary.json", "history.jsonl"):
        assert (tmp_path / name).exists(), name
    lines = trial_lines(tmp_path / "history.jsonl")
    assert len(lines) == 6 and all("latency_ms" in json.loads(line) for line in lines)
    ok = [r for r in result.history if r.status == "ok"]
    assert all(r.latency_ms > 0 and r.accuracy > 0.5 for r in ok)
    assert result.met_criterion
    assert not ray_worker_pids()  # the actors are gone with the run


def test_missing_ray_is_a_clear_error(cnn, digits, tmp_path, monkeypatch):
    (x, _), (xt, yt) = digits
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    conf = fast_conf(executor={"name": "ray", "workers": 2})
    with pytest.raises(TunerInputError, match=r"pip install 'tf_tpe_tuner\[ray\]'"):
        tune(cnn, conf, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path))
