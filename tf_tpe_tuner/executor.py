"""Where trials run: in the tuning process (`local`) or on Ray workers (`ray_executor`).

An executor takes configurations (`submit`) and hands back outcomes as they finish
(`next_result`); the loop keeps up to `workers` trials in flight.
"""
from __future__ import annotations

from collections import deque

from .trial import TrialOutcome, TrialRunner


class LocalExecutor:
    """Runs each trial in this process, one at a time, when its result is asked for."""

    workers = 1
    name = "local"

    def __init__(self, runner: TrialRunner):
        self.runner = runner
        self._queue: deque = deque()

    def submit(self, trial: int, config: dict[str, str]) -> None:
        self._queue.append((trial, config))

    def next_result(self) -> tuple[int, TrialOutcome]:
        trial, config = self._queue.popleft()
        return trial, self.runner.run(config)

    def close(self) -> None:
        self._queue.clear()
