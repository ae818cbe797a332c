"""Loading a user's saved tf_keras model without running code from the file.

`.keras` files load in Keras' safe mode. Safe mode does not apply to `.h5` files and
SavedModel directories, so their saved config is read first and a model with a Lambda layer
(which carries Python bytecode) is refused unless the user allows it.
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


def _saved_config(path: str):
    """The model config stored in an .h5 file or a SavedModel directory (None if not found)."""
    if os.path.isdir(path):
        meta = os.path.join(path, "keras_metadata.pb")
        if not os.path.exists(meta):
            return None
        with open(meta, "rb") as f:
            raw = f.read()
        # The metadata protobuf holds each object's config as a JSON string; look for code layers.
        return {"class_name": [name for name in _CODE_LAYERS
                               if f'"class_name": "{name}"'.encode() in raw]} if raw else None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
    except OSError:
        return None
    if config is None:
        return None
    return json.loads(config.decode() if isinstance(config, bytes) else config)


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
        raise TunerInputError(f"model file {path} must be a .keras or .h5 file or a SavedModel directory")
    if path.endswith(".keras") and _keras_major_version(path) == "3":
        raise TunerInputError(
            f"model file {path} was saved by Keras 3; tf_tpe_tuner needs a tf_keras (Keras 2) model: "
            "rebuild it with `import tf_keras` (TF_USE_LEGACY_KERAS=1) and save it again")
    if not path.endswith(".keras") and not allow_unsafe:
        config = _saved_config(path)
        if config is not None:
            names = _class_names(config)
            if isinstance(config.get("class_name"), list):
                names |= set(config["class_name"])
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
