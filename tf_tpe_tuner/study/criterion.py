"""The accuracy criterion, defined once: every part of the tuner (the loop, the loss, the
surrogate, progress, the report, the benchmarks) asks this class, so a trial reported as meeting
the criterion is never scored as outside it."""
from __future__ import annotations

from dataclasses import dataclass

# Accuracies are floats computed from counts: a drop equal to the tolerance up to rounding meets.
_ROUNDING = 1e-12


def within(drop: float, tolerance: float) -> bool:
    """The one boundary: a drop meets a tolerance when it is at most the tolerance."""
    return drop <= tolerance + _ROUNDING


@dataclass(frozen=True)
class Criterion:
    """`kind` "relative" (drop / |baseline|) or "absolute" (drop in the metric's units);
    `tolerance` the largest drop allowed; `higher_is_better` how to read the metric."""

    kind: str
    tolerance: float
    higher_is_better: bool = True

    @classmethod
    def from_conf(cls, conf) -> "Criterion":
        kind, tolerance = conf.criterion
        return cls(kind, float(tolerance), bool(conf.higher_is_better))

    def drop(self, baseline: float, accuracy: float) -> float:
        """How much worse than the baseline `accuracy` is, in the criterion's terms (< 0: better)."""
        loss = baseline - accuracy if self.higher_is_better else accuracy - baseline
        if self.kind == "relative":
            return loss / abs(baseline) if baseline else loss
        return loss

    def meets(self, baseline: float, accuracy: float) -> bool:
        return within(self.drop(baseline, accuracy), self.tolerance)

    def threshold(self, baseline: float) -> float:
        """The worst accuracy that still meets the criterion."""
        allowed = self.tolerance * abs(baseline) if self.kind == "relative" and baseline else self.tolerance
        return baseline - allowed if self.higher_is_better else baseline + allowed

    def describe(self) -> str:
        what = f"{self.tolerance:g}" if self.kind == "absolute" else f"{100 * self.tolerance:g} %"
        return f"{self.kind} {what} ({'higher' if self.higher_is_better else 'lower'} is better)"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "tolerance": self.tolerance, "higher_is_better": self.higher_is_better}
