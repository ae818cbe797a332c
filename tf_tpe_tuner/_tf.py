"""The one place that imports TensorFlow, with Keras 2 (tf_keras) selected first.

tfmot only works with Keras 2, and TensorFlow picks its Keras when it is first
imported, so every module of the package gets `tf`, `keras` and `tfmot` from here.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras", "tfmot"]
