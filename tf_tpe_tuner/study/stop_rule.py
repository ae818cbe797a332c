"""When a tuning run stops (the first that holds): `max_trials` trials (resumed ones count); every
configuration seen; `timeout` seconds passed; with `timeout: 0`, the first configuration that
meets the criterion and beats float (Neural Compressor's meaning); `patience` trials without a
faster configuration that meets the criterion, once one does."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class StopRule:
    max_trials: int
    timeout: float | None = None  # seconds; None: no limit; 0: stop at the first that beats float
    patience: int | None = None  # trials without improvement, once the criterion is met

    def reason(self, *, trials: int, seen: int, space_size: int, elapsed: float,
               goal: Callable[[], int | None], since_improvement: int | None,
               timeout: float | None | str = "rule") -> str:
        """Why the run stops now, or "" to go on. `trials`: finished and under way; `seen`: the
        configurations seen, those under way included; `goal()`: the trial that meets the
        criterion and beats float, if any (asked with `timeout: 0` only); `since_improvement`:
        trials since the best last improved (None while nothing meets the criterion); `timeout`:
        this one instead of the rule's."""
        timeout = self.timeout if timeout == "rule" else timeout
        if trials >= self.max_trials:
            return f"max_trials ({self.max_trials}) reached"
        if seen >= space_size:
            return f"search space exhausted (all {space_size} configurations tried)"
        if timeout and elapsed >= timeout:
            return f"timeout ({timeout:g} s) passed"
        if timeout == 0 and (trial := goal()) is not None:
            return f"goal met: trial {trial} meets the criterion and beats float (timeout 0)"
        if self.patience and since_improvement is not None and since_improvement >= self.patience:
            return (f"patience: no faster configuration meeting the criterion in the last "
                    f"{self.patience} trials")
        return ""
