"""Progress that tells the truth: the bar only where it can be drawn, a layout that stays put,
one line per trial. Terminals are real pseudo-terminals (pty), with a width set or left at 0."""
import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest

from tf_tpe_tuner.history import TrialRecord
from tf_tpe_tuner.progress import ProgressHooks, resolve_mode, terminal_width


def terminal(columns: int):
    """A pseudo-terminal of `columns` columns (a new pty has 0: its width is unknown);
    returns (master fd, the slave side as a text stream)."""
    master, slave = pty.openpty()
    if columns:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    return master, os.fdopen(slave, "w")


def test_bar_only_on_a_terminal_of_known_width():
    for columns, expected in ((100, "bar"), (0, "log")):
        master, stream = terminal(columns)
        try:
            assert terminal_width(stream) == columns
            assert resolve_mode("auto", stream=stream) == expected, columns
            assert resolve_mode("bar", stream=stream) == expected, columns
        finally:
            stream.close()
            os.close(master)
    assert resolve_mode("auto", stream=io.StringIO()) == "log"
    assert resolve_mode("bar", stream=io.StringIO()) == "bar"  # asked for, into a file: drawn


def record(trial, acc, lat, met, n_int8=1, status="ok", error=None):
    config = {f"u{i}": "int8" if i < n_int8 else "fp32" for i in range(12)}
    return TrialRecord(trial=trial, config=config, status=status, accuracy=acc, latency_ms=lat,
                       loss=-1.5 if status == "ok" else None, met_criterion=met, error=error)


def bar_frames(text: str) -> list[str]:
    """The bar's successive states as drawn on a terminal (carriage returns between them)."""
    frames = [f.rstrip() for f in re.split(r"[\r\n]", text)]
    return [f for f in frames if f.startswith("tuning ")]


def test_bar_layout_stays_put():
    out = io.StringIO()
    hooks = ProgressHooks(max_trials=120, timeout=600, mode="bar", file=out)
    records = [record(1, 0.9, 2.0, True, n_int8=12), record(2, None, None, False, n_int8=3,
                                                              status="failed", error="RuntimeError: boom"),
               record(3, 0.95, 1.0, True, n_int8=10), record(4, 0.8, 0.5, False, n_int8=1)]
    with hooks:
        for rec in records:
            hooks.on_trial_begin(rec.trial, rec.config)
            hooks.on_trial_end(rec)
    frames = bar_frames(out.getvalue())
    assert len(frames) >= 2 * len(records)
    for frame in frames:
        assert "| ," not in frame and ", ," not in frame, frame
    # the bar and every field after it start in the same column in every frame
    for marker in ("|", "chosen:"):
        assert len({f.index(marker) for f in frames if marker in f}) == 1, (marker, frames)
    assert len({f.index("/10:00") for f in frames}) == 1, frames
    assert len({f.rindex("|") for f in frames}) == 1, frames
    assert "trial   3: 10/12 int8" in out.getvalue()
    assert frames[-1].startswith("tuning   4/120 |")
    assert frames[-1].endswith("chosen: trial 3 (acc 0.9500, 1.0000 ms, meets)")


def test_failed_trial_is_one_line():
    hooks = ProgressHooks(max_trials=5, mode="log", file=io.StringIO())
    hooks.on_trial_end(record(1, None, None, False, status="failed", error="ValueError: bad\nsecond line"))
    (line,) = hooks.lines
    assert line.startswith("trial 1  int8 1/12  FAILED: ValueError: bad second line | 1/5 trials (1 failed)")
    assert line.endswith("chosen: -")


@pytest.mark.slow
def test_cli_on_a_terminal_of_unknown_width_prints_lines(cnn_files, tmp_path):
    """stderr a terminal (so --progress=auto means the bar) whose width is 0: tqdm would draw
    nothing; the run prints its one line per trial instead, and nothing on the terminal."""
    from test_quiet import CLEAN_ENV, fast_conf_file

    master, slave = terminal(0)
    args = [sys.executable, "-m", "tf_tpe_tuner", f"--model={cnn_files / 'model.keras'}",
            f"--conf={fast_conf_file(tmp_path / 'conf.yaml')}", f"--calib_data={cnn_files / 'calib.npz'}",
            f"--eval_data={cnn_files / 'eval.npz'}", "--output_dir=out", "--max_trials=2", "--timeout=600"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=CLEAN_ENV, stdout=subprocess.PIPE, stderr=slave)
    slave.close()
    stdout = proc.stdout.read().decode()
    on_terminal = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        on_terminal += chunk
    os.close(master)
    assert proc.wait(timeout=600) == 0, stdout + on_terminal.decode()
    trial_lines = [line for line in stdout.splitlines() if line.startswith("trial ")]
    assert len(trial_lines) == 2 and all("/2 trials" in line for line in trial_lines), stdout
    assert "tuning" not in on_terminal.decode() and b"\r" not in on_terminal, on_terminal
