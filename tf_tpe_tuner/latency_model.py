"""A latency model measured once per run, so that the search does not follow noisy readings.

Every trial's latency reading is noisy (on this machine an all-int8 model's ratio to float read
0.64 and 0.74 in one process), so a search that ranks its trials by their readings takes a
different path in every run, even with the same seed. The search ranks them by this model
instead: the configurations it proposes depend on accuracy (deterministic) and on the model,
whose few parameters are measured side by side, each from a large difference, at the start.

The model, as a latency ratio to the all-int8 model:

    1 + sum_t A[t] * float_share[t] + C * (boundary - boundary of all-int8) + sum_u D[u] * float[u]

`float_share[t]`: the share of op type t's multiply-adds (the graph's `macs`) that runs float;
`A[t]`: what running all of type t float costs (or saves) next to int8 neighbours;
`boundary`: the elements of the tensors whose two ends run in different precisions (each costs a
QUANTIZE or DEQUANTIZE; model inputs and outputs and ops that are not units are float ends),
relative to the model's tensors; `C`: what a boundary element costs; `D[u]`: a unit's own cost,
for the few units that do not cost their share (measured alone float, on small fast models).
Otherwise, within one op type, which unit is cheaper to keep float is decided by the graph alone
(multiply-adds, tensor sizes); the measurement decides between op types, where differences are
large.

Measured designs, each as a ratio to the all-int8 model: every type float; every other unit of
each type float (more boundaries for the same share); all-float; on small fast models each unit
alone float. Fitted by least squares; the
ratio of all-int8 to float is measured too (`int8_ratio`), to express the model as a ratio to
float. Reported: the fit's residual (`residual`) and the noise of one reading (`noise`: the
median design's spread); a cost within what that noise does counts as none (`NOISE_SPREADS`), and
predictions closer than `TIE` are ties.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

REPEATS = 5  # readings per design, each with fresh interpreters; the median is fitted
MORE_REPEATS = 4  # more when the first ones disagree by over AGREE (a disturbance of the machine)
AGREE = 0.02
TIE = 0.03  # predictions within 3 % of each other are a tie
NEGLIGIBLE = TIE  # so is an op type whose whole cost is under it: it counts as none
UNIT_DESIGN = "unit "  # one-unit designs are named `unit_design(u)`: "unit <u> float"
SINGLES_BUDGET_S = 2.0  # one-unit designs when units x float latency x iterations stays under this
# A cost counts (an op type's, a unit's own) only beyond this share of `noise` too: the median of
# REPEATS readings strays by about a quarter of their spread (max - min), so this is 3 standard
# errors or more (at a flat 3 %, with readings spread 4-6 %, one of 4 MobileNetV2 runs gave 24
# units their own cost, the others 3-7, and its answer differed).
NOISE_SPREADS = 0.75
NEAR_THE_BAR = 2.0  # a one-unit design whose miss is within this factor of the bar is read again


class PrecisionBoundary:
    """Which tensors between units change precision in a configuration (each costs a QUANTIZE or
    DEQUANTIZE). `edges`: (unit, unit, elements), an end that is not a searched unit is float
    unless it is in `int8_ends`; `weights`: one per edge, what a changed edge counts."""

    def __init__(self, units: Sequence[str], edges: Sequence[tuple], weights: Sequence[float],
                 int8_ends: frozenset[str] = frozenset()):
        index = {u: i for i, u in enumerate(units)}
        on, off = len(units), len(units) + 1  # columns appended to every row: int8, float

        def column(end: str | None) -> int:
            if end in index:
                return index[end]
            return on if end in int8_ends else off
        self._ends = [np.array([column(e[k]) for e in edges], dtype=int) for k in (0, 1)]
        self._weights = np.asarray(weights, dtype=float)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Per configuration row (1 = int8, per unit): the weights of the edges that change."""
        padded = np.column_stack([rows, np.ones(len(rows)), np.zeros(len(rows))])
        return (padded[:, self._ends[0]] != padded[:, self._ends[1]]) @ self._weights


@dataclass
class LatencyModel:
    units: list[str]  # the searched units
    kinds: dict[str, str]  # unit -> op type
    shares: dict[str, float]  # unit -> its share of its op type's multiply-adds
    edges: list[tuple[str | None, str | None, float]]  # (unit, unit, elements); None: a float end
    fixed_int8: frozenset[str] = frozenset()  # units not searched that are int8 in every trial
    cost: dict[str, float] = field(default_factory=dict)  # op type -> A[t]
    boundary_cost: float = 0.0  # C
    int8_ratio: float = 1.0  # all-int8 latency / fp32 latency, measured
    residual: float = 0.0  # RMS of the fit's residuals, as a ratio to all-int8
    noise: float = 0.0  # the median design's spread of readings (max - min) / median
    designs: dict[str, float] = field(default_factory=dict)  # design -> measured ratio to all-int8
    unit_cost: dict[str, float] = field(default_factory=dict)  # unit -> its own correction, when measured
    single_misses: dict[str, float] = field(default_factory=dict, repr=False)  # unit that has or
    # could get its own cost -> its one-unit design's miss by the fit (its own cost, if it has one)

    def __post_init__(self) -> None:
        total = sum(e[2] for e in self.edges) or 1.0  # boundary: relative to all tensors between units
        self._boundary = PrecisionBoundary(self.units, self.edges, [e[2] / total for e in self.edges],
                                           self.fixed_int8)
        self._type_shares = np.zeros((len(self.units), len(self.types)))
        for i, u in enumerate(self.units):
            self._type_shares[i, self.types.index(self.kinds[u])] = self.shares[u]
        self._base = self._boundary(np.ones((1, len(self.units))))[0]

    @property
    def types(self) -> list[str]:
        return sorted(set(self.kinds.values()))

    def features(self, rows: np.ndarray) -> np.ndarray:
        """(float share per op type in `types` order..., boundary change) per configuration row."""
        rows = np.atleast_2d(rows)
        return np.column_stack([(1.0 - rows) @ self._type_shares, self._boundary(rows) - self._base])

    def row(self, int8: Iterable[str]) -> np.ndarray:
        int8 = set(int8)
        return np.array([1.0 if u in int8 else 0.0 for u in self.units])

    def ratio_to_int8_rows(self, rows: np.ndarray) -> np.ndarray:
        theta = np.array([self.cost.get(t, 0.0) for t in self.types] + [self.boundary_cost])
        own = np.array([self.unit_cost.get(u, 0.0) for u in self.units])
        rows = np.atleast_2d(rows)
        return np.maximum(1.0 + self.features(rows) @ theta + (1.0 - rows) @ own, 1e-3)

    def ratio_to_int8(self, int8: Iterable[str]) -> float:
        return float(self.ratio_to_int8_rows(self.row(int8))[0])

    def predict(self, int8: Iterable[str]) -> float:
        """The configuration's latency as a ratio to the float model's."""
        return self.int8_ratio * self.ratio_to_int8(int8)

    def fit(self, readings: Mapping[str, tuple[frozenset[str], float]]) -> None:
        """Least squares over the designs: {name: (int8 units, measured ratio to all-int8)}.
        An op type whose whole cost is under `bar` is set to 0 and the rest refitted:
        such a cost is mostly noise, and its sign would order configurations differently in
        every run. With one-unit designs (`unit <u> float`), a unit whose own reading the fit
        misses by more than `bar` gets a cost of its own, the worst first, refitting
        each time (forward selection: a unit whose kernel does not cost in proportion to its
        multiply-adds, like a convolution reading a one-channel image, gets one; the rest share
        their type's). A cost within what the readings' noise does is not told from none. Fewer
        than half of a type's units get one: the type's cost is what most of its units cost, and
        with more the two would be interchangeable, traded from run to run (rescnn_outliers: in
        3 of 10 runs 6-8 of its 10 units got one and CONV_2D was fitted 0.53-0.54, in the other
        7 only 1-3 did and CONV_2D was 2.45-2.71; the answers followed)."""
        names = list(readings)
        threshold = self.bar
        rows = np.stack([self.row(readings[n][0]) for n in names])
        x = self.features(rows)
        y = np.array([readings[n][1] - 1.0 for n in names])
        singles = {u: i for i, n in enumerate(names) if n.startswith(UNIT_DESIGN)
                   for u in set(self.units) - readings[n][0]}  # the one unit that runs float
        room = {t: (list(self.kinds.values()).count(t) - 1) // 2 for t in self.types}
        own: list[str] = []
        while True:
            columns = np.column_stack([x, 1.0 - rows[:, [self.units.index(u) for u in own]]])
            theta = self._lstsq(columns, y, len(self.types), threshold)
            misses = {u: y[i] - columns[i] @ theta for u, i in singles.items() if u not in own}
            eligible = [u for u in misses if room[self.kinds[u]] > 0]
            worst = max(eligible, key=lambda u: (abs(misses[u]), u), default=None)
            if worst is None or abs(misses[worst]) <= threshold:
                break
            own.append(worst)
            room[self.kinds[worst]] -= 1
        n_types = len(self.types)
        self.cost = {t: float(a) for t, a in zip(self.types, theta[:n_types])}
        self.boundary_cost = float(theta[n_types])
        self.unit_cost = {u: float(a) for u, a in zip(own, theta[n_types + 1:])}
        self.single_misses = {**{u: float(misses[u]) for u in eligible}, **self.unit_cost}
        self.residual = float(np.sqrt(np.mean((columns @ theta - y) ** 2)))
        self.designs = {name: float(ratio) for name, (_, ratio) in readings.items()}

    @staticmethod
    def _lstsq(x: np.ndarray, y: np.ndarray, n_types: int, threshold: float) -> np.ndarray:
        """Least squares, then again without the op-type costs under `threshold`."""
        theta, *_ = np.linalg.lstsq(x, y, rcond=None)
        small = np.zeros(x.shape[1], dtype=bool)
        small[:n_types] = np.abs(theta[:n_types]) < threshold
        if small.any():
            theta = np.zeros(x.shape[1])
            theta[~small], *_ = np.linalg.lstsq(x[:, ~small], y, rcond=None)
        return theta

    def summary(self) -> dict:
        """What summary.json records of the model."""
        return {"int8_ratio": round(self.int8_ratio, 4), "cost_per_type": {t: round(a, 4) for t, a in self.cost.items()},
                "boundary_cost": round(self.boundary_cost, 4), "residual": round(self.residual, 4),
                "noise": round(self.noise, 4), "tie": round(self.tie, 4),
                "designs": {name: round(ratio, 4) for name, ratio in self.designs.items()},
                "unit_cost": {u: round(a, 4) for u, a in self.unit_cost.items()}}

    @property
    def bar(self) -> float:
        """What a cost (an op type's, a unit's own) must exceed to count: the tie margin, or
        `NOISE_SPREADS` x the noise of a reading where that is more."""
        return max(NEGLIGIBLE, NOISE_SPREADS * self.noise)

    @property
    def tie(self) -> float:
        """Predicted latencies closer than this (relative) are not told apart: the search and
        the best then follow the rule (fewer float units, then int8 on the earlier units). A
        constant: a margin that followed this run's noise would itself differ between runs."""
        return TIE


def unit_design(unit: str) -> str:
    """The name of the design with only `unit` float."""
    return f"{UNIT_DESIGN}{unit} float"


def designs(units: Sequence[str], kinds: Mapping[str, str],
            singles: Sequence[str] = ()) -> dict[str, frozenset[str]]:
    """The configurations measured (by their int8 units): each op type float, every other unit
    of each op type float, all-float; and each unit of `singles` alone float."""
    out: dict[str, frozenset[str]] = {}
    everything = frozenset(units)
    for u in singles:
        out[unit_design(u)] = everything - {u}
    for t in sorted(set(kinds.values())):
        of_type = [u for u in units if kinds[u] == t]
        out[f"{t} float"] = everything - frozenset(of_type)
        if len(of_type) >= 2:
            out[f"{t} every other float"] = everything - frozenset(of_type[::2])
    out["all float"] = frozenset()
    return out


def measure(model: LatencyModel, realize: Callable[[Sequence[str]], bytes],
            ratio: Callable[[bytes, bytes], float], float_bytes: bytes,
            repeats: int = REPEATS, singles: Sequence[str] = ()) -> LatencyModel:
    """Measure the designs side by side with the all-int8 model (`ratio(a, b)`: a's latency over
    b's, interleaved) and fit `model`; `realize(int8 units)` gives a configuration's TFLite bytes.
    `singles`: units measured alone float as well (see `fit`); a one-unit design whose miss is
    near the bar for a cost of its own (within `NEAR_THE_BAR` either side) is read as many times
    again and the model refitted, so that the noise of one design's readings does not decide."""
    int8_bytes = realize(list(model.units))
    readings, spreads, values_of = {}, [], {}
    for name, int8 in designs(model.units, model.kinds, singles).items():
        tflite = float_bytes if not int8 else realize(sorted(int8))
        values = [ratio(tflite, int8_bytes) for _ in range(repeats)]
        if (max(values) - min(values)) / statistics.median(values) > AGREE:
            values += [ratio(tflite, int8_bytes) for _ in range(MORE_REPEATS)]
        spreads.append((max(values) - min(values)) / statistics.median(values))
        readings[name], values_of[name] = (int8, statistics.median(values)), values
    model.noise = statistics.median(spreads)
    model.fit(readings)
    near = [u for u, miss in model.single_misses.items()
            if model.bar / NEAR_THE_BAR < abs(miss) < model.bar * NEAR_THE_BAR]
    for u in near:
        name = unit_design(u)
        int8, values = readings[name][0], values_of[name]
        tflite = realize(sorted(int8))
        values += [ratio(tflite, int8_bytes) for _ in range(len(values))]
        readings[name] = (int8, statistics.median(values))
    if near:
        model.fit(readings)
    model.int8_ratio = 1.0 / readings["all float"][1]
    return model


def save(model: LatencyModel, path: str) -> None:
    """The measured readings, exactly, so that `load` refits the same model."""
    from .export import write_atomic

    write_atomic(path, json.dumps({"units": model.units, "designs": model.designs, "noise": model.noise,
                                   "int8_ratio": model.int8_ratio}, indent=1) + "\n")


def read(path: str) -> dict | None:
    """What `save` wrote, or None (no file, or not one `save` wrote)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load(model: LatencyModel, saved: Mapping) -> bool:
    """Fit `model` from readings `save` wrote; False (model untouched) when they are not for
    these units and designs."""
    try:
        wanted = designs(model.units, model.kinds,
                         [u for u in model.units if unit_design(u) in saved["designs"]])
        if list(saved["units"]) != list(model.units) or set(saved["designs"]) != set(wanted):
            return False
        readings = {name: (wanted[name], float(saved["designs"][name])) for name in wanted}
        noise, int8_ratio = float(saved["noise"]), float(saved["int8_ratio"])
    except (KeyError, TypeError, ValueError):
        return False
    model.noise, model.int8_ratio = noise, int8_ratio
    model.fit(readings)
    return True


def from_graph(graph, searched: Sequence[str], fixed: Mapping[str, str]) -> LatencyModel:
    """The model's structure from a TFLite graph (`tflite_graph.TfliteGraph`): op types,
    multiply-add shares within each type, tensors between units."""
    kinds = {u: graph.unit(u).layer_types[0] for u in searched}
    macs = {u: sum(graph.macs.get(n, 0) for n in graph.unit(u).layers) or 1 for u in searched}
    per_type: dict[str, float] = {}
    for u in searched:
        per_type[kinds[u]] = per_type.get(kinds[u], 0) + macs[u]
    shares = {u: macs[u] / per_type[kinds[u]] for u in searched}
    fixed_int8 = frozenset(u for u, choice in fixed.items() if choice == "int8")
    return LatencyModel(list(searched), kinds, shares, [(a, b, float(n)) for a, b, n in graph.edges],
                        fixed_int8)
