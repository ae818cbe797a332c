"""No TensorFlow noise: tf-tpe-tune and tf-tpe-export print none of TensorFlow's (or LiteRT's)
native log lines in a user's environment, and a TF_CPP_MIN_LOG_LEVEL the user sets still wins.

The children get a clean environment: this test process has TF_CPP_MIN_LOG_LEVEL set (the
package sets it on import), and with it inherited a test would not see what a user sees.
(The examples are checked the same way in test_examples.py.)
"""
import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import FAST_PERF

pytestmark = pytest.mark.slow  # three TensorFlow imports and a short tuning

# A user's environment: without the TF_CPP_MIN_LOG_LEVEL this process got from the package (and
# its marker), so that any start-up line the commands let through shows in the children's stderr.
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("TF_CPP_MIN_LOG_LEVEL", "_TF_TPE_TUNER_DEFAULT_LOG_LEVEL")}

# TensorFlow's absl-style lines (I0000 00:00:... port.cc:153] oneDNN ...), its pre-absl warning,
# the CPU-feature notice and LiteRT's delegate line.
NATIVE_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:[\d.]+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl"
                         r"|INFO: Created TensorFlow Lite XNNPACK delegate|To enable the following instructions)")


def run(args, cwd, **env):
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=cwd, env={**CLEAN_ENV, **env},
                          capture_output=True, text=True, timeout=900)


def fast_conf_file(path):
    path.write_text(yaml.safe_dump({"evaluation": {"performance": dict(FAST_PERF)}}))
    return path


def test_tune_and_export_print_no_native_lines(cnn_files, tmp_path):
    files = {name: cnn_files / name for name in ("model.keras", "calib.npz", "eval.npz")}
    tuned = run(["tf_tpe_tuner", f"--model={files['model.keras']}", f"--conf={fast_conf_file(tmp_path / 'c.yaml')}",
                 f"--calib_data={files['calib.npz']}", f"--eval_data={files['eval.npz']}",
                 "--output_dir=out", "--max_trials=1"], tmp_path)
    assert tuned.returncode == 0, tuned.stderr
    assert tuned.stderr == "", tuned.stderr
    exported = run(["tf_tpe_tuner.export_cli", f"--model={files['model.keras']}",
                    "--config=out/best_config.yaml", f"--calib_data={files['calib.npz']}",
                    "--output=model.tflite", f"--eval_data={files['eval.npz']}"], tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr == "", exported.stderr
    assert "check ok" in exported.stdout


def test_the_users_log_level_wins(cnn_files, tmp_path):
    """TF_CPP_MIN_LOG_LEVEL=0 asks for everything: TensorFlow's start-up lines are not hidden."""
    shown = run(["tf_tpe_tuner", f"--model={cnn_files / 'model.keras'}", "--dry_run"], tmp_path,
                TF_CPP_MIN_LOG_LEVEL="0")
    assert shown.returncode == 0, shown.stderr
    assert [line for line in shown.stderr.splitlines() if NATIVE_LINE.match(line)], shown.stderr
