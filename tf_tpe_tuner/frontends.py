"""Model front-ends: what a user hands over, as the float TFLite model the default backend tunes.

- a tf_keras model (object, `.keras`, `.h5`, Keras SavedModel): rebuilt flat by the walker
  (`walker.flatten_model`, nested models inlined) and converted through a concrete function;
  the annotation backend reads the Keras model itself instead (`walker.walk`);
- a Keras 3 model on the TensorFlow backend (object, or a `.keras` file saved by Keras 3):
  converted through a concrete function of `model(x, training=False)`; a Functional or
  Sequential graph (nested ones too) is run node by node, each call in a name scope of its own;
- a TensorFlow SavedModel that is not a Keras model (a `tf.Module` with a serving signature):
  converted from its `serving_default` signature, or the one named;
- a float `.tflite` file or its bytes: as it is.
All are then known by their TFLite graph (`tflite_graph.read_graph`); where there was a Keras
graph, the scopes name the units after its layers (`layer_names.LayerScopes`).
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass

from .errors import TunerInputError
from .layer_names import LayerScopes

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class SavedModelSource:
    """A plain TensorFlow SavedModel directory and the signature to tune."""

    path: str
    signature: str = DEFAULT_SIGNATURE


@dataclass(frozen=True)
class FloatModel:
    """A float TFLite model, with the layer scopes of the Keras graph it came from (if any)."""

    tflite: bytes
    scopes: LayerScopes | None = None


def is_keras3(model) -> bool:
    """A Keras 3 object (subclasses too: their own module is the user's)."""
    return any(cls.__module__.split(".")[0] == "keras" for cls in type(model).__mro__)


def _graph_of(model):
    """The Functional graph of a Keras 3 Functional or Sequential model, else None (subclassed)."""
    from keras.src.models.functional import Functional

    graph = getattr(model, "_functional", None) if not isinstance(model, Functional) else model
    return graph if isinstance(graph, Functional) else None


def _scoped_call(model, scopes: dict[str, str], tf):
    """`model(x, training=False)` run node by node through its graph (nested graphs too), each
    layer call inside a name scope `tpe<k>` of its own, recorded in `scopes` (k -> layer path).
    Keras' own `_run_through_graph` runs the nodes, so the outputs are the model's."""
    def run(net, inputs, prefix: str):
        def wrap(operation):
            def call(*args, **kwargs):
                if _graph_of(operation) is not None:
                    return run(operation, args[0] if len(args) == 1 else list(args), f"{prefix}{operation.name}/")
                if "training" in inspect.signature(operation.call).parameters:
                    kwargs["training"] = False
                scope = f"tpe{len(scopes)}"
                scopes[scope] = prefix + operation.name
                with tf.name_scope(scope):
                    return operation(*args, **kwargs)
            return call
        outputs = _graph_of(net)._run_through_graph(inputs, operation_fn=wrap)  # pylint: disable=protected-access
        return outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs
    return lambda inputs: run(model, inputs, "")


def keras3_to_tflite(model) -> FloatModel:
    """A Keras 3 model as a float TFLite model (dynamic batch), with its layer scopes when it
    has a graph."""
    import keras

    from ._tf import tf

    if keras.backend.backend() != "tensorflow":
        raise TunerInputError(f"the Keras 3 model runs on the {keras.backend.backend()} backend; "
                              "tf_tpe_tuner converts Keras 3 models on the TensorFlow backend only "
                              "(KERAS_BACKEND=tensorflow)")
    inputs = getattr(model, "inputs", None)
    if inputs:
        shapes = [(tuple(t.shape[1:]), t.name.split(":")[0], t.dtype) for t in inputs]
    else:  # a subclassed model: the shapes it was built (called) with
        built = list((getattr(model, "_build_shapes_dict", None) or {}).values())
        if len(built) != 1:
            raise TunerInputError(f"Keras 3 model {model.name!r} has not been built on one input: call it "
                                  "once on a batch so that its input shape is known")
        shapes = [(tuple(built[0][1:]), "input", "float32")]
    # each input keeps its dtype: int32 ids stay int32
    specs = [tf.TensorSpec((None,) + shape, tf.as_dtype(dtype), name=name) for shape, name, dtype in shapes]
    scopes: dict[str, str] = {}
    graph = _graph_of(model)
    forward = _scoped_call(model, scopes, tf) if graph is not None else (lambda x: model(x, training=False))

    def serve(*xs):
        return forward(list(xs) if len(xs) > 1 else xs[0])

    from .realization import convert_function

    tflite = convert_function(tf.function(serve, input_signature=specs).get_concrete_function(), model)
    if graph is None:
        return FloatModel(tflite)
    outputs = [t._keras_history.operation.name for t in graph.outputs]  # pylint: disable=protected-access
    return FloatModel(tflite, LayerScopes(scopes, tuple(outputs)))


def tf_keras_to_tflite(model) -> FloatModel:
    """A tf_keras model as a float TFLite model: the walker's flat model (nested models inlined,
    each layer named after its path), converted through a concrete function."""
    from .realization import convert
    from .walker import FLAT_MODEL_NAME, flatten_model

    flat, display = flatten_model(model)
    tflite = convert(flat, [tuple(t.shape) for t in flat.inputs], list(flat.input_names), False)
    scopes = {f"{FLAT_MODEL_NAME}/{name}": shown for name, shown in display.items()}
    outputs = [display.get(t._keras_history.layer.name, t._keras_history.layer.name)  # pylint: disable=protected-access
               for t in flat.outputs]
    return FloatModel(tflite, LayerScopes(scopes, tuple(outputs), depth=2))


def saved_model_to_tflite(source: SavedModelSource) -> bytes:
    """The float TFLite model of one signature of a plain SavedModel."""
    from ._tf import tf

    try:
        loaded = tf.saved_model.load(source.path)
    except Exception as err:  # noqa: BLE001  not a readable SavedModel
        raise TunerInputError(f"model directory {source.path} is not a readable SavedModel: "
                              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    signatures = sorted(getattr(loaded, "signatures", {}) or {})
    if not signatures:
        raise TunerInputError(f"SavedModel {source.path} has no signature to tune (save it with "
                              "signatures={'serving_default': ...})")
    if source.signature not in signatures:
        raise TunerInputError(f"SavedModel {source.path} has no signature {source.signature!r} "
                              f"(signatures: {', '.join(signatures)})")
    converter = tf.lite.TFLiteConverter.from_saved_model(source.path, signature_keys=[source.signature])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


def float_tflite(model) -> FloatModel:
    """The float TFLite model of any model kind (see the module docstring). Paths are loaded
    first (`model_io.load_model`: a `.tflite` file comes back as its bytes)."""
    if isinstance(model, (bytes, bytearray)):
        return FloatModel(bytes(model))
    if isinstance(model, SavedModelSource):
        return FloatModel(saved_model_to_tflite(model))
    if is_keras3(model):
        return keras3_to_tflite(model)
    return tf_keras_to_tflite(model)
