"""Model front-ends: what a user hands over, as the float TFLite model the default backend tunes.

- a tf_keras model (object, `.keras`, `.h5`, Keras SavedModel): read by the Keras walker
  (`walker.walk`), which both backends use; not handled here;
- a Keras 3 model on the TensorFlow backend (object, or a `.keras` file saved by Keras 3):
  converted through a concrete function of `model(x, training=False)`, as the walker's models are;
- a TensorFlow SavedModel that is not a Keras model (a `tf.Module` with a serving signature):
  converted from its `serving_default` signature, or the one named;
- a float `.tflite` file or its bytes: as it is.
The last three are then known by their TFLite graph alone (`tflite_graph.read_graph`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

from .errors import TunerInputError

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class SavedModelSource:
    """A plain TensorFlow SavedModel directory and the signature to tune."""

    path: str
    signature: str = DEFAULT_SIGNATURE


def is_keras3(model) -> bool:
    """A Keras 3 object (subclasses too: their own module is the user's)."""
    return any(cls.__module__.split(".")[0] == "keras" for cls in type(model).__mro__)


def keras3_to_tflite(model) -> bytes:
    """A Keras 3 model as a float TFLite model (dynamic batch)."""
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

    def serve(*xs):
        return model(list(xs) if len(xs) > 1 else xs[0], training=False)

    concrete = tf.function(serve, input_signature=specs).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.experimental_lower_to_saved_model = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


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


def float_tflite(model) -> bytes | None:
    """The float TFLite model of a model the walker does not read (see the module docstring),
    or None for a tf_keras model. Paths are loaded first (`model_io.load_model`: a `.tflite`
    file comes back as its bytes)."""
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, SavedModelSource):
        return saved_model_to_tflite(model)
    if is_keras3(model):
        return keras3_to_tflite(model)
    return None
