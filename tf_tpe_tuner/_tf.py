"""The one place that imports TensorFlow, with Keras 2 (tf_keras) selected first.

tfmot only works with Keras 2, and TensorFlow picks its Keras when it is first
imported, so every module of the package gets `tf`, `keras` and `tfmot` from here.
TensorFlow's (and LiteRT's) native start-up lines are kept off the terminal: see _native.py.
"""
import os

from ._native import greet_litert, set_default_log_level, start_up_silenced

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
set_default_log_level()

with start_up_silenced():
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402
    import tensorflow_model_optimization as tfmot  # noqa: E402

    tf.config.list_physical_devices()  # TensorFlow looks for GPUs now, and says so
    greet_litert()

tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras", "tfmot"]
