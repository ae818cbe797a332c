"""The run's last step: near-ties among the fastest configurations, settled without the noise.

With the run's latency model, the contenders are the fastest few by the model; without one,
those whose readings are within the noise of the fastest reading. Either way the rule picks among
those that re-measure within the noise of the fastest: the search's own best by the model has no
precedence, since the model is refitted in every run and moves between runs by more than its tie
margin (BUILD_NOTES, "The fourth CPU again"); with the precedence, rescnn_outliers handed back 5
int8 sets in ten runs on an AMD EPYC, without it 1.

Every trial's latency is one noisy reading, and the lowest of many noisy readings is biased low:
left alone, which of two equally fast configurations is handed back depends on the reading. So
when the search ends, the configurations that meet the criterion within the run's latency noise
of the fastest (at most `CONTENDERS`) are measured again, side by side in one sitting
(`REMEASURE_ROUNDS` times each, interleaved, each with a fresh interpreter, median), each against
one of them (the anchor: the search's best, else the fastest reading; its ratio to float is read
in the same rounds), and among those whose re-measured ratio is within the noise of the lowest,
the rule picks: fewer float units first, then int8 on the earlier units (in the search space's
unit order). The chosen record's latency is the re-measured one (also what decides "faster than
float"); the history keeps each trial's own reading.
"""
from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Callable

from ..evaluate import TFLiteModel
from ..history import STATUS_OK, TrialRecord
from ..trial import INT8, tie_rule_key

CONTENDERS = 4
REMEASURE_ROUNDS = 5


def near_ties(records: list[TrialRecord], noise: float,
              ranked_by: Callable[[TrialRecord], float] | None = None) -> list[TrialRecord]:
    """The meeting quantized trials whose reading is within `noise` of the fastest one's; with
    `ranked_by` (the run's latency model), the `CONTENDERS` fastest by it, whatever their
    readings (a bound on readings would let the noise choose the contenders)."""
    meeting = [r for r in records if r.status == STATUS_OK and r.met_criterion and r.int8_units]
    if ranked_by is not None:
        return sorted(meeting, key=lambda r: (ranked_by(r), r.trial))[:CONTENDERS]
    meeting.sort(key=lambda r: (r.latency_ratio, r.trial))
    if not meeting:
        return []
    bound = meeting[0].latency_ratio + noise
    return [r for r in meeting if r.latency_ratio <= bound][:CONTENDERS]


def rule_key(record: TrialRecord, unit_order: list[str]) -> tuple:
    """Fewer float units first, then int8 on the earlier units."""
    return tie_rule_key(record.config.get(u) != INT8 for u in unit_order)


def settle(records: list[TrialRecord], noise: float, evaluator, model_of, unit_order: list[str],
           ranked_by: Callable[[TrialRecord], float] | None = None,
           anchor: TrialRecord | None = None) -> tuple[TrialRecord, dict[int, float]] | None:
    """(the chosen record with its re-measured latency, {trial: re-measured ratio}), or None when
    there is no tie to settle. `model_of(record)` gives a trial's TFLite bytes. `anchor` (with
    `ranked_by`: the search's best) is what the other contenders are read against, when it is
    one of them; else the first contender."""
    contenders = near_ties(records, noise, ranked_by)
    if len(contenders) < 2:
        return None
    models = {r.trial: model_of(r) for r in contenders}
    anchor = anchor if anchor is not None and anchor.trial in models else contenders[0]

    def fresh(record: TrialRecord) -> TFLiteModel:
        return TFLiteModel(models[record.trial], evaluator.num_threads)
    to_float: list[float] = []
    readings: dict[int, list[float]] = {r.trial: [] for r in contenders if r.trial != anchor.trial}
    for _ in range(REMEASURE_ROUNDS):
        # interleaved: load changes hit every contender alike; a fresh interpreter each time:
        # one interpreter's speed can stay off by a few % (its memory). Against the anchor, a
        # quantized model like them, not the float one: on a Xeon with AMX, over 4 minutes, one
        # MobileNetV2 mix read 0.46-0.66x float, and 0.95-1.06x (median 0.99) a mix one
        # depthwise convolution apart (BUILD_NOTES, "Float drifts against int8")
        to_float.append(evaluator.latency_ratio_of(fresh(anchor)))
        for r in contenders:
            if r.trial in readings:
                readings[r.trial].append(evaluator.latency_ratio_between(fresh(r), fresh(anchor)))
    relative = {trial: statistics.median(values) for trial, values in readings.items()}
    relative[anchor.trial] = 1.0
    anchor_ratio = statistics.median(to_float)
    ratios = {r.trial: relative[r.trial] * anchor_ratio for r in contenders}
    # the readings' own spread is the noise here when it exceeds the run's estimate: two fresh
    # interpreters of one model can differ by more than the float model's twin did
    noise = max(noise, statistics.median((max(v) - min(v)) / statistics.median(v) for v in readings.values()))
    fastest = min(ratios.values())
    tied = [r for r in contenders if ratios[r.trial] <= fastest + noise]
    chosen = min(tied, key=lambda r: rule_key(r, unit_order))
    ratio = ratios[chosen.trial]
    scale = chosen.latency_ms / chosen.latency_ratio if chosen.latency_ratio else 0.0
    return replace(chosen, latency_ratio=ratio, latency_ms=ratio * scale), ratios
