"""The interface between the loop and a search algorithm: ask for a configuration, tell results.

A sampler proposes configurations (`ask`), hears that one is running (`pending`) and what a
trial gave (`tell`), and reads the state of the search only through the `SearchView` it is
handed: it never touches the loop's own state. `ask` may answer `WAIT` (nothing to propose
until results come back: basic's ranking with several workers) or `EXHAUSTED` (its plan is
finished). A unit's choices are a list, from the most quantized to float (int8, fp32 today).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol

import numpy as np

from ..history import TrialRecord, config_key


class _Signal:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


WAIT = _Signal("WAIT")
EXHAUSTED = _Signal("EXHAUSTED")


@dataclass(frozen=True)
class SearchSpace:
    """The units in model order, each with its choices; `fixed` units (op_wise) are not searched."""

    units: tuple[str, ...]
    choices: Mapping[str, tuple[str, ...]]
    fixed: Mapping[str, str] = field(default_factory=dict)

    @property
    def searched(self) -> list[str]:
        return [u for u in self.units if u not in self.fixed]

    @property
    def size(self) -> int:
        return math.prod(len(self.choices[u]) for u in self.searched)

    def config(self, choice: Mapping[str, str]) -> dict[str, str]:
        """A choice over the searched units, with the fixed units added, in model order."""
        return {u: self.fixed.get(u) or choice[u] for u in self.units}

    def most_quantized(self) -> dict[str, str]:
        """Every searched unit at its first choice (all-int8 today)."""
        return self.config({u: self.choices[u][0] for u in self.searched})

    def random(self, rng: np.random.Generator) -> dict[str, str]:
        return self.config({u: self.choices[u][int(rng.integers(len(self.choices[u])))]
                            for u in self.searched})

    def neighbours(self, config: Mapping[str, str], rng: np.random.Generator,
                   max_flips: int = 3, per_size: int = 200) -> Iterable[dict[str, str]]:
        """Configurations that differ from `config` in 1, then 2, then 3 searched units (each
        unit moved to another of its choices), in an order drawn from `rng`."""
        units = list(rng.permutation(self.searched))
        for k in range(1, max_flips + 1):
            for n, group in enumerate(itertools.combinations(units, k)):
                if n >= per_size:
                    break
                others = [[c for c in self.choices[u] if c != config[u]] for u in group]
                for picks in itertools.product(*others):
                    yield {**config, **dict(zip(group, picks))}


class SearchView(Protocol):
    """What a sampler may read of the search (the loop implements it)."""

    space: SearchSpace
    seed: int

    @property
    def records(self) -> list[TrialRecord]: ...  # finished trials, in order, resumed ones first

    @property
    def running(self) -> list[dict[str, str]]: ...  # configurations in flight

    def seen(self, config: Mapping[str, str]) -> bool: ...  # finished or in flight

    def record(self, config: Mapping[str, str]) -> TrialRecord | None: ...  # its finished trial

    def drop(self, record: TrialRecord) -> float: ...  # accuracy drop, the criterion's terms

    def best(self) -> TrialRecord | None: ...  # the fastest trial that meets the criterion

    @property
    def tolerance(self) -> float: ...  # the largest drop the criterion allows

    @property
    def sensitivity(self): ...  # tf_tpe_tuner.sensitivity.Sensitivity, if measured

    latency_model: object  # tf_tpe_tuner.latency_model.LatencyModel, or None

    def search_ratio(self, record: TrialRecord) -> float: ...  # the latency ratio it is ranked by


class Sampler:
    """Base of the search algorithms; see the module docstring. Subclasses set `name`."""

    name = "base"
    wants_sensitivity = False  # the loop measures the per-unit sensitivity once, before asking

    def start(self, view: SearchView) -> None:
        """Called once before the first `ask`, after every resumed trial was told."""

    def ask(self, view: SearchView):
        """A configuration over every unit (fixed ones included), `WAIT` or `EXHAUSTED`."""
        raise NotImplementedError

    def pending(self, config: Mapping[str, str], view: SearchView) -> None:
        """`config` started running."""

    def tell(self, config: Mapping[str, str], record: TrialRecord, view: SearchView) -> None:
        """`config`'s trial finished (or was resumed from the history)."""

    def stops_on_goal(self, view: SearchView) -> bool:
        """Whether a configuration meeting the goal may end the search now (timeout 0)."""
        return True


def first_unseen(view: SearchView, candidates: Iterable[Mapping[str, str]]) -> dict[str, str] | None:
    for candidate in candidates:
        if not view.seen(candidate):
            return dict(candidate)
    return None


def random_unseen(view: SearchView, rng: np.random.Generator, tries: int = 1000) -> dict[str, str]:
    """An unseen configuration drawn at random (the loop only asks while one exists)."""
    space = view.space
    for _ in range(tries):
        config = space.random(rng)
        if not view.seen(config):
            return config
    every = (space.config(dict(zip(space.searched, combo)))
             for combo in itertools.product(*(space.choices[u] for u in space.searched)))
    found = first_unseen(view, every)
    if found is None:
        raise LookupError("every configuration was seen")
    return found


__all__ = ["EXHAUSTED", "WAIT", "Sampler", "SearchSpace", "SearchView", "config_key", "first_unseen",
           "random_unseen"]
