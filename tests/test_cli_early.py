"""What the command line refuses, or answers, before TensorFlow is imported: --help, flags, the
conf, the data files' formats and an output directory that already holds results.

Each child process runs the real `run()` with TensorFlow made unimportable
(`sys.modules["tensorflow"] = None`): had the command line imported it first, the refusal would
be an ImportError (exit 3) instead of the one-line message (exit 2). No TensorFlow is loaded, so
each run takes a fraction of a second.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WITHOUT_TENSORFLOW = ("import sys\n"
                      "sys.modules['tensorflow'] = None  # `import tensorflow` raises ImportError\n"
                      "from tf_tpe_tuner.{module} import run\n"
                      "sys.argv = sys.argv[1:]\n"
                      "run()\n")


def run_without_tensorflow(cwd: Path, *args, module="cli", prog="tf-tpe-tune"):
    code = WITHOUT_TENSORFLOW.format(module=module)
    return subprocess.run([sys.executable, "-c", code, prog, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def files(tmp_path):
    """Files that are fine as far as the early checks go (the model is never loaded)."""
    (tmp_path / "model.keras").write_bytes(b"never read: refused before loading")
    x = np.zeros((4, 8, 8, 1), "float32")
    np.savez(tmp_path / "calib.npz", x=x)
    np.savez(tmp_path / "eval.npz", x=x, y=np.zeros(4))
    (tmp_path / "conf.yaml").write_text("tuning:\n  exit_policy:\n    max_trials: 3\n")
    return tmp_path


def args(files, *extra, conf="conf.yaml", calib="calib.npz", evald="eval.npz"):
    return ["--model=model.keras", f"--conf={conf}", f"--calib_data={calib}", f"--eval_data={evald}",
            "--output_dir=out", *extra]


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return path.name


def with_old_results(files):
    (files / "out").mkdir()
    (files / "out" / "summary.json").write_text("{}\n")
    return []


def npy(files, name):
    np.save(files / name, np.zeros((4, 8, 8, 1), "float32"))
    return name


CASES = {
    # case: (extra arguments from the files fixture, words the error line must contain)
    "bad_flag": (lambda f: args(f, "--max_trials=zero"), ["--max_trials", "zero"]),
    "unknown_conf_key": (lambda f: args(f, conf=write(f / "c.yaml", "tuning:\n  exit_polcy: {}\n")),
                         ["unknown key tuning.exit_polcy", "did you mean tuning.exit_policy"]),
    "yaml_syntax": (lambda f: args(f, conf=write(f / "c.yaml", "tuning: [1\n")), ["c.yaml", "yaml syntax error"]),
    "wrong_type": (lambda f: args(f, conf=write(f / "c.yaml", "tuning:\n  random_seed: abc\n")),
                   ["tuning.random_seed", "whole number"]),
    "existing_results": (lambda f: with_old_results(f) + args(f), ["out already holds results", "--overwrite"]),
    "resume_and_overwrite": (lambda f: with_old_results(f) + args(f, "--resume", "--overwrite"),
                             ["resume and overwrite exclude each other"]),
    "resume_without_history": (lambda f: args(f, "--resume"), ["nothing to resume in out", "history.jsonl"]),
    "npy_eval_data": (lambda f: args(f, evald=npy(f, "eval.npy")),
                      ["--eval_data file eval.npy", ".npy file", "no labels", "numpy.savez"]),
    "npy_test_data": (lambda f: args(f, f"--test_data={npy(f, 'test.npy')}"), ["--test_data file test.npy", "no labels"]),
    "npz_not_a_zip": (lambda f: args(f, calib=write(f / "calib.npz", "x,y\n0.1,3\n")),
                      ["--calib_data file calib.npz", "not an .npz file", "zip archive"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_before_tensorflow_is_imported(files, case):
    make_args, words = CASES[case]
    arguments = make_args(files)
    before = sorted(p.relative_to(files) for p in files.rglob("*"))
    proc = run_without_tensorflow(files, *arguments)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tf-tpe-tune: error: "), proc.stderr
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    assert sorted(p.relative_to(files) for p in files.rglob("*")) == before  # nothing written


def test_a_clean_start_does_reach_tensorflow(files):
    """The other side of the tests above: with nothing to refuse, the child does import
    TensorFlow (here: fails to), so the refusals above really came before it."""
    proc = run_without_tensorflow(files, *args(files))
    assert proc.returncode == 3 and "import of tensorflow halted" in proc.stderr, proc.stderr


# -- --help ---------------------------------------------------------------------------------------
TUNE_FLAGS = ["model", "conf", "calib_data", "eval_data", "output_dir", "max_trials", "timeout",
              "test_data", "progress", "overwrite", "resume", "dry_run"]
EXPORT_FLAGS = ["model", "config", "calib_data", "output", "input_type", "eval_data", "tolerance",
                "keras_io_names"]


def check_help(proc, flags, prog):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(prog + ":"), proc.stdout
    for flag in flags:  # absl writes --name: ... or, for a boolean, --[no]name: ...
        assert f"--{flag}:" in proc.stdout or f"--[no]{flag}:" in proc.stdout, flag
    assert "Try --helpfull" not in proc.stdout
    assert "--logtostderr" not in proc.stdout  # absl's own flags stay behind --helpfull


@pytest.mark.parametrize("spelling", ["--help", "-h"])
def test_tune_help_lists_its_flags_and_exits_0(tmp_path, spelling):
    check_help(run_without_tensorflow(tmp_path, spelling), TUNE_FLAGS, "tf-tpe-tune")


def test_python_m_help_lists_its_flags_and_exits_0(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tf_tpe_tuner", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    check_help(proc, TUNE_FLAGS, "tf-tpe-tune")


@pytest.mark.parametrize("command", ["tf-tpe-tune", "tf-tpe-export"])
def test_installed_commands_help(tmp_path, command):
    path = shutil.which(command, path=os.path.dirname(sys.executable)) or shutil.which(command)
    if path is None:
        pytest.skip(f"{command} is not installed (pip install -e .)")
    proc = subprocess.run([path, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    check_help(proc, TUNE_FLAGS if command == "tf-tpe-tune" else EXPORT_FLAGS, command)


def test_export_help_lists_its_flags_and_exits_0(tmp_path):
    proc = run_without_tensorflow(tmp_path, "--help", module="export_cli", prog="tf-tpe-export")
    check_help(proc, EXPORT_FLAGS, "tf-tpe-export")
