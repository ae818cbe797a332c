"""Trials on real Ray: a local runtime of 2 CPUs and 2 workers (killed, failing to set up,
measuring with latency_func), and a cluster of two nodes on this machine, joined through the
command line. No mocks; waits are on conditions, each with a deadline."""
import contextlib
import importlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import FAST_PERF, fast_conf, trial_lines
from tf_tpe_tuner import TunerInputError, tune
from tf_tpe_tuner.conf import Conf
from tf_tpe_tuner.strategy import STRATEGIES
from tf_tpe_tuner.trial import ORIGIN_LOST, int8_units

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
RAY2 = {"name": "ray", "workers": 2}
SMALL_SPACE = {"quantization": {"op_wise": {"conv[123]|logits:softmax": {"activation": {"dtype": ["fp32"]}}}}}  # fc1, logits


# -- processes ----------------------------------------------------------------------------------
def _processes() -> dict[int, tuple[int, int, str, str]]:
    """pid -> (parent pid, process group, state, command line), from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        table[int(entry)] = (int(fields[1]), int(fields[2]), fields[0], cmdline.strip())
    return table


def trial_worker_pids(root: int | None = None) -> list[int]:
    """Live `ray::TrialWorker` processes under `root` (default: this process, whose local Ray
    runtime is its child): another Ray run on this machine is not ours to count or kill."""
    table = _processes()
    root = os.getpid() if root is None else root

    def under(pid: int) -> bool:
        seen = set()
        while pid in table and pid not in seen:
            if pid == root:
                return True
            seen.add(pid)
            pid = table[pid][0]
        return False

    return sorted(pid for pid, (_, _, state, cmd) in table.items()
                  if cmd.startswith("ray::TrialWorker") and state != "Z" and pid != root and under(pid))


def alive(pid: int) -> bool:
    info = _processes().get(pid)
    return info is not None and info[2] != "Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, seconds: float, what: str):
    """Poll `condition` until it returns something true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {seconds:g} s waiting for {what}")
        time.sleep(0.2)


# -- the local runtime --------------------------------------------------------------------------
def test_two_workers_and_a_killed_one(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    killed, seen = [], []

    def kill_a_worker(record):
        if not killed:
            pids = trial_worker_pids()
            assert len(pids) == 2
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
            seen.extend(pids)

    conf = fast_conf(exit_policy={"max_trials": 6, "timeout": 3600}, executor=RAY2)
    result = tune(cnn, conf, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path),
                  q_hooks={"on_trial_end": kill_a_worker})
    assert killed
    assert result.trials == 6  # the run went on with the remaining worker
    statuses = [r.status for r in result.history]
    assert statuses.count("failed") == 1
    failed = next(r for r in result.history if r.status == "failed")
    assert "worker died" in failed.error and failed.error_origin == ORIGIN_LOST
    assert failed.worker["pid"] == killed[0]
    assert sorted(r.trial for r in result.history) == list(range(1, 7))
    for name in ("best_model.tflite", "best_config.yaml", "summary.json", "history.jsonl"):
        assert (tmp_path / name).exists(), name
    lines = trial_lines(tmp_path / "history.jsonl")
    assert len(lines) == 6 and all("latency_ms" in json.loads(line) for line in lines)
    ok = [r for r in result.history if r.status == "ok"]
    assert all(r.latency_ms > 0 and r.accuracy > 0.5 for r in ok)
    assert {r.worker["pid"] for r in ok} <= set(seen) and all(r.worker["node"] for r in ok)
    assert result.met_criterion
    wait_until(lambda: not any(alive(pid) for pid in seen), 60, "the actors to be gone with the run")


def test_latency_func_is_measured_in_the_workers(cnn, digits, tmp_path):
    """Each worker scores a trial by latency_func(candidate) / latency_func(fp32 model): the
    ratios recorded are the function's, computed here again from the same models."""
    (x, _), (xt, yt) = digits
    calls = tmp_path / "latency_func_calls"

    def latency_func(tflite_bytes):  # "seconds" that depend on the model only: its size
        import os

        with open(calls, "a") as f:
            f.write(f"{os.getpid()}\n")
        return 1e-6 * len(tflite_bytes)

    conf = Conf(fast_conf(exit_policy={"max_trials": 4, "timeout": 3600}, executor=RAY2,
                          workspace={"path": str(tmp_path / "out")}))
    strategy = STRATEGIES[conf.get("tuning.strategy.name")](cnn, conf, x[:64], eval_dataloader=(xt, yt),
                                                            latency_func=latency_func)
    result = strategy.traverse()
    ok = [r for r in result.history if r.status == "ok"]
    assert len(ok) == 4
    reference = strategy.prepared.spec.evaluation.reference
    for record in ok:
        assert record.latency_source == "latency_func"
        model = strategy.realizer.realize(int8_units(record.config)).tflite_model  # here, not in a worker
        assert record.latency_ratio == pytest.approx(len(model) / len(reference), rel=1e-9), record.config
        assert record.latency_ms == pytest.approx(1e-3 * len(model), rel=1e-9)
    assert min(r.latency_ratio for r in ok) < 0.8  # int8 models are smaller: the function's figure, not a CPU's
    callers = {int(pid) for pid in calls.read_text().split()}
    workers = {r.worker["pid"] for r in ok}
    assert len(workers) == 2 and os.getpid() not in workers and workers <= callers


def test_every_worker_killed_stops_the_run_with_the_best_so_far(cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    killed = []

    def kill_every_worker(record):
        if not killed:
            pids = trial_worker_pids()
            assert len(pids) == 2
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed.extend(pids)

    conf = fast_conf(exit_policy={"max_trials": 20, "timeout": 3600}, executor=RAY2)
    result = tune(cnn, conf, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path),
                  q_hooks={"on_trial_end": kill_every_worker})
    assert result.stop_reason == "no worker left"
    first = result.history[0]
    assert first.status == "ok"
    lost = [r for r in result.history if r.status == "failed"]
    assert len(lost) == 2 and all(r.error_origin == ORIGIN_LOST for r in lost)  # one per worker
    assert {r.worker["pid"] for r in lost} == set(killed)
    assert result.trials == len(result.history) in (3, 4)  # trial 2 finished before the kill, or not
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stop_reason"] == "no worker left" and summary["trials"] == result.trials
    assert (tmp_path / "best_model.tflite").read_bytes() == result.tflite_model
    assert (tmp_path / "best_config.yaml").exists()
    assert len(trial_lines(tmp_path / "history.jsonl")) == result.trials


def _driver_only_eval_func(tmp_path, monkeypatch):
    """An eval_func from a module this process can import and the workers cannot."""
    folder = tmp_path / "driver_only"
    folder.mkdir()
    (folder / "tpe_driver_only_eval.py").write_text("def accuracy(model):\n    return 0.9\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "tpe_driver_only_eval", raising=False)
    return importlib.import_module("tpe_driver_only_eval").accuracy, \
        r"ModuleNotFoundError: No module named 'tpe_driver_only_eval'"


def _eval_func_failing_to_load(tmp_path, monkeypatch):
    """An eval_func that works here and raises when a worker unpickles it (a custom layer it
    cannot load, say)."""
    def refuse(message):
        raise RuntimeError(message)

    class Accuracy:
        def __call__(self, model):
            return 0.9

        def __reduce__(self):
            return refuse, ("this eval_func cannot be loaded here",)

    return Accuracy(), r"RuntimeError: this eval_func cannot be loaded here"


@pytest.mark.parametrize("make_eval_func", [_driver_only_eval_func, _eval_func_failing_to_load],
                         ids=["module_missing_in_workers", "raises_when_unpickled"])
def test_a_worker_that_cannot_set_up_is_one_clear_error_at_the_start(cnn, digits, tmp_path, monkeypatch,
                                                                      make_eval_func):
    (x, _), _ = digits
    eval_func, cause = make_eval_func(tmp_path, monkeypatch)
    assert eval_func(None) == 0.9  # fine in this process
    began = []
    out = tmp_path / "out"
    conf = fast_conf(exit_policy={"max_trials": 6, "timeout": 3600}, executor=RAY2)
    with pytest.raises(TunerInputError, match="a Ray worker could not set up the trial: " + cause):
        tune(cnn, conf, x[:64], eval_func=eval_func, output_dir=str(out),
             q_hooks={"on_trial_begin": lambda trial, config: began.append(trial)})
    assert not began  # no trial was sent: the error came first
    assert not trial_lines(out / "history.jsonl")
    wait_until(lambda: not trial_worker_pids(), 60, "the workers to be gone")


def test_an_eval_func_that_cannot_be_pickled_is_a_clear_error(cnn, digits, tmp_path):
    (x, _), _ = digits
    lock = threading.Lock()

    def eval_func(model):
        with lock:  # a lock cannot be pickled, so neither can this function
            return 0.9

    conf = fast_conf(exit_policy={"max_trials": 6, "timeout": 3600}, executor=RAY2)
    with pytest.raises(TunerInputError) as error:
        tune(cnn, conf, x[:64], eval_func=eval_func, output_dir=str(tmp_path))
    assert str(error.value) == ("cannot send the tuning job to Ray workers: TypeError: cannot pickle "
                                "'_thread.lock' object (in the trial description's evaluation -> eval_func -> lock)")
    assert not trial_lines(tmp_path / "history.jsonl")


def test_a_configuration_lost_with_its_worker_is_tried_again(cnn, digits, tmp_path):
    """One worker is SIGKILLed in the middle of its first trial; in a space of 4 configurations
    the run then evaluates all 4, the lost one included: 5 trials."""
    (x, _), (xt, yt) = digits
    claim = tmp_path / "killed_worker"
    driver = os.getpid()

    def latency_func(tflite_bytes, _calls={}):
        import os
        import signal

        pid = os.getpid()
        _calls[pid] = _calls.get(pid, 0) + 1  # a worker's first call measures the fp32 reference
        if pid != driver and _calls[pid] > 1:
            try:
                fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass  # another worker was killed already
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return 1e-6 * len(tflite_bytes)

    conf = {**fast_conf(exit_policy={"max_trials": 10, "timeout": 3600}, executor=RAY2), **SMALL_SPACE}
    result = tune(cnn, conf, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path / "out"),
                  latency_func=latency_func)
    lost = [r for r in result.history if r.status == "failed"]
    assert len(lost) == 1 and lost[0].error_origin == ORIGIN_LOST
    assert lost[0].worker["pid"] == int(claim.read_text())
    ok = [r for r in result.history if r.status == "ok"]
    configs = {tuple(sorted(r.config.items())) for r in ok}
    assert len(configs) == len(ok) == 4  # every configuration of the space, each once
    assert tuple(sorted(lost[0].config.items())) in configs  # the lost one again
    assert any(r.trial > lost[0].trial and r.config == lost[0].config for r in ok)
    assert result.trials == 5
    assert result.stop_reason.startswith("search space exhausted (all 4 configurations tried)")


def test_missing_ray_is_a_clear_error(cnn, digits, tmp_path, monkeypatch):
    (x, _), (xt, yt) = digits
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    conf = fast_conf(executor=RAY2)
    with pytest.raises(TunerInputError, match=r"pip install 'tf_tpe_tuner\[ray\]'"):
        tune(cnn, conf, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path))


def test_an_address_where_no_cluster_answers_is_bad_input(cnn, digits, tmp_path):
    """Refused at once (ray.init would retry such an address for minutes)."""
    (x, _), (xt, yt) = digits
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    conf = fast_conf(executor={**RAY2, "address": address})
    with pytest.raises(TunerInputError, match=f"cannot join the Ray cluster at {address}: nothing answers there "
                                              r"\(Connection refused\); is the cluster running\?"):
        tune(cnn, conf, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path))
    assert not trial_lines(tmp_path / "history.jsonl")


# -- a cluster of two nodes on this machine, through the command line ---------------------------
class RayCluster:
    """A Ray cluster of its own on this machine: `ray start --block` processes started here,
    each in its own session, with a temp dir and an auth token of its own, so that no other Ray
    run joins it, and stopped by their ids (`ray stop` would stop every Ray of the machine)."""

    START_SECONDS = 180

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="tpe-ray-", dir="/tmp"))  # short: Ray's sockets live there
        token = self.root / "auth_token"
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ,
                    "PYTHONPATH": os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.address = f"127.0.0.1:{free_port()}"
        self.nodes: list[tuple[subprocess.Popen, Path]] = []

    def start_node(self) -> None:
        """The head first, then nodes joining it: 1 CPU each, loopback address."""
        head = not self.nodes
        ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
        args = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus=1",
                "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
        args += [f"{flag}={free_port()}" for flag in ports]
        if head:
            args += ["--head", f"--port={self.address.split(':')[1]}", "--include-dashboard=false",
                     f"--temp-dir={self.root}", f"--ray-client-server-port={free_port()}",
                     f"--dashboard-port={free_port()}"]
        else:
            args += [f"--address={self.address}"]
        log = self.root / f"node{len(self.nodes)}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.nodes.append((proc, log))
        wait_until(lambda: self._started(proc, log), self.START_SECONDS, f"Ray node {log.name} to start")
        wait_until(lambda: len(self.node_ids()) == len(self.nodes), self.START_SECONDS,
                   f"{len(self.nodes)} alive nodes in the cluster")

    @staticmethod
    def _started(proc, log) -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        return "Ray runtime started" in log.read_text()

    def node_ids(self) -> list[str]:
        """The alive nodes' ids, asked of the cluster by a driver of its own."""
        probe = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
                 "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))" % self.address)
        proc = subprocess.run([sys.executable, "-c", probe], env=self.env, capture_output=True, text=True,
                              timeout=self.START_SECONDS)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def stop_node(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # ray start stops its node's processes
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
        for pid, (_, group, _, _) in _processes().items():  # what is left of its session
            if group == proc.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        for proc, _ in reversed(self.nodes):
            self.stop_node(proc)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head():
    """A cluster with its head node only (1 CPU); a test may add a node and stop it again."""
    cluster = RayCluster()
    try:
        cluster.start_node()
        yield cluster
    finally:
        cluster.stop()


def write_conf(path: Path, max_trials: int) -> Path:
    path.write_text(yaml.safe_dump({"evaluation": {"performance": dict(FAST_PERF)},
                                    "tuning": {"exit_policy": {"max_trials": max_trials, "timeout": 3600}}}))
    return path


def run_cli(files: Path, out: Path, *flags, env=None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "tf_tpe_tuner", f"--model={files / 'model.keras'}",
            f"--calib_data={files / 'calib.npz'}", f"--eval_data={files / 'eval.npz'}",
            f"--output_dir={out}", "--progress=log", *flags]
    env = env or dict(os.environ)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)


def history(out: Path) -> list[dict]:
    return [json.loads(line) for line in trial_lines(out / "history.jsonl")]


def test_workers_the_cluster_cannot_start_do_not_outlast_the_timeout(ray_head, cnn_files, tmp_path):
    """2 workers on a cluster of 1 CPU: one never starts; the run still ends at its timeout."""
    conf = write_conf(tmp_path / "conf.yaml", max_trials=4)
    run = run_cli(cnn_files, tmp_path / "out", f"--conf={conf}", "--executor=ray", "--workers=2",
                  f"--ray_address={ray_head.address}", "--timeout=20", env=ray_head.env)
    assert run.returncode == 1, run.stderr[-3000:]  # nothing evaluated, so nothing met the criterion
    assert "of 2 Ray workers had not started when the timeout passed" in run.stdout  # the tuner's log
    assert "stopped: timeout (20 s) passed" in run.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["stop_reason"] == "timeout (20 s) passed" and summary["trials"] == 0
    assert not history(tmp_path / "out")


def test_the_command_line_on_a_cluster_of_two_nodes(ray_head, cnn_files, tmp_path):
    """`--ray_address` joins a cluster of two nodes (one CPU each): the trials run on both, and
    the results are those of a local run in kind."""
    conf = write_conf(tmp_path / "conf.yaml", max_trials=4)
    local = run_cli(cnn_files, tmp_path / "local", f"--conf={conf}", "--max_trials=2")
    assert local.returncode == 0, local.stderr[-3000:]
    ray_head.start_node()
    try:
        nodes = set(ray_head.node_ids())
        assert len(nodes) == 2
        run = run_cli(cnn_files, tmp_path / "cluster", f"--conf={conf}", "--executor=ray", "--workers=2",
                      f"--ray_address={ray_head.address}", env=ray_head.env)
    finally:
        ray_head.stop_node(ray_head.nodes.pop()[0])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "stopped: max_trials (4) reached" in run.stdout
    lines = history(tmp_path / "cluster")
    assert len(lines) == 4 and all(line["status"] == "ok" for line in lines)
    assert {line["worker"]["node"] for line in lines} == nodes  # trials ran on both nodes
    assert len({line["worker"]["pid"] for line in lines}) == 2
    assert all(line["latency_source"] == "side_by_side" and line["latency_ratio"] > 0 for line in lines)
    local_lines = history(tmp_path / "local")
    assert all(line["worker"] is None for line in local_lines)
    assert {frozenset(line) for line in lines + local_lines} == {frozenset(local_lines[0])}  # the same keys
    summary = json.loads((tmp_path / "cluster" / "summary.json").read_text())
    local_summary = json.loads((tmp_path / "local" / "summary.json").read_text())
    assert set(summary) == set(local_summary) and summary["trials"] == 4
    assert sorted(os.listdir(tmp_path / "cluster")) == sorted(os.listdir(tmp_path / "local"))
    assert np.isfinite(summary["best_latency_ms"]) and summary["best_accuracy"] > 0.5
