"""Data that is probably wrong, but not certainly: warned about in one line, never refused.

Each warning is a `TunerInputWarning` (a `UserWarning`), so that a script can silence it, or
turn it into an error, with the `warnings` module; the command line prints it on one line
(`tf-tpe-tune: warning: ...`). Data that cannot be right is refused instead (`TunerInputError`,
in `data.py` and `Evaluator.check_labels`).

No TensorFlow here: `conf.py` and the command line use this module before it is imported.
"""
from __future__ import annotations

import hashlib
import re
import warnings
from typing import Sequence

import numpy as np

RANGE_FACTOR = 10.0  # calibration and evaluation inputs whose ranges differ more: warned
CHANCE_MARGIN = 0.02  # a topk baseline at most this much above chance: warned
MAX_RELATIVE = 0.5  # a relative criterion above this: warned


class TunerInputWarning(UserWarning):
    """Input that is allowed but probably not what the user meant."""


def warn(message: str) -> None:
    warnings.warn(message, TunerInputWarning, stacklevel=3)


def warn_if_relative_criterion_loose(relative: float | None) -> None:
    """A relative criterion is a fraction of the float accuracy: 0.6 allows losing 60 % of it."""
    if relative is not None and relative > MAX_RELATIVE:
        warn(f"conf: tuning.accuracy_criterion.relative is {relative:g}, so the tuned model may "
             f"lose up to {100 * relative:g} % of the float model's accuracy (0.01 is 1 %)")


def _quantization_range(arr: np.ndarray) -> tuple[float, float]:
    # the range an int8 calibration records: it always includes 0
    return min(float(arr.min()), 0.0), max(float(arr.max()), 0.0)


def warn_if_ranges_differ(calib, evaluation) -> None:
    """Calibration and evaluation inputs (`ArrayData`) whose value ranges differ by more than
    RANGE_FACTOR (0..255 against 0..1): the int8 ranges are calibrated on the one and used on
    the other, so the int8 models score badly for no fault of theirs."""
    if calib is None or evaluation is None:
        return
    for i, (c, e) in enumerate(zip(calib.x, evaluation.x)):
        (c_lo, c_hi), (e_lo, e_hi) = _quantization_range(c), _quantization_range(e)
        c_span, e_span = c_hi - c_lo, e_hi - e_lo
        small, large = sorted((c_span, e_span))
        if large == 0 or large <= RANGE_FACTOR * small:
            continue
        name = f" (input {i})" if len(calib.x) > 1 else ""
        apart = f" ({large / small:.0f}x apart)" if small else ""
        warn(f"{calib.source or 'calibration data'}{name}: the calibration inputs range over "
             f"{c.min():.4g}..{c.max():.4g}, the evaluation inputs ({evaluation.source or 'evaluation data'}) "
             f"over {e.min():.4g}..{e.max():.4g}{apart}: were both preprocessed alike?")


def chance_accuracy(metric_name: str, output_shapes: Sequence[tuple]) -> float | None:
    """What guessing scores with a topk metric ("top1", "top5") on the model's first output:
    k / number of classes (2 for a single sigmoid output); None for other metrics."""
    match = re.fullmatch(r"top(\d+)", metric_name)
    if not match:
        return None
    out = output_shapes[0]
    width = out[-1] if len(out) > 1 and out[-1] else 1
    classes = width if width > 1 else 2
    return min(1.0, int(match.group(1)) / classes)


def warn_if_baseline_at_chance(metric_name: str, accuracy: float, output_shapes: Sequence[tuple],
                               where: str = "evaluation data") -> None:
    """A float model that scores no better than guessing (chance + CHANCE_MARGIN) on the
    evaluation data: the labels probably do not match the outputs (shuffled, another class
    order), and every trial would "meet" a criterion relative to that."""
    chance = chance_accuracy(metric_name, output_shapes)
    if chance is None or chance >= 1 or accuracy > chance + CHANCE_MARGIN:
        return
    warn(f"{where}: the float model's {metric_name} accuracy is {accuracy:.4f}, no better than "
         f"chance ({chance:.4f}): do the labels (y) match the model's outputs?")


def _row_digests(data) -> list[bytes]:
    """One digest per sample over all its input arrays (memory stays small for big inputs)."""
    arrays = [np.ascontiguousarray(a, dtype=np.float32).reshape(len(a), -1) for a in data.x]
    out = []
    for i in range(len(data)):
        digest = hashlib.blake2b(digest_size=16)
        for a in arrays:
            digest.update(a[i].tobytes())
        out.append(digest.digest())
    return out


def warn_if_test_overlaps(test, evaluation) -> None:
    """Test data (`ArrayData`) that shares samples with the evaluation data: the report calls
    its numbers held out, which they then are not."""
    if test is None or evaluation is None:
        return
    seen = set(_row_digests(evaluation))
    shared = sum(1 for d in _row_digests(test) if d in seen)
    if shared:
        warn(f"{test.source or 'test data'} shares {shared} of its {len(test)} samples with the "
             f"evaluation data ({evaluation.source or 'evaluation data'}): its numbers in the report "
             "are not from data kept apart")
