"""The seed's strategy classes, thin layers over the loop (`study`) and a sampler (`samplers`)."""
from ..study import Baseline, TuningResult
from .base import TuneStrategy
from .basic import BasicTuneStrategy
from .random import RandomTuneStrategy
from .tpe import TpeTuneStrategy

STRATEGIES = {cls.sampler_name: cls for cls in (TpeTuneStrategy, RandomTuneStrategy, BasicTuneStrategy)}

__all__ = ["Baseline", "BasicTuneStrategy", "RandomTuneStrategy", "STRATEGIES", "TpeTuneStrategy",
           "TuneStrategy", "TuningResult"]
