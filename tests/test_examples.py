"""Every example script runs as written (in a fresh working directory) and exits 0."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.slow  # each trains a CNN, tunes it, and pays for a TensorFlow import


def run_example(name, tmp_path, *args):
    """Run an example as a user would: in a clean environment (without the TF_CPP_MIN_LOG_LEVEL
    this test process got from the package); it must print none of TensorFlow's native lines."""
    from test_quiet import CLEAN_ENV, NATIVE_LINE

    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=tmp_path, env=CLEAN_ENV,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    noise = [line for line in (proc.stdout + proc.stderr).splitlines() if NATIVE_LINE.match(line)]
    assert not noise, f"{name} printed TensorFlow's native lines:\n" + "\n".join(noise)
    return proc


def test_every_example_has_a_test():
    tested = {"demo.py", "python_api.py", "keras_callback.py", "export_tflite.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_command_line_demo(tmp_path):
    proc = run_example("demo.py", tmp_path, "--workdir", "demo_out")
    assert "best: trial" in proc.stdout
    assert (tmp_path / "demo_out" / "result" / "best_model.tflite").exists()


def test_python_api(tmp_path):
    proc = run_example("python_api.py", tmp_path)
    assert "held-out samples" in proc.stdout
    for name in ("best_model.tflite", "report.md", "report.json", "pareto.png", "model.tflite"):
        assert (tmp_path / "api_out" / name).exists(), name


def test_keras_callback(tmp_path):
    proc = run_example("keras_callback.py", tmp_path)
    assert "folders: epoch_005, epoch_010, final" in proc.stdout
    for folder in ("epoch_005", "epoch_010", "final"):
        assert (tmp_path / "callback_out" / folder / "best_model.tflite").exists(), folder


def test_export(tmp_path):
    proc = run_example("export_tflite.py", tmp_path)
    assert "check ok: accuracy" in proc.stdout
    assert "same ops and weights as tuned/best_model.tflite: True" in proc.stdout
    # int8 input and output, or float32 where the float model was handed back (int8 does not pay)
    handed_back = yaml.safe_load((tmp_path / "export_out" / "tuned" / "best_config.yaml").read_text())["handed_back"]
    io = "float32" if handed_back == "float" else "int8"
    assert (tmp_path / "export_out" / f"model_{io}_io.tflite").exists()
    assert f"model_{io}_io.tflite: signature" in proc.stdout and f"input {io} [1, 8, 8, 1]" in proc.stdout
