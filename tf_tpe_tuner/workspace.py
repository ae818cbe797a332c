"""The output directory: which files a run writes there, and whether results are there already.

No TensorFlow here, so that the command line can refuse an occupied directory in a fraction of
a second instead of after TensorFlow has loaded.
"""
from __future__ import annotations

import os

from .errors import TunerInputError

LATENCY_MODEL_FILE = "latency_model.json"  # the latency model's readings, which a resume refits from
RESULT_FILES = ("best_model.tflite", "best_config.yaml", "summary.json", "history.jsonl", LATENCY_MODEL_FILE)
REPORT_FILES = ("report.md", "report.json", "pareto.png")


def existing_results(output_dir: str, overwrite: bool) -> list[str]:
    """Result files already in output_dir; refused unless `overwrite`."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise TunerInputError(f"output directory {output_dir} is a file")
    existing = [os.path.join(output_dir, f) for f in RESULT_FILES + REPORT_FILES
                if os.path.exists(os.path.join(output_dir, f))]
    if existing and not overwrite:
        names = ", ".join(os.path.basename(p) for p in existing)
        raise TunerInputError(
            f"output directory {output_dir} already holds results ({names}); pass --overwrite "
            "(overwrite=True) to replace them, or choose another directory")
    return existing


def check_resume(resume_dir: str, overwrite: bool) -> None:
    """A run can continue from `resume_dir` (its history.jsonl), and is not also asked to
    overwrite it."""
    if overwrite:
        raise TunerInputError("resume and overwrite exclude each other: resuming keeps the results")
    if not os.path.exists(os.path.join(resume_dir, "history.jsonl")):
        raise TunerInputError(f"nothing to resume in {resume_dir}: it has no history.jsonl")
