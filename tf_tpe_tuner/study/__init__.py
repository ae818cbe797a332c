"""The tuning loop (`Study`), its criterion, Neural Compressor's loss, and the result."""
from .criterion import Criterion
from .result import BEST_ATTEMPT, FLOAT, QUANTIZED, Baseline, TuningResult
from .stop_rule import StopRule
from .study import Study

__all__ = ["BEST_ATTEMPT", "FLOAT", "QUANTIZED", "Baseline", "Criterion", "StopRule", "Study", "TuningResult"]
