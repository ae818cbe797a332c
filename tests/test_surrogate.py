"""The surrogate that guides TPE's first trials: its latency and accuracy models and its proposals."""
import math

import pytest

from tf_tpe_tuner.strategy.surrogate import SensitivitySurrogate

UNITS = ["a", "b", "c", "d"]


def test_all_int8_identifies_the_cost_of_leaving_float():
    # Each one-unit model pays quantize/dequantize at the edges once: their product says all-int8
    # is at 1.08 x fp32, the trial says 0.8; units near 1 alone turn out to be faster int8.
    single = {"a": 1.05, "b": 1.02, "c": 0.95, "d": 1.06}
    s = SensitivitySurrogate(UNITS, {u: 0.0 for u in UNITS}, single, criterion=0.01)
    s.fit([(UNITS, 0.0, 0.8)])
    for u in UNITS:
        assert s.predict([u])[1] == pytest.approx(single[u], rel=0.01)
    assert s.predict(UNITS)[1] == pytest.approx(0.8, rel=0.01)
    assert s.b0 > 0 and all(beta < 0 for beta in s.beta)
    int8, drop, ratio = s.propose(seen={frozenset(UNITS)})
    assert int8 == {"a", "b", "c"} and ratio > 0.8  # the next best: the unit that saves least fp32


def test_proposals_skip_the_seen_and_respect_the_predicted_drop():
    scores = {"a": 0.5, "b": 0.001, "c": 0.001, "d": 0.001}
    s = SensitivitySurrogate(UNITS, scores, {u: 0.9 for u in UNITS}, criterion=0.01)
    s.fit([(UNITS, 0.2, 0.7)])  # all-int8 misses: 0.2 lost, "a" explains almost all of it
    int8, drop, _ = s.propose(seen={frozenset(UNITS)})
    assert int8 == {"b", "c", "d"} and drop <= 0.01
    int8_next, _, _ = s.propose(seen={frozenset(UNITS), frozenset(int8)})
    assert "a" not in int8_next and int8_next != int8


def test_a_missed_criterion_blames_the_units_it_had_int8():
    s = SensitivitySurrogate(UNITS, {u: 1e-6 for u in UNITS}, {u: 0.9 for u in UNITS}, criterion=0.01)
    s.fit([(UNITS, 0.02, 0.7), (["a", "b"], 0.02, 0.8), (["c", "d"], 0.0, 0.8)])
    gamma = dict(zip(UNITS, s.gamma))
    assert min(gamma["a"], gamma["b"]) > max(gamma["c"], gamma["d"])
    int8, drop, _ = s.propose(seen={frozenset(UNITS), frozenset("ab"), frozenset("cd")})
    assert not {"a", "b"} <= int8 and drop <= 0.01


def test_large_spaces_rank_neighbourhoods_not_everything():
    units = [f"u{i}" for i in range(40)]
    latency = {u: (1.2 if i % 10 == 0 else 0.97) for i, u in enumerate(units)}
    s = SensitivitySurrogate(units, {u: 0.0 for u in units}, latency, criterion=0.01)
    s.fit([(units, 0.0, 0.6)])
    int8, _, ratio = s.propose(seen={frozenset(units)})
    assert int8 == {u for u in units if latency[u] < 1}  # every slow unit fp32 at once
    assert math.isfinite(ratio) and ratio < 0.6
