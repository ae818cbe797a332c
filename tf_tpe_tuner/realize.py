"""Realizing a configuration: annotate, quantize_apply, calibrate, convert to TFLite.

`AnnotationRealizer.realize(int8_units)` is the self-contained step a worker holding the
model and the calibration data runs for one trial. How it makes the TFLite model int8
exactly where asked (measured on this stack, see BUILD_NOTES.md):

- Every int8 unit is annotated with tfmot's default 8-bit config. tfmot quantizes a layer's
  input only if its producer's output is quantized, so the producer of every int8 unit (seen
  through pass-through layers such as MaxPool or Flatten) that is not itself int8 gets an
  output-only config.
- The TFLite converter quantizes any op whose inputs and outputs carry ranges, so an fp32
  unit between int8 ones would silently become int8. Such a unit gets a `PrecisionBarrier`
  on its quantized inputs: a float32->float16->float32 round trip, which the converter can
  neither fold nor quantize. It costs two CAST ops and changes a value by at most 2^-11 of
  itself, far below the int8 step of the dequantized tensor it reads.
- Ranges are not learned: the freshly applied model has every range at +-6. Calibration runs
  the quantized model with every fake-quant (and every barrier) replaced by an identity that
  records its input, so each quantizer gets the float model's observed min/max over the
  calibration samples (weights: their own min/max, per channel where tfmot quantizes per
  channel). Those values do not depend on the configuration: the realizer keeps them by a key
  that names the quantized tensor, and records again only when a model has a quantizer it has
  not seen yet (with 2^n configurations, a few recording passes serve every trial).
- Weights are quantized as the converter quantizes them on its own (the denylist backend),
  so that both backends give the same int8 weights: BatchNormalization is folded into the Conv2D /
  DepthwiseConv2D / Dense before it, in the weights only (`fold_batch_norms`: the kernel
  scaled per output channel, the BN left as `x + beta`), and a depthwise kernel is quantized
  per output channel (`ConverterLikeScheme`). tfmot quantizes the kernel it is given, the
  converter folds the BN in afterwards; per output channel that comes to the same, but tfmot
  quantizes a depthwise kernel per depth multiplier (per tensor when it is 1) and a Dense
  kernel per tensor: MobileNetV2's depthwise weight scales came out up to 3x the converter's.
  Not when a `q_func` is given: it may fine-tune the quantized model, and a folded BN trains
  differently; tfmot's own scheme is used then.
- Conversion goes through a concrete function, not `from_keras_model`, which spends most of
  its time saving a SavedModel (27-41 s against 2-3 s on MobileNetV2).
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from ._tf import keras, tf, tfmot
from .data import ArrayData
from .errors import UserCodeError
from .walker import _REGISTRY, FLAT_MODEL_NAME, ModelGraph, SharedTensor, producers

from tensorflow.python.eager import context as _eager_context
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops
from tensorflow_model_optimization.python.core.quantization.keras import quantizers as tfmot_quantizers
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import default_8bit_quantize_registry
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import default_8bit_quantize_scheme
from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer

_Q = tfmot.quantization.keras
REALIZATION_NAME = "annotate"
BARRIER = "fp16_round_trip"


class OutputRangeConfig(_Q.QuantizeConfig):
    """Quantize only a layer's output: gives an int8 unit's float producer an output range."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [tfmot_quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


class PrecisionBarrier(keras.layers.Layer):
    """A float16 round trip that keeps the converter from quantizing the op after it."""

    round_trip = True  # off while calibrating: the recorded values are the float model's

    def call(self, inputs):
        if not PrecisionBarrier.round_trip:
            return inputs
        return tf.cast(tf.cast(inputs, tf.float16), inputs.dtype)


class DepthwiseWeightsQuantizer(tfmot_quantizers.LastValueQuantizer):
    """A depthwise kernel (h, w, in, multiplier) quantized per output channel, as the converter
    quantizes it; tfmot's per-axis quantizer works per multiplier: per tensor when that is 1."""

    def build(self, tensor_shape, name, layer):
        return self._add_range_weights(layer, name, True, (tensor_shape[-2] * tensor_shape[-1],))

    def __call__(self, inputs, training, weights, **kwargs):
        per_output = tf.reshape(inputs, list(inputs.shape[:-2]) + [-1])
        return tf.reshape(super().__call__(per_output, training, weights, **kwargs), inputs.shape)


class _ConverterLikeRegistry(default_8bit_quantize_registry.Default8BitQuantizeRegistry):
    """tfmot's default 8-bit registry, DepthwiseConv2D kernels quantized per output channel."""

    def __init__(self):
        super().__init__()
        self._depthwise = default_8bit_quantize_registry.Default8BitConvQuantizeConfig(
            ["depthwise_kernel"], ["activation"], False)
        self._depthwise.weight_quantizer = DepthwiseWeightsQuantizer(
            num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

    def get_quantize_config(self, layer):
        if type(layer) is keras.layers.DepthwiseConv2D:  # the class tfmot's registry maps, exactly
            return self._depthwise
        return super().get_quantize_config(layer)


class ConverterLikeScheme(default_8bit_quantize_scheme.Default8BitQuantizeScheme):
    """tfmot's default 8-bit scheme with `_ConverterLikeRegistry`."""

    def get_quantize_registry(self):
        return _ConverterLikeRegistry()


CUSTOM_OBJECTS = {"OutputRangeConfig": OutputRangeConfig, "PrecisionBarrier": PrecisionBarrier,
                  "DepthwiseWeightsQuantizer": DepthwiseWeightsQuantizer}


@dataclass
class Realization:
    """A converted model and what really ended up int8 in it."""

    tflite_model: bytes
    int8_units: frozenset[str]
    int8_layers: tuple[str, ...]
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class AnnotationPlan:
    """How one configuration is annotated, by flat-graph layer name."""

    full: set[str]  # tfmot's default 8-bit config: the int8 units, and pass-throughs between them
    output_only: set[str]  # float layers whose output must carry a range: they feed an int8 op
    guarded: dict[str, set[str]]  # float layer -> producers it reads through a PrecisionBarrier


def plan_annotations(graph: ModelGraph, int8_units: Iterable[str]) -> AnnotationPlan:
    model = graph.model
    passthrough = graph.passthrough
    full = {layer for u in int8_units for layer in graph.unit(u).layers}
    output_only: set[str] = set()

    def need_range(producer) -> None:
        name = producer.name
        if isinstance(producer, keras.layers.InputLayer) or name in full or name in output_only:
            return  # tfmot quantizes a model input that feeds an annotated layer
        if name in passthrough:
            full.add(name)
            for p in producers(producer):
                need_range(p)
        else:
            output_only.add(name)

    for unit_name in int8_units:
        for p in producers(model.get_layer(graph.unit(unit_name).head)):
            need_range(p)

    # The converter quantizes a float op whose input carries a range when its output carries
    # one too, or when it is a same-scale op (pooling, concat, ...) that just passes the range
    # on. So every fp32 unit reads ranged inputs through barriers; so does every annotated
    # float layer, since tfmot quantizes whatever an annotated layer reads directly.
    annotated = full | output_only

    def carries_range(layer) -> bool:
        if isinstance(layer, keras.layers.InputLayer):
            return not _range_free_input(layer, annotated)
        if layer.name in annotated:
            return True
        return layer.name in passthrough and any(carries_range(p) for p in producers(layer))

    entries = {u.head for u in graph.units if u.head not in full}
    entries |= {name for name in output_only if name not in graph.unit_of_layer}
    guarded: dict[str, set[str]] = {}
    for name in entries:
        entry = model.get_layer(name)
        if name in output_only:
            sources = {p.name for p in producers(entry) if not _range_free_input(p, annotated)}
        else:
            sources = {p.name for p in producers(entry) if carries_range(p)}
        if sources:
            guarded[name] = sources
    # An output-only tail of an fp32 unit (the ReLU of Add+ReLU) makes tfmot quantize the
    # output of the layer it reads, when tfmot supports that layer: the tail op would turn
    # int8. A barrier inside the unit stops it (BatchNormalization, unsupported, needs none).
    for name in output_only:
        unit_name = graph.unit_of_layer.get(name)
        if unit_name and graph.unit(unit_name).tail == name and graph.unit(unit_name).head != name:
            inner = producers(model.get_layer(name))
            if any(_REGISTRY.supports(p) for p in inner):
                guarded.setdefault(name, set()).update(p.name for p in inner)
    return AnnotationPlan(full, output_only, guarded)


def _range_free_input(layer, readers: set[str]) -> bool:
    """A model input that tfmot will not quantize: none of its direct readers is annotated."""
    if not isinstance(layer, keras.layers.InputLayer):
        return False
    return not any(node.outbound_layer.name in readers for node in layer._outbound_nodes)


_FOLD_INTO = {keras.layers.Conv2D: "kernel", keras.layers.DepthwiseConv2D: "depthwise_kernel",
              keras.layers.Dense: "kernel"}


def fold_batch_norms(model: "keras.Model") -> dict[str, list[np.ndarray]]:
    """{layer name: weights} folding every BatchNormalization into the layer it reads.

    A pair qualifies when a Conv2D / DepthwiseConv2D / Dense (exactly these classes, linear
    activation, channels last, not a model output) feeds nothing but a BatchNormalization on the
    last axis, with a beta. The kernel and bias are scaled per output channel by
    s = gamma / sqrt(moving_variance + epsilon); the BN keeps beta - s * moving_mean and computes
    `x + beta` (gamma 1, mean 0, variance 1 - epsilon). `model` itself is not changed.
    """
    out_layers = {t._keras_history.layer.name for t in model.outputs}  # pylint: disable=protected-access
    folded: dict[str, list[np.ndarray]] = {}
    for bn in model.layers:
        if type(bn) is not keras.layers.BatchNormalization or not bn.center or len(bn._inbound_nodes) != 1:
            continue
        layer = producers(bn)[0]
        kernel_name = _FOLD_INTO.get(type(layer))
        if (kernel_name is None or len(layer._inbound_nodes) != 1
                or len(layer._outbound_nodes) != 1 or layer.name in out_layers
                or layer.activation is not keras.activations.linear
                or getattr(layer, "data_format", "channels_last") != "channels_last"
                or bn.axis != [len(layer.output_shape) - 1]):
            continue
        mean, variance = bn.moving_mean.numpy(), bn.moving_variance.numpy()
        gamma = bn.gamma.numpy() if bn.scale else np.ones_like(mean)
        s = gamma.astype(np.float64) / np.sqrt(variance.astype(np.float64) + bn.epsilon)
        kernel = getattr(layer, kernel_name)
        # a depthwise kernel is (h, w, in, multiplier): output channel in * multiplier + m
        per_out = s.reshape(kernel.shape[-2], -1) if kernel_name == "depthwise_kernel" else s
        new = {id(kernel): kernel.numpy() * per_out}
        if layer.use_bias:
            new[id(layer.bias)] = layer.bias.numpy() * s
        folded[layer.name] = [new[id(v)].astype(v.dtype.as_numpy_dtype) for v in layer.weights]
        dtype = bn.moving_variance.dtype.as_numpy_dtype
        new = {id(bn.beta): bn.beta.numpy() - s * mean, id(bn.moving_mean): np.zeros_like(mean),
               id(bn.moving_variance): np.full_like(variance, dtype(1) - dtype(bn.epsilon))}
        if bn.scale:
            new[id(bn.gamma)] = np.ones_like(gamma)
        folded[bn.name] = [new[id(v)].astype(v.dtype.as_numpy_dtype) for v in bn.weights]
    return folded


def build_annotated_model(graph: ModelGraph, plan: AnnotationPlan,
                          weights: dict[str, list[np.ndarray]] | None = None) -> "keras.Model":
    """Re-run the flat graph with fresh layer clones, annotations and barriers.

    The clones get the flat model's weights, or `weights[name]` where given (`fold_batch_norms`).
    """
    flat = graph.model
    new_inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=n)
                  for t, n in zip(flat.inputs, graph.input_names)]
    tensors = {str(id(kt)): SharedTensor(t) for kt, t in zip(flat.inputs, new_inputs)}
    copies = []
    for depth in sorted(flat._nodes_by_depth, reverse=True):
        for node in flat._nodes_by_depth[depth]:
            if node.is_input:
                continue
            layer = node.layer
            feeds = tensors
            if plan.guarded.get(layer.name):
                feeds = dict(tensors)
                sources = tf.nest.flatten(node.inbound_layers)
                for i, (input_id, source) in enumerate(zip(node.flat_input_ids, sources)):
                    if source.name in plan.guarded[layer.name]:
                        barrier = PrecisionBarrier(name=f"barrier_{i}_{layer.name}")
                        feeds[input_id] = SharedTensor(barrier(tensors[input_id].pop()))
            args, kwargs = node.map_arguments(feeds)
            clone = layer.__class__.from_config(layer.get_config())
            copies.append((clone, layer))
            if layer.name in plan.full:
                clone = _Q.quantize_annotate_layer(clone)
            elif layer.name in plan.output_only:
                clone = _Q.quantize_annotate_layer(clone, OutputRangeConfig())
            outputs = clone(*args, **kwargs)
            for out_id, tensor in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
                tensors[out_id] = SharedTensor(tensor)
    outputs = [tensors[str(id(kt))].pop() for kt in flat.outputs]
    annotated = keras.Model(new_inputs, outputs if len(outputs) > 1 else outputs[0],
                            name=FLAT_MODEL_NAME)
    weights = weights or {}
    keras.backend.batch_set_value(
        [(v, value) for clone, original in copies
         for v, value in zip(clone.weights, weights.get(original.name) or original.get_weights())])
    return annotated


def quantize_apply(annotated: "keras.Model", converter_like: bool = False) -> "keras.Model":
    """tfmot's quantize_apply; `converter_like`: with `ConverterLikeScheme`."""
    with _Q.quantize_scope(CUSTOM_OBJECTS):
        if converter_like:
            return _Q.quantize_apply(annotated, ConverterLikeScheme())
        return _Q.quantize_apply(annotated)


@contextlib.contextmanager
def _recording_fake_quants(ranges: dict):
    """Replace tfmot's fake-quant ops (and the barriers) by identities that record min/max per
    range variable."""
    originals = (quant_ops.MovingAvgQuantize, quant_ops.LastValueQuantize, quant_ops.AllValuesQuantize)

    def record(inputs, min_var, max_var, *args, per_channel=False, symmetric=False, **kwargs):
        axes = list(range(len(inputs.shape) - 1)) if per_channel else None
        low = tf.reduce_min(inputs, axis=axes).numpy()
        high = tf.reduce_max(inputs, axis=axes).numpy()
        key = id(min_var)
        if key in ranges:
            low = np.minimum(low, ranges[key][2])
            high = np.maximum(high, ranges[key][3])
        ranges[key] = (min_var, max_var, low, high, symmetric)
        return inputs

    quant_ops.MovingAvgQuantize = quant_ops.LastValueQuantize = quant_ops.AllValuesQuantize = record
    PrecisionBarrier.round_trip = False
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize, quant_ops.LastValueQuantize, quant_ops.AllValuesQuantize = originals
        PrecisionBarrier.round_trip = True


def _range_variables(qmodel: "keras.Model") -> dict[str, tuple]:
    """{key: (min variable, max variable)} of the quantizers of `qmodel`.

    tfmot names a quantizer's range variables `<layer>/<name>_min` and `_max`; the key is that
    common prefix, the same in every model built from one flat model, and names one tensor (a
    layer's weight, activation or output). Its QuantizeLayer on a model input is named afresh in
    each model: that key names the input instead.
    """
    found = {}
    for layer in qmodel.layers:
        variables = {v.name: v for v in layer.weights}
        for name, low_var in variables.items():
            key = name[:-len("_min:0")]
            high_var = variables.get(key + "_max:0") if name.endswith("_min:0") else None
            if high_var is None:
                continue
            if isinstance(layer, QuantizeLayer):
                key = "quantized input " + ",".join(p.name for p in producers(layer))
            found[key] = (low_var, high_var)
    return found


def calibrate(qmodel: "keras.Model", calib: ArrayData, batch_size: int,
              cache: dict | None = None) -> int:
    """Set every quantizer's range from `calib`; returns how many quantizers were set.

    `cache` ({key: (min, max)}, see `_range_variables`) is filled with the recorded ranges and
    spares the recording pass when it holds all of `qmodel`'s: the recorded values are the float
    model's, whatever the configuration. Give it only models of one flat model (with the same
    weights) and one `calib`.
    """
    variables = _range_variables(qmodel)
    if cache is not None and all(key in cache for key in variables):
        ranges = [(low_var, high_var, *cache[key]) for key, (low_var, high_var) in variables.items()]
    else:
        recorded: dict = {}
        with _recording_fake_quants(recorded):
            for batch in calib.batches(batch_size):
                qmodel(batch if len(batch) > 1 else batch[0], training=False)
        ranges = []
        for low_var, high_var, low, high, symmetric in recorded.values():
            # The same adjustments tfmot's own quantizers make: zero is always representable.
            low, high = np.minimum(low, 0.0), np.maximum(high, 0.0)
            if symmetric:
                bound = np.maximum(-low, high)
                low, high = -bound, bound
            ranges.append((low_var, high_var, low, high))
        key_of = {id(low_var): key for key, (low_var, _) in variables.items()}
        if cache is not None and all(id(low_var) in key_of for low_var, *_ in ranges):
            cache.update({key_of[id(low_var)]: (low, high) for low_var, _, low, high in ranges})
    keras.backend.batch_set_value(
        [(var, np.broadcast_to(value, var.shape).astype(np.float32))
         for low_var, high_var, low, high in ranges for var, value in ((low_var, low), (high_var, high))])
    return len(ranges)


def convert(model: "keras.Model", input_shapes: list[tuple], input_names: list[str],
            quantized: bool) -> bytes:
    """Keras model -> TFLite bytes through a concrete function (float I/O, dynamic batch)."""
    # each input keeps the model's dtype (int32 ids stay int32; float inputs are float32)
    specs = [tf.TensorSpec((None,) + tuple(shape[1:]), t.dtype, name=name)
             for shape, name, t in zip(input_shapes, input_names, model.inputs)]

    def serve(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    concrete = tf.function(serve, input_signature=specs).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.experimental_lower_to_saved_model = False
    if quantized:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tflite = converter.convert()
    # The eager context caches the kernels of every function it ran, and each trial traces
    # new ones: without this a long run grows by ~1.7 MiB a trial. The cache refills on demand.
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


class AnnotationRealizer:
    """Realizes configurations of one model through tfmot annotations.

    Holds the flat model and the calibration samples; `realize(int8_units)` is one trial's
    model-building step, `realize_float()` the baseline.
    """

    name = REALIZATION_NAME

    def __init__(self, graph: ModelGraph, calib: ArrayData, batch_size: int = 32,
                 q_func: Callable | None = None):
        self.graph = graph
        self.calib = calib
        self.batch_size = batch_size
        self.q_func = q_func
        self._unit_layers = [layer for u in graph.units for layer in u.layers]
        # Weights quantized as the converter quantizes them, unless a q_func may fine-tune them.
        self._converter_like = q_func is None
        self._weights = fold_batch_norms(graph.model) if self._converter_like else {}
        self._ranges: dict = {}  # calibrated ranges, kept across trials (see `calibrate`)

    def realize_float(self) -> Realization:
        start = time.perf_counter()
        tflite = convert(self.graph.model, self.graph.input_shapes, self.graph.input_names, False)
        return Realization(tflite, frozenset(), (), {"convert": time.perf_counter() - start})

    def realize(self, int8_units: Iterable[str]) -> Realization:
        int8_units = frozenset(int8_units)
        if not int8_units:
            return self.realize_float()  # tfmot refuses a model with nothing annotated
        seconds = {}
        clock = time.perf_counter()

        def lap(step):
            nonlocal clock
            now = time.perf_counter()
            seconds[step] = seconds.get(step, 0.0) + now - clock
            clock = now

        annotated = build_annotated_model(self.graph, plan_annotations(self.graph, int8_units), self._weights)
        lap("annotate")
        qmodel = quantize_apply(annotated, self._converter_like)
        lap("apply")
        calibrate(qmodel, self.calib, self.batch_size, self._ranges)
        lap("calibrate")
        if self.q_func is not None:
            try:
                self.q_func(qmodel)
            except Exception as err:
                raise UserCodeError(f"q_func raised {type(err).__name__}: {err}") from err
            lap("q_func")
        tflite = convert(qmodel, self.graph.input_shapes, self.graph.input_names, True)
        lap("convert")
        layers = int8_flat_layers(tflite, self._unit_layers)
        units = frozenset(self.graph.unit_of_layer[layer] for layer in layers)
        display = tuple(self.graph.display_names[layer] for layer in self._unit_layers if layer in layers)
        lap("inspect")
        return Realization(tflite, units, display, seconds)
