"""The default (denylist) backend for a model known only by its float TFLite graph.

Calibrated once, on the float model itself (TensorFlow's `Calibrator`: the converter's public
API can only calibrate while converting a TF model, and a `.tflite` has none); then each
configuration is the calibrated model quantized again by the converter's MLIR quantizer with the
ops of every float unit denied, as `realize_denylist.DenylistRealizer` does for Keras models. A
pass-through op runs int8 only next to an int8 unit. Same-scale ops the quantizer keeps int8
against the denylist are made float in the flatbuffer afterwards (`force_float`). What is int8
is read back from the quantized model by node name.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

from .data import ArrayData
from .errors import TunerInputError
from .realization import Realization
from .realize_denylist import Requantizing, _int8_denylisted, force_float
from .tflite_graph import TfliteGraph, calibrate, int8_nodes, quantize
from .tflite_shipped import keep_interface


class TfliteRealizer(Requantizing):
    """Realizes configurations of a `TfliteGraph`; the `DenylistRealizer` interface."""

    name = "denylist"

    def __init__(self, graph: TfliteGraph, calib: ArrayData, batch_size: int = 32,
                 q_func: Callable | None = None):
        if q_func is not None:
            raise TunerInputError("q_func works on a quantize-applied Keras model; a TFLite model has "
                                  "none (quantization.backend annotate needs a tf_keras model)")
        self.graph = graph
        self.calib = calib
        self.batch_size = batch_size
        self.q_func = None
        self._calibrated: bytes | None = None
        self._known = set(graph.unit_of_layer) | graph.passthrough
        self.setup_seconds: dict[str, float] = {}
        self._unpaid_setup = False

    def __getstate__(self) -> dict:
        self.calibrate()
        return {k: v for k, v in self.__dict__.items() if k != "calib"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, calib=None)

    def calibrate(self) -> bytes:
        if self._calibrated is None:
            start = time.perf_counter()
            self._calibrated = calibrate(self.graph.float_model, self.calib.for_calibration(self.batch_size),
                                         self.graph.input_shapes, self.batch_size)
            self.setup_seconds = {"calibrate": time.perf_counter() - start}
            self._unpaid_setup = True
        return self._calibrated

    def denylist(self, int8_units: Iterable[str]) -> list[str]:
        int8_units = set(int8_units)
        graph = self.graph
        fp32 = [node for u in graph.units if u.name not in int8_units for node in u.layers]
        idle = [node for node, near in graph.passthrough_units.items() if not near & int8_units]
        return sorted(set(fp32) | set(idle))

    def realize_float(self) -> Realization:
        # the model as given (float16 weights and all), not the folded one calibration reads
        return Realization(self.graph.reference_model, frozenset(), (), {})

    def quantize(self, int8_units: Iterable[str]) -> bytes:
        denylist = self.denylist(int8_units)
        tflite = quantize(self.calibrate(), denylist)
        stubborn = _int8_denylisted(tflite, set(denylist))
        tflite = force_float(tflite, stubborn) if stubborn else tflite
        # what users of the model as given rely on: io names and order, metadata, signatures,
        # float16 weights (every trial's model is the one that would be handed back)
        return keep_interface(tflite, self.graph.reference_model)

    def _read_back(self, tflite: bytes) -> tuple[frozenset[str], tuple[str, ...]]:
        nodes = int8_nodes(tflite, self._known)
        units = frozenset(self.graph.unit_of_layer[n] for n in nodes if n in self.graph.unit_of_layer)
        return units, tuple(u for u in self.graph.unit_names if u in units)
