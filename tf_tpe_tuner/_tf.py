"""The one place that imports TensorFlow (and tf_keras, the Keras 2 the walker and tfmot read).

The user's Keras stays theirs: nothing here sets TF_USE_LEGACY_KERAS, so `tf.keras` and
`import keras` give what the user's environment selects (Keras 3 by default); the package's own
Keras 2 code imports `tf_keras` by name. tfmot, which selects Keras 2 for the whole process when
imported, is loaded only by the annotation backend (`_tfmot.py`).
TensorFlow's (and LiteRT's) native start-up lines are kept off the terminal: see _native.py.
"""
from ._native import greet_litert, set_default_log_level, start_up_silenced

set_default_log_level()

with start_up_silenced():
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

    tf.config.list_physical_devices()  # TensorFlow looks for GPUs now, and says so
    greet_litert()

tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras"]
