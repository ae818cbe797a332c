"""Search algorithms, one module each, behind the ask/tell interface of `base.Sampler`."""
from .base import EXHAUSTED, WAIT, Sampler, SearchSpace
from .basic import BasicSampler
from .random import RandomSampler
from .tpe import TpeSampler

SAMPLERS = {cls.name: cls for cls in (TpeSampler, RandomSampler, BasicSampler)}

__all__ = ["EXHAUSTED", "SAMPLERS", "WAIT", "BasicSampler", "RandomSampler", "Sampler", "SearchSpace",
           "TpeSampler"]
