"""best_config.yaml, the schema in one place: what a tuning writes (`build`) and what export
reads back and checks (`load_best_config`): the units' choices, the realization that built the
model (backend, calibration), the io options, and the recorded numbers."""
from __future__ import annotations

import copy
import os
from typing import Mapping

import yaml

from . import __version__
from .errors import TunerInputError
from .trial import CHOICES

IO_DEFAULTS = {"input_type": "float32", "output_type": "float32", "batch": "dynamic"}


def build(result) -> dict:
    """best_config.yaml for a `TuningResult`: everything needed to rebuild that exact model."""
    from ._tf import tf
    from .batching import model_fixed_batch

    fixed = model_fixed_batch(result.tflite_model)  # a model that holds its batch inside
    return {
        "units": dict(result.config),
        "int8_units": list(result.int8_units),
        "realization": {**result.realization, "converter": "concrete_function",
                        **({"fp32_guard": "fp16_round_trip"}  # the annotation path's PrecisionBarrier
                           if result.realization.get("backend") == "annotate" else {})},
        "io": {**IO_DEFAULTS, **({"batch": str(fixed)} if fixed is not None else {})},
        "accuracy": result.accuracy,
        "latency_ms": result.latency_ms,
        "met_criterion": result.met_criterion,
        "trial": result.best_trial,
        "handed_back": result.handed_back,
        "versions": {"tf_tpe_tuner": __version__, "tensorflow": tf.__version__},
    }


def load_best_config(source: "str | os.PathLike | Mapping") -> dict:
    """Read and check best_config.yaml (or the dict export.best_config() returns)."""
    if isinstance(source, Mapping):
        config, where = copy.deepcopy(dict(source)), "best_config"
    else:
        path = os.fspath(source)
        where = f"config file {path}"
        if not os.path.isfile(path):
            raise TunerInputError(f"{where} does not exist" if not os.path.exists(path)
                                  else f"{where} is not a file")
        try:
            with open(path, encoding="utf-8") as f:
                config = yaml.safe_load(f)
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TunerInputError(f"{where} is not a readable yaml file: {first}") from None
    if not isinstance(config, Mapping):
        raise TunerInputError(f"{where} must be a mapping (a best_config.yaml written by tf-tpe-tune)")
    units = config.get("units")
    if not isinstance(units, Mapping) or not units:
        raise TunerInputError(f"{where} has no `units` mapping (unit name -> int8 | fp32)")
    bad = {u: d for u, d in units.items() if d not in CHOICES}
    if bad:
        unit, dtype = next(iter(bad.items()))
        raise TunerInputError(f"{where}: units.{unit} must be one of {', '.join(CHOICES)}, got {dtype!r}")
    realization = config.get("realization")
    if not isinstance(realization, Mapping) or not isinstance(realization.get("backend"), str):
        raise TunerInputError(f"{where} has no realization.backend (which realizer built the model)")
    calib = realization.get("calibration")
    if not isinstance(calib, Mapping):
        raise TunerInputError(f"{where} has no realization.calibration (sampling_size, batch_size)")
    for key in ("sampling_size", "batch_size"):
        value = calib.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TunerInputError(
                f"{where}: realization.calibration.{key} must be a whole number >= 1, got {value!r}")
    io = config.get("io") or {}
    if not isinstance(io, Mapping):
        raise TunerInputError(f"{where}: io must be a mapping")
    config["io"] = {**IO_DEFAULTS, **{k: str(v) for k, v in io.items()}}
    return config
