"""The Keras graph walker: from a tf_keras model to the per-unit int8/fp32 search space.

tfmot refuses nested models, so the walker first rebuilds the user's model as one flat
Functional graph of fresh layers (weights copied: the user's model is never touched), with
the layers of a nested model named `outer__inner` inside the graph and `outer/inner` to
users. It then groups the layers into units, the things that can be int8 or fp32:

- a compute layer that tfmot's default 8-bit scheme quantizes (Conv, Dense, Add, ...),
  together with the BatchNormalization and ReLU that tfmot and TFLite fuse into it;
- layers with no quantizer of their own (MaxPool, Flatten, Dropout, ...) are *pass-through*:
  they run in the precision of their input and are not searched;
- everything else stays float, with the reason recorded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._tf import keras, tf
from .errors import ModelNotSupportedError, TunerInputError

NEST_SEP = "__"  # separator inside the flat graph; users see "/"
FLAT_MODEL_NAME = "tpe_flat"

_FUSABLE_HEADS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
_RELU_HEADS = _FUSABLE_HEADS + (keras.layers.Add,)


@dataclass(frozen=True)
class Unit:
    """One searchable choice: the layers (flat-graph names) that go int8 or stay fp32 together."""

    name: str
    layers: tuple[str, ...]
    layer_types: tuple[str, ...]

    @property
    def head(self) -> str:
        return self.layers[0]

    @property
    def tail(self) -> str:
        return self.layers[-1]


@dataclass(frozen=True)
class FloatLayer:
    """A layer that is not a unit, and why."""

    name: str
    layer: str  # name in the flat graph
    layer_type: str
    reason: str
    passthrough: bool = False


@dataclass
class ModelGraph:
    """The flat model and its units, in topological order."""

    model: "keras.Model"
    units: list[Unit]
    float_layers: list[FloatLayer]
    display_names: dict[str, str]  # flat-graph layer name -> user-facing name
    input_names: list[str]
    input_shapes: list[tuple]
    output_shapes: list[tuple]
    unit_of_layer: dict[str, str] = field(default_factory=dict)
    output_names: list[str] = field(default_factory=list)  # the user's model's, in output order
    input_dtypes: list[str] = field(default_factory=list)  # numpy dtype names ("float32", "int32")

    def __post_init__(self) -> None:
        self.unit_of_layer = {layer: u.name for u in self.units for layer in u.layers}

    def __getstate__(self) -> dict:
        # The flat model holds only standard layers with unique names: its config and weights
        # rebuild it exactly where the tuning process's object cannot go (a Ray worker).
        state = dict(self.__dict__)
        model = state.pop("model")
        state["_model_json"], state["_model_weights"] = model.to_json(), model.get_weights()
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        model = keras.models.model_from_json(state.pop("_model_json"))
        model.set_weights(state.pop("_model_weights"))
        self.__dict__.update(state, model=model)

    @property
    def passthrough(self) -> set[str]:
        """Flat-graph names of the layers that run in their input's precision."""
        return {f.layer for f in self.float_layers if f.passthrough}

    @property
    def unit_names(self) -> list[str]:
        return [u.name for u in self.units]

    def unit(self, name: str) -> Unit:
        for u in self.units:
            if u.name == name:
                return u
        raise KeyError(name)

    def describe(self) -> str:
        """A table of the units and of the layers left float, for `--dry_run`."""
        lines = [f"{len(self.units)} quantizable units:"]
        for u in self.units:
            lines.append(f"  {u.name:<40} {' + '.join(u.layer_types)}")
        lines.append(f"{len(self.float_layers)} layers that are not units:")
        for f in self.float_layers:
            lines.append(f"  {f.name:<40} {f.layer_type:<24} {f.reason}")
        return "\n".join(lines)


class SharedTensor:
    """A tensor_dict entry that hands out the same tensor to every consumer node."""

    def __init__(self, value):
        self.value = value

    def pop(self):
        return self.value


def _is_graph_model(layer) -> bool:
    return isinstance(layer, keras.Model) and (
        isinstance(layer, keras.Sequential) or getattr(layer, "_is_graph_network", False))


def check_tf_keras_model(model) -> None:
    """Refuse what is not a readable tf_keras Sequential/Functional model, with the reason."""
    if not isinstance(model, keras.Model):
        module = type(model).__module__ or ""
        if module.startswith("keras") or module.startswith("tensorflow.python.keras"):
            raise ModelNotSupportedError(
                "the model is a Keras 3 model; the Keras walker reads tf_keras (Keras 2) models: "
                "tune it with the default backend (quantization.backend: auto or denylist)")
        raise ModelNotSupportedError(
            f"expected a tf_keras Model, got {type(model).__name__}")
    if not _is_graph_model(model):
        raise ModelNotSupportedError(
            f"model {model.name!r} is a subclassed Keras model; tf_keras models are read as Sequential "
            "or Functional models (rebuild it with the Functional API, save it as a SavedModel with a "
            "serving signature, or use Keras 3)")
    if not model.built or not model.inputs:
        raise ModelNotSupportedError(
            f"model {model.name!r} has no defined inputs; build it with an Input layer or input_shape")


def _clone_layer(layer, name: str):
    if isinstance(layer, keras.layers.Lambda):
        raise ModelNotSupportedError(
            f"layer {name.replace(NEST_SEP, '/')!r} is a Lambda layer, which tfmot cannot clone; "
            "replace it with a custom layer class that has get_config()")
    try:
        config = layer.get_config()
        config["name"] = name
        return layer.__class__.from_config(config)
    except Exception as err:  # custom layers without a usable get_config
        raise ModelNotSupportedError(
            f"layer {name.replace(NEST_SEP, '/')!r} ({type(layer).__name__}) cannot be rebuilt "
            f"from its config: {err}") from None


def flatten_model(model) -> tuple["keras.Model", dict[str, str]]:
    """Rebuild `model` as one flat Functional model of cloned layers with copied weights."""
    check_tf_keras_model(model)
    display: dict[str, str] = {}
    clones: dict[int, object] = {}  # id(original layer) -> clone
    weight_copies: list[tuple[object, object]] = []

    def inline(net, inputs: list, prefix: str) -> list:
        tensors = {str(id(kt)): SharedTensor(t) for kt, t in zip(net.inputs, inputs)}
        for depth in sorted(net._nodes_by_depth, reverse=True):
            for node in net._nodes_by_depth[depth]:
                if node.is_input or any(i not in tensors for i in node.flat_input_ids):
                    continue
                args, kwargs = node.map_arguments(tensors)
                layer = node.layer
                if _is_graph_model(layer):
                    inner_inputs = tf.nest.flatten((args, kwargs))
                    if len(inner_inputs) != len(layer.inputs):
                        raise ModelNotSupportedError(
                            f"nested model {layer.name!r} is called with extra arguments the "
                            "walker cannot inline")
                    outputs = inline(layer, inner_inputs, prefix + layer.name + NEST_SEP)
                elif isinstance(layer, keras.Model):
                    raise ModelNotSupportedError(
                        f"nested model {(prefix + layer.name).replace(NEST_SEP, '/')!r} is a "
                        "subclassed model; the walker reads only Sequential and Functional models")
                else:
                    if id(layer) in clones:
                        # one unit per call would need one layer per call: refused, not half-read
                        raise ModelNotSupportedError(
                            f"layer {(prefix + layer.name).replace(NEST_SEP, '/')!r} is called more "
                            "than once (a shared layer); the walker reads one call per layer: give "
                            "each call a layer of its own (the same weights can be copied)")
                    name = prefix + layer.name
                    if name in display:
                        raise ModelNotSupportedError(
                            f"two layers are both named {name.replace(NEST_SEP, '/')!r}")
                    clones[id(layer)] = _clone_layer(layer, name)
                    display[name] = name.replace(NEST_SEP, "/")
                    weight_copies.append((clones[id(layer)], layer))
                    outputs = clones[id(layer)](*args, **kwargs)
                for out_id, tensor in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
                    tensors[out_id] = SharedTensor(tensor)
        return [tensors[str(id(kt))].pop() for kt in net.outputs]

    new_inputs = [keras.Input(batch_shape=kt.shape, dtype=kt.dtype, name=name)
                  for kt, name in zip(model.inputs, model.input_names)]
    outputs = inline(model, new_inputs, "")
    flat = keras.Model(new_inputs, outputs if len(outputs) > 1 else outputs[0], name=FLAT_MODEL_NAME)
    for clone, original in weight_copies:
        clone.set_weights(original.get_weights())
    return flat, display


def _consumers(model) -> dict[str, list]:
    out: dict[str, list] = {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for parent in tf.nest.flatten(node.inbound_layers):
                if layer not in out[parent.name]:
                    out[parent.name].append(layer)
    return out


def unit_edges(graph: ModelGraph) -> list[tuple[str | None, str | None, int]]:
    """Every tensor that crosses a unit boundary, as (producing unit, reading unit, elements per
    sample); None stands for a float end (a model input or output, a layer that is not a unit).
    Where the two ends run in different precisions, the converter puts a QUANTIZE or DEQUANTIZE
    on that tensor. Pass-through layers belong to the unit whose output they carry."""
    model = graph.model
    passthrough = graph.passthrough

    def source(layer) -> str | None:
        if layer.name in graph.unit_of_layer:
            return graph.unit_of_layer[layer.name]
        if layer.name in passthrough and len(producers(layer)) == 1:
            return source(producers(layer)[0])
        return None

    def elements(layer) -> int:
        size = 1
        for dim in layer.output.shape[1:]:
            size *= dim or 1
        return size

    edges = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or layer.name in passthrough:
            continue
        reader = graph.unit_of_layer.get(layer.name)
        for p in producers(layer):
            if reader is not None and p.name in graph.unit_of_layer and graph.unit_of_layer[p.name] == reader:
                continue  # inside one unit
            if reader is not None or source(p) is not None:
                edges.append((source(p), reader, elements(p)))
    for tensor in model.outputs:
        layer = tensor._keras_history.layer  # pylint: disable=protected-access
        if source(layer) is not None:
            edges.append((source(layer), None, elements(layer)))
    return edges


def producers(layer) -> list:
    """The layers whose outputs `layer` reads (in a flat model, each layer has one node)."""
    node = layer._inbound_nodes[0]
    return list(tf.nest.flatten(node.inbound_layers))


def tfmot_registry():
    """tfmot's default 8-bit registry: which layers the annotation backend can quantize.
    Loaded on first use (`_tfmot`): a run on the default backend never imports tfmot."""
    global _REGISTRY
    if _REGISTRY is None:
        from ._tfmot import tfmot  # noqa: F401  (imported with the user's Keras left alone)
        from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
            default_8bit_quantize_registry)

        _REGISTRY = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    return _REGISTRY


_REGISTRY = None


def _has_quantizers(layer) -> bool:
    config = tfmot_registry().get_quantize_config(layer)
    return bool(config.get_weights_and_quantizers(layer)
                or config.get_activations_and_quantizers(layer)
                or config.get_output_quantizers(layer))


def _is_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return layer.negative_slope == 0 and layer.threshold == 0
    if isinstance(layer, keras.layers.Activation):
        return getattr(layer.activation, "__name__", "") in ("relu", "relu6")
    return False


def _float_reason(layer) -> str:
    if isinstance(layer, keras.layers.BatchNormalization):
        return "BatchNormalization not directly after a Conv/Dense is not quantized by tfmot's default scheme"
    return f"{type(layer).__name__} is not supported by tfmot's default 8-bit scheme"


def walk(model) -> ModelGraph:
    """List the quantizable units of a tf_keras model, and the reason for every other layer."""
    flat, display = flatten_model(model)
    consumers = _consumers(flat)
    taken: set[str] = set()
    units: list[Unit] = []
    float_layers: list[FloatLayer] = []

    def single_next(layer, kind):
        nxt = consumers[layer.name]
        if len(nxt) == 1 and isinstance(nxt[0], kind) and len(producers(nxt[0])) == 1:
            return nxt[0]
        return None

    for layer in flat.layers:
        if isinstance(layer, keras.layers.InputLayer) or layer.name in taken:
            continue
        kind = type(layer).__name__
        if tfmot_registry().supports(layer) and _has_quantizers(layer):
            group = [layer]
            if isinstance(layer, _FUSABLE_HEADS):
                bn = single_next(layer, keras.layers.BatchNormalization)
                if bn is not None:
                    group.append(bn)
            if isinstance(layer, _RELU_HEADS):
                act = single_next(group[-1], (keras.layers.ReLU, keras.layers.Activation))
                if act is not None and _is_relu(act):
                    group.append(act)
            taken.update(g.name for g in group)
            units.append(Unit(display[layer.name], tuple(g.name for g in group),
                              tuple(type(g).__name__ for g in group)))
        elif tfmot_registry().supports(layer):
            float_layers.append(FloatLayer(display[layer.name], layer.name, kind,
                                           "no quantizer of its own: runs in its input's precision",
                                           passthrough=True))
        else:
            float_layers.append(FloatLayer(display[layer.name], layer.name, kind, _float_reason(layer)))
    if not units:
        raise ModelNotSupportedError(
            f"model {model.name!r} has no layer that tfmot's default 8-bit scheme can quantize "
            "(Conv, Dense, Add, pooling, ...): there is nothing to tune")
    return ModelGraph(
        model=flat,
        units=units,
        float_layers=float_layers,
        display_names=display,
        input_names=[t.name.split(":")[0] for t in flat.inputs],
        input_shapes=[tuple(t.shape) for t in flat.inputs],
        output_shapes=[tuple(t.shape) for t in flat.outputs],
        output_names=list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(flat.outputs))]),
        input_dtypes=[tf.as_dtype(t.dtype).name for t in flat.inputs],
    )


def apply_op_wise(graph: ModelGraph, op_wise: dict[str, str]) -> dict[str, str]:
    """Resolve `quantization.op_wise` patterns (re.fullmatch on unit names) to {unit: dtype}."""
    fixed: dict[str, str] = {}
    for pattern, dtype in op_wise.items():
        regex = re.compile(pattern)
        hits = [u for u in graph.unit_names if u == pattern or regex.fullmatch(u)]
        if not hits:
            known = ", ".join(graph.unit_names)
            raise TunerInputError(
                f"conf: quantization.op_wise.{pattern} matches no unit of the model (units: {known})")
        for unit in hits:
            if fixed.get(unit, dtype) != dtype:
                raise TunerInputError(
                    f"conf: quantization.op_wise gives unit {unit} both int8 and fp32")
            fixed[unit] = dtype
    return fixed
