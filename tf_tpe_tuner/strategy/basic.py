"""`BasicTuneStrategy`: Neural Compressor's basic fallback (`samplers.basic.BasicSampler`)."""
from .base import TuneStrategy


class BasicTuneStrategy(TuneStrategy):
    sampler_name = "basic"

    @property
    def order(self) -> list[str] | None:
        """The searched units, most sensitive first, once ranked."""
        return self.sampler.order
