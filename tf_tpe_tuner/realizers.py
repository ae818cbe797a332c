"""The one registry of realization backends: how a configuration becomes a TFLite model.

- `denylist` (default): calibrate once in the converter, re-quantize the calibrated TFLite model
  per configuration with a denylist of float ops (`realize_denylist.DenylistRealizer`).
- `annotate`: tfmot quantize annotations on the Keras model, calibrated ranges, conversion per
  configuration (`realize.AnnotationRealizer`); the only one that can call a `q_func`.

Every realizer has `name`, `realize(int8_units) -> Realization`, `realize_float()`, `calib`,
`batch_size` and `q_func`, and pickles to what a worker needs to go on realizing.
"""
from __future__ import annotations

import importlib
from typing import Callable

from .errors import TunerInputError

# backend name -> (module, class); imported on first use (the annotate path loads tfmot)
_BACKENDS = {"denylist": ("realize_denylist", "DenylistRealizer"),
             "annotate": ("realize", "AnnotationRealizer")}
BACKENDS = tuple(_BACKENDS)
AUTO = "auto"


def realizer_class(backend: str):
    """The realizer class registered for `backend`."""
    try:
        module_name, class_name = _BACKENDS[backend]
    except KeyError:
        raise TunerInputError(
            f"realization backend {backend!r} does not exist (backends: {', '.join(BACKENDS)})") from None
    return getattr(importlib.import_module(f".{module_name}", __package__), class_name)


def resolve_backend(backend: str, q_func: Callable | None) -> str:
    """`quantization.backend` as run: `auto` is denylist, or annotate when a q_func is given
    (q_func works on the quantize-applied Keras model, which only annotate builds)."""
    if backend == AUTO:
        return "annotate" if q_func is not None else "denylist"
    if backend not in _BACKENDS:
        raise TunerInputError(
            f"conf: quantization.backend must be one of {AUTO}, {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def make_realizer(backend: str, graph, calib, batch_size: int = 32, q_func: Callable | None = None):
    """A realizer of `graph` for `backend`, on these calibration samples. A model known only by
    its TFLite graph (`tflite_graph.TfliteGraph`) has the denylist backend only."""
    if getattr(graph, "kind", None) == "tflite":
        if backend != "denylist":
            raise TunerInputError(
                f"quantization.backend {backend} needs a tf_keras model (tfmot annotations); a TFLite "
                "model is tuned with the denylist backend (quantization.backend: auto or denylist)")
        from .realize_tflite import TfliteRealizer

        return TfliteRealizer(graph, calib, batch_size, q_func)
    return realizer_class(backend)(graph, calib, batch_size, q_func)
