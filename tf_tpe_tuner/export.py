"""Writing a tuning result to its output directory, each file atomically.

best_model.tflite, best_config.yaml and summary.json are written to a temporary file in the
same directory and renamed over the target, so a reader never sees a half-written file.
(history.jsonl is written trial by trial by the history module.)
"""
from __future__ import annotations

import json
import os
import secrets

import yaml

from .best_config import build as best_config
from .strategy import TuningResult



def write_atomic(path: str, data: bytes | str) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`. The temporary file
    is created with mode 0o666 like any file, so the umask gives the result its mode
    (`tempfile.mkstemp` would make it 0o600: files the user could not share)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    while True:
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # another writer's temporary file: draw another name
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def summary(result: TuningResult) -> dict:
    return {
        "fp32_accuracy": result.baseline.accuracy,
        "fp32_latency_ms": result.baseline.latency_ms,
        "best_accuracy": result.accuracy,
        "best_latency_ms": result.latency_ms,
        "speedup": result.speedup,
        "met_criterion": result.met_criterion,
        "outputs": result.outputs,  # several outputs: each one's metric, criterion, fp32 and best value
        "best_trial": result.best_trial,
        "handed_back": result.handed_back,
        "outcome": result.describe(),
        "fastest_quantized": result.fastest_quantized,
        "latency_noise": result.latency_noise,
        "final_choice": result.final_choice,
        "latency_model": result.latency_model,
        "stop_reason": result.stop_reason,
        "trials": result.trials,
        "failed_trials": sum(1 for r in result.history if r.status != "ok"),
        "quantized_layers": result.int8_layers,
        "fp32_layers": result.fp32_layers,
        "seed": result.seed,
        "strategy": result.strategy,
        "elapsed_s": result.elapsed_s,
    }


def write_result(result: TuningResult, output_dir: str) -> None:
    if result.tflite_model is not None:
        write_atomic(os.path.join(output_dir, "best_model.tflite"), result.tflite_model)
        write_atomic(os.path.join(output_dir, "best_config.yaml"),
                     yaml.safe_dump(best_config(result), sort_keys=False))
    write_atomic(os.path.join(output_dir, "summary.json"), json.dumps(summary(result), indent=2) + "\n")
