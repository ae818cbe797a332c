"""tfmot, imported without changing the user's Keras (only the annotation backend needs it).

tfmot's import sets TF_USE_LEGACY_KERAS=1 for the process and then reads `tf.keras`
(tensorflow_model_optimization/python/core/keras/compat.py): `tf.keras` would become Keras 2 for
the user's own code. So `tf.keras` is resolved first, under the user's own setting, and the
variable is put back as it was after the import; tfmot itself then uses tf_keras (it does so
whenever `tf.keras` is Keras 3).
"""
import os

from ._tf import tf

_before = os.environ.get("TF_USE_LEGACY_KERAS")
getattr(tf.keras, "__version__", None)  # resolves TensorFlow's lazy `tf.keras` now
try:
    import tensorflow_model_optimization as tfmot  # noqa: E402
finally:
    if _before is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = _before

__all__ = ["tfmot"]
