"""Search strategies: one class per algorithm behind the `TuneStrategy` interface."""
from .base import Baseline, TuneStrategy, TuningResult
from .tpe import TpeTuneStrategy

STRATEGIES = {TpeTuneStrategy.name: TpeTuneStrategy}

__all__ = ["Baseline", "STRATEGIES", "TpeTuneStrategy", "TuneStrategy", "TuningResult"]
