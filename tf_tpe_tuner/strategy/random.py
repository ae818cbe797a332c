"""`RandomTuneStrategy`: uniform per-unit choices (`samplers.random.RandomSampler`)."""
from .base import TuneStrategy


class RandomTuneStrategy(TuneStrategy):
    sampler_name = "random"
