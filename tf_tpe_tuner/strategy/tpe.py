"""`TpeTuneStrategy`: the seed's TPE strategy; the search itself is `samplers.tpe.TpeSampler`."""
from .base import TuneStrategy


class TpeTuneStrategy(TuneStrategy):
    """TPE (hyperopt) with a sensitivity-guided start: see `tf_tpe_tuner.samplers.tpe`."""

    sampler_name = "tpe"
