"""Neural Compressor 1.x's TPE loss, which the TPE sampler minimises (lower is better).

Scaled so that a 1 % accuracy loss and a 2x speed-up each move it by 10. Inside the criterion
only speed counts (10 * (1 - log2(speed-up)) with the default weights); outside it, 80 more plus
about 10 per 1 % of accuracy lost. The latency term is NC's `log((1 / (1000 s)) ** 8)`, written
as `-8 ln(1000 s)` so that it cannot overflow.
"""
from __future__ import annotations

import math
from typing import Mapping

from .criterion import within

_PENALTY = 40.0


def _acc_component(acc_diff: float) -> float:
    return math.exp(acc_diff)


def _lat_component(speedup: float) -> float:
    return -8.0 * math.log(1000.0 * speedup)


def loss_config(tolerance: float, accuracy_weight: float, latency_weight: float,
                ref_acc_loss: float = 0.01, ref_speedup: float = 2.0) -> dict[str, float]:
    """NC's `loss_function_config`: the weights, the tolerance and the scaling components."""
    config = {"acc_th": float(tolerance), "acc_weight": float(accuracy_weight),
              "lat_weight": float(latency_weight)}
    acc_min, acc_max = _acc_component(0), _acc_component(ref_acc_loss)
    if acc_max == acc_min:
        acc_max = _acc_component(tolerance)
    config["acc_min"] = acc_min
    config["acc_scale"] = 10 / abs(acc_max - acc_min)
    lat_min, lat_max = _lat_component(ref_speedup), _lat_component(1)
    config["lat_min"] = lat_min
    config["lat_scale"] = 10 / abs(lat_max - lat_min)
    return config


def calculate_loss(acc_diff: float, speedup: float, config: Mapping[str, float]) -> float:
    """The loss of a trial with accuracy drop `acc_diff` (the criterion's terms) and speed-up
    `speedup` (fp32 latency / latency)."""
    outside = not within(acc_diff, config["acc_th"])
    acc_weight = config["acc_weight"] if outside else 0.0
    if acc_weight == 0 and config["lat_weight"] == 0:
        acc_weight = 1.0
    loss = acc_weight * config["acc_scale"] * (_acc_component(acc_diff) - config["acc_min"]) \
        + config["lat_weight"] * config["lat_scale"] * (_lat_component(speedup) - config["lat_min"])
    if outside:
        loss += 2 * _PENALTY
    return float(loss)
