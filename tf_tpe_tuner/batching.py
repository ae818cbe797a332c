"""Models whose inputs fix the batch size (pretrained models as shipped: a shape of [1, ...]
and no dynamic batch in the shape signature). Such a model can hold its batch inside the graph
(slice ends, reshape targets): resized to another batch it runs without any error and computes
wrong outputs. Calibration, evaluation and latency feed them batches of exactly their size."""
from __future__ import annotations

from typing import Iterator

import numpy as np


def fixed_batch(input_shapes: list[tuple]) -> int | None:
    """The batch size the model's inputs fix (their first dimension is not dynamic), or None."""
    sizes = {shape[0] for shape in input_shapes if len(shape)}
    return None if None in sizes or not sizes else int(min(sizes))


def fixed_batches(arrays: list[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Batches of exactly `size` samples; a short last one is padded by repeating its last
    sample (callers drop the padded rows of the outputs)."""
    n = int(arrays[0].shape[0])
    for start in range(0, n, size):
        part = [a[start:start + size] for a in arrays]
        short = size - int(part[0].shape[0])
        if short:
            part = [np.concatenate([p, np.repeat(p[-1:], short, axis=0)]) for p in part]
        yield part


def model_fixed_batch(tflite: bytes) -> int | None:
    """The batch size a TFLite model's inputs fix, or None when it is dynamic."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=tflite).get_input_details()
    return fixed_batch([tuple(None if d < 0 else int(d) for d in detail["shape_signature"])
                        for detail in details])
