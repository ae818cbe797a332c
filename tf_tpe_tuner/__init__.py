"""tf_tpe_tuner: per-layer int8/float search for tf_keras models, exported as TFLite.

    import tf_tpe_tuner
    result = tf_tpe_tuner.tune(model, "conf.yaml", calib_x, eval_data=(x, y), output_dir="out")
"""
__version__ = "0.1.0"

from . import _tf  # noqa: F401  (selects Keras 2 before anything imports TensorFlow)
from .api import tune
from .conf import Conf
from .errors import ModelNotSupportedError, TunerInputError, TuningInterrupted
from .evaluate import TFLiteModel
from .strategy import TpeTuneStrategy, TuneStrategy, TuningResult
from .walker import walk

__all__ = ["Conf", "ModelNotSupportedError", "TFLiteModel", "TpeTuneStrategy", "TuneStrategy",
           "TunerInputError", "TuningInterrupted", "TuningResult", "tune", "walk"]
