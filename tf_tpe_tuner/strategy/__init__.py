"""Search strategies: one class per algorithm behind the `TuneStrategy` interface."""
from .base import Baseline, TuneStrategy, TuningResult
from .basic import BasicTuneStrategy
from .random import RandomTuneStrategy
from .tpe import TpeTuneStrategy

STRATEGIES = {cls.name: cls for cls in (TpeTuneStrategy, RandomTuneStrategy, BasicTuneStrategy)}

__all__ = ["Baseline", "BasicTuneStrategy", "RandomTuneStrategy", "STRATEGIES", "TpeTuneStrategy",
           "TuneStrategy", "TuningResult"]
