"""What a realization is, and the Keras -> TFLite conversion both Keras paths share (no tfmot).

`Realization` is one trial's realized model and what really ended up int8 in it, whichever
backend made it; `convert` and `int8_flat_layers` serve the annotation backend and the report.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ._tf import tf
from .walker import FLAT_MODEL_NAME

from tensorflow.python.eager import context as _eager_context


@dataclass
class Realization:
    """A converted model and what really ended up int8 in it."""

    tflite_model: bytes
    int8_units: frozenset[str]
    int8_layers: tuple[str, ...]
    seconds: dict[str, float] = field(default_factory=dict)



def convert(model, input_shapes: list[tuple], input_names: list[str],
            quantized: bool) -> bytes:
    """A tf_keras model -> TFLite bytes through a concrete function (float I/O, dynamic batch)."""
    # each input keeps the model's dtype (int32 ids stay int32; float inputs are float32)
    specs = [tf.TensorSpec((None,) + tuple(shape[1:]), t.dtype, name=name)
             for shape, name, t in zip(input_shapes, input_names, model.inputs)]

    def serve(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    return convert_function(tf.function(serve, input_signature=specs).get_concrete_function(), model, quantized)


def convert_function(concrete, model, quantized: bool = False) -> bytes:
    """A concrete function of `model` -> TFLite bytes (the one conversion both Keras paths use)."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.experimental_lower_to_saved_model = False
    if quantized:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tflite = converter.convert()
    # The eager context caches the kernels of every function it ran, and each trial traces
    # new ones: without this a long run grows (~1.7 MiB per conversion measured alone; BUILD_NOTES,
    # Memory). The cache refills on demand.
    _eager_context.context().clear_kernel_cache()
    return tflite


_NOT_COMPUTE = {"QUANTIZE", "DEQUANTIZE", "CAST", "DELEGATE"}
_INT_TYPES = (np.int8, np.uint8, np.int16)


def int8_flat_layers(tflite_model: bytes, layer_names: Iterable[str]) -> set[str]:
    """The flat-graph layers whose ops run in an integer type in this TFLite model.

    TFLite names an op's output tensor after the TF ops fused into it, `;`-joined, each
    `<model>/<layer or quant_layer>/<op>`.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    known = set(layer_names)
    interpreter = Interpreter(
        model_content=tflite_model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    found: set[str] = set()
    for op in interpreter._get_ops_details():
        if op["op_name"] in _NOT_COMPUTE or not len(op["outputs"]):
            continue
        out = interpreter._get_tensor_details(op["outputs"][0], 0)
        if out["dtype"] not in _INT_TYPES:
            continue
        for part in out["name"].split(";"):
            pieces = part.split("/")
            if len(pieces) < 3 or pieces[0] != FLAT_MODEL_NAME or "Quantize" in part or "FakeQuant" in part:
                continue  # a range tensor of the layer's quantizer, not one of its ops
            layer = pieces[1]
            if layer.startswith("quant_") and layer[len("quant_"):] in known:
                layer = layer[len("quant_"):]
            if layer in known:
                found.add(layer)
    return found
