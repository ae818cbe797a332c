"""Loading a user's saved tf_keras model without running code from the file.

The saved Keras config of every format that can hold Python code (`.keras`, `.h5`, a Keras
SavedModel) is parsed first: a model with a Lambda layer (which carries Python bytecode), or one
whose config cannot be read, is refused unless the user allows it; `.keras` files then load in
Keras' safe mode as well.
"""
from __future__ import annotations

import json
import os
import zipfile

from .errors import TunerInputError

_CODE_LAYERS = ("Lambda",)


def _class_names(config) -> set[str]:
    """Every `class_name` in a Keras config, nested models included."""
    found: set[str] = set()
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str):
                found.add(node["class_name"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _saved_class_names(path: str) -> set[str] | None:
    """Every `class_name` in the Keras config stored in a `.keras` file (config.json), an `.h5`
    file (model_config) or a Keras SavedModel directory (keras_metadata.pb, one JSON config per
    object); None when it cannot be read."""
    try:
        if os.path.isdir(path):
            from tf_keras.protobuf import saved_metadata_pb2

            with open(os.path.join(path, "keras_metadata.pb"), "rb") as f:
                metadata = saved_metadata_pb2.SavedMetadata.FromString(f.read())
            names: set[str] = set()
            for node in metadata.nodes:
                names |= _class_names(json.loads(node.metadata))
            return names or None
        if path.endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                return _class_names(json.loads(archive.read("config.json")))
        import h5py

        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
        if config is None:
            return None
        return _class_names(json.loads(config.decode() if isinstance(config, bytes) else config))
    except Exception:  # noqa: BLE001  unreadable: the caller fails closed
        return None


def _keras_major_version(path: str) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            meta = json.loads(archive.read("metadata.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        return None
    return str(meta.get("keras_version", "")).split(".")[0] or None


def load_keras_model(path: str, allow_unsafe: bool = False):
    """Load a `.keras`, `.h5` or SavedModel directory saved by tf_keras."""
    from ._tf import keras

    if not os.path.exists(path):
        raise TunerInputError(f"model file {path} does not exist")
    is_dir = os.path.isdir(path)
    if not is_dir and not path.endswith((".keras", ".h5", ".hdf5")):
        raise TunerInputError(f"model file {path} must be a .keras, .h5 or .tflite file or a SavedModel "
                              "directory")
    if not allow_unsafe:  # fail closed: code layers found, or a config that cannot be checked
        names = _saved_class_names(path)
        if names is None:
            raise TunerInputError(
                f"model file {path}: its Keras config cannot be read, so it cannot be checked for "
                "layers that run code stored in the file; pass --allow_unsafe_model if you trust it")
        risky = sorted(names & set(_CODE_LAYERS))
        if risky:
            raise TunerInputError(
                f"model file {path} contains a {risky[0]} layer, which runs code stored in the "
                "file; pass --allow_unsafe_model if you trust it")
    try:
        if path.endswith(".keras"):
            return keras.models.load_model(path, compile=False, safe_mode=not allow_unsafe)
        return keras.models.load_model(path, compile=False)
    except Exception as err:
        text = str(err).strip()
        first = text.splitlines()[0] if text else type(err).__name__
        raise TunerInputError(f"model file {path} could not be loaded as a tf_keras model: {first}") from None


def load_model(path: str, allow_unsafe: bool = False, signature: str | None = None):
    """What `--model` names: a float `.tflite` file (its bytes), a plain TensorFlow SavedModel
    directory (a `frontends.SavedModelSource`: neither carries Python code, so neither is
    checked), a `.keras` file saved by Keras 3 (loaded by Keras 3, after the same check as
    tf_keras files), else a tf_keras model (`load_keras_model`)."""
    from .frontends import DEFAULT_SIGNATURE, SavedModelSource

    if not os.path.exists(path):
        raise TunerInputError(f"model file {path} does not exist")
    if path.endswith(".tflite"):
        from .tflite_graph import load_tflite

        return load_tflite(path)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "keras_metadata.pb")):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise TunerInputError(f"model directory {path} is not a SavedModel (no saved_model.pb)")
        return SavedModelSource(path, signature or DEFAULT_SIGNATURE)
    if path.endswith(".keras") and _keras_major_version(path) == "3":
        return _load_keras3(path, allow_unsafe)
    return load_keras_model(path, allow_unsafe=allow_unsafe)


def _load_keras3(path: str, allow_unsafe: bool):
    names = _saved_class_names(path)
    if not allow_unsafe and names is None:
        raise TunerInputError(
            f"model file {path}: its Keras config cannot be read, so it cannot be checked for "
            "layers that run code stored in the file; pass --allow_unsafe_model if you trust it")
    if not allow_unsafe and names & set(_CODE_LAYERS):
        raise TunerInputError(f"model file {path} contains a Lambda layer, which runs code stored in the "
                              "file; pass --allow_unsafe_model if you trust it")
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not allow_unsafe)
    except Exception as err:  # noqa: BLE001
        text = str(err).strip()
        raise TunerInputError(f"model file {path} could not be loaded as a Keras 3 model: "
                              f"{text.splitlines()[0] if text else type(err).__name__}") from None
