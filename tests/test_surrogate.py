"""The surrogate that guides TPE's first trials: its latency and accuracy models and its proposals."""
import itertools
import math

import pytest

from tf_tpe_tuner.samplers.surrogate import SensitivitySurrogate

UNITS = ["a", "b", "c", "d"]
CHAIN = [(None, "a", 1), ("a", "b", 1), ("b", "c", 1), ("c", "d", 1), ("d", None, 1)]


def test_all_int8_tells_the_boundary_cost_apart():
    # A chain: the last unit is slow alone (a DEQUANTIZE of a big tensor before it) but saves
    # time next to int8 neighbours. Latency ratio = 1 + beta + 0.1 per edge element that changes
    # precision (sizes relative to the largest edge).
    beta = {"a": -0.05, "b": -0.2, "c": -0.2, "d": -0.02}
    def ratio(int8):
        bits = {u: u in int8 for u in UNITS}
        ends = [(None, "a"), ("a", "b"), ("b", "c"), ("c", "d"), ("d", None)]
        change = sum(size for (p, q), size in zip(ends, [0.1, 1, 1, 1, 0.01])
                     if bits.get(p, False) != bits.get(q, False))
        return 1 + sum(beta[u] for u in int8) + 0.1 * change
    edges = [(None, "a", 10), ("a", "b", 100), ("b", "c", 100), ("c", "d", 100), ("d", None, 1)]
    s = SensitivitySurrogate(UNITS, {u: 0.0 for u in UNITS}, {u: ratio([u]) for u in UNITS}, 0.01, edges)
    assert ratio(["d"]) > 1  # alone, "d" makes the model slower
    s.fit([(UNITS, 0.0, ratio(UNITS))])
    assert s.delta == pytest.approx(0.1, rel=0.02)
    assert dict(zip(UNITS, s.beta)) == pytest.approx(beta, abs=0.005)
    for int8 in (["b", "c"], ["b", "c", "d"], ["a", "d"]):
        assert s.predict(int8)[1] == pytest.approx(ratio(int8), abs=0.005)
    int8, drop, predicted = s.propose(seen={frozenset(UNITS)})
    assert predicted == pytest.approx(min(ratio(k) for k in _all_but(UNITS)), abs=0.005)


def _all_but(units):
    return [c for n in range(len(units)) for c in itertools.combinations(units, n)]


def test_proposals_skip_the_seen_and_respect_the_predicted_drop():
    scores = {"a": 0.5, "b": 0.001, "c": 0.001, "d": 0.001}
    s = SensitivitySurrogate(UNITS, scores, {u: 0.9 for u in UNITS}, 0.01, CHAIN)
    s.fit([(UNITS, 0.2, 0.7)])  # all-int8 misses: 0.2 lost, "a" explains almost all of it
    int8, drop, _ = s.propose(seen={frozenset(UNITS)})
    assert int8 == {"b", "c", "d"} and drop <= 0.01
    int8_next, _, _ = s.propose(seen={frozenset(UNITS), frozenset(int8)})
    assert "a" not in int8_next and int8_next != int8


def test_a_missed_criterion_blames_the_units_it_had_int8():
    s = SensitivitySurrogate(UNITS, {u: 1e-6 for u in UNITS}, {u: 0.9 for u in UNITS}, 0.01, CHAIN)
    s.fit([(UNITS, 0.02, 0.7), (["a", "b"], 0.02, 0.8), (["c", "d"], 0.0, 0.8)])
    gamma = dict(zip(UNITS, s.gamma))
    assert min(gamma["a"], gamma["b"]) > max(gamma["c"], gamma["d"])
    int8, drop, _ = s.propose(seen={frozenset(UNITS), frozenset("ab"), frozenset("cd")})
    assert not {"a", "b"} <= int8 and drop <= 0.01


def test_large_spaces_rank_neighbourhoods_not_everything():
    units = [f"u{i}" for i in range(40)]
    latency = {u: (1.2 if i % 10 == 0 else 0.97) for i, u in enumerate(units)}
    chain = [(None, units[0], 1)] + [(p, q, 1) for p, q in zip(units, units[1:])] + [(units[-1], None, 1)]
    s = SensitivitySurrogate(units, {u: 0.0 for u in units}, latency, 0.01, chain)
    s.fit([(units, 0.0, 0.6)])
    int8, _, ratio = s.propose(seen={frozenset(units)})
    assert int8 == {u for u in units if latency[u] < 1}  # every slow unit fp32 at once
    assert math.isfinite(ratio) and ratio < 0.6


def _with_latency_model(own_cost: dict[str, float]) -> SensitivitySurrogate:
    """A 14-unit chain (beyond what is enumerated) whose run's latency model gives each unit
    in `own_cost` that saving (as a ratio to all-int8) when float, and every other unit none."""
    from tf_tpe_tuner.latency_model import LatencyModel

    units = [f"u{i:02d}" for i in range(14)]
    edges = [(None, units[0], 1.0)] + list(zip(units, units[1:], [1.0] * 13)) + [(units[-1], None, 1.0)]
    model = LatencyModel(units, {u: "CONV_2D" for u in units}, {u: 1 / 14 for u in units}, edges)
    model.unit_cost, model.int8_ratio = own_cost, 0.5
    return SensitivitySurrogate(units, {u: 1.0 for u in units}, {u: 0.5 for u in units}, 1.0, edges,
                                latency_model=model)


def _float_units(s: SensitivitySurrogate) -> list[str]:
    return [u for u, bit in zip(s.units, s._fastest()) if not bit]


def test_small_savings_that_add_up_beyond_the_tie_margin_are_taken():
    # eight units saving 1 % each: no single flip saves the 3 % margin, all eight save 8 %;
    # units go back to int8 from that optimum (the earliest first) while within 3 % of it
    s = _with_latency_model({f"u{i:02d}": -0.01 for i in range(8)})
    assert _float_units(s) == [f"u{i:02d}" for i in range(2, 8)]


def test_the_first_stop_stays_when_going_on_saves_within_the_tie_margin():
    # one unit saves 10 %, four more 0.5 % each: floating them too is within 3 % of the optimum
    s = _with_latency_model({"u03": -0.10, **{f"u{i:02d}": -0.005 for i in (5, 7, 9, 11)}})
    assert _float_units(s) == ["u03"]
