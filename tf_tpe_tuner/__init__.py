"""tf_tpe_tuner: per-op int8/float search for Keras, SavedModel and TFLite models, exported as TFLite.

    import tf_tpe_tuner
    result = tf_tpe_tuner.tune(model, "conf.yaml", calib_x, eval_data=(x, y), output_dir="out")

Importing the package changes nothing about which Keras your program gets (it sets no
TF_USE_LEGACY_KERAS) and does not import TensorFlow itself: the names below load on first use,
so the command line can refuse a bad flag before paying for TensorFlow.
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "tune": ".api",
    "Conf": ".conf",
    "ModelNotSupportedError": ".errors",
    "TunerInputError": ".errors",
    "TuningInterrupted": ".errors",
    "TFLiteModel": ".evaluate",
    "TpeTuningCallback": ".callback",
    "TpeTuneStrategy": ".strategy",
    "TuneStrategy": ".strategy",
    "TuningResult": ".strategy",
    "walk": ".walker",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tf_tpe_tuner' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
