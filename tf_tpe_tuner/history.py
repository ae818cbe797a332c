"""The tuning history: one JSON object per finished trial, appended as soon as it finishes.

Each line is flushed and fsynced before the next trial starts, so a run killed at any
moment keeps every trial it finished; a half-written last line is dropped when read back.
The first line describes the run (`{"run": {...}}`: what makes its trials comparable, see
`study.fingerprint`), so that a resume with another model, backend or criterion is refused.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from .errors import TunerInputError

STATUS_OK = "ok"
STATUS_FAILED = "failed"
LATENCY_SIDE_BY_SIDE = "side_by_side"  # ratio of invokes alternated with the fp32 model's
LATENCY_FUNC = "latency_func"  # the user's figure over the user's figure for the fp32 model
_HELD: set[str] = set()  # histories this process has locked (`JsonlHistory.locked`)


@dataclass
class TrialRecord:
    """One evaluated configuration, as written to history.jsonl."""

    trial: int
    config: dict[str, str]  # unit -> its choice ("int8", "fp32", ...), as proposed
    status: str = STATUS_OK
    accuracy: float | None = None
    outputs: dict[str, float] | None = None  # each scored output's metric, for a model with several
    latency_ms: float | None = None  # latency_ratio x this run's fp32 latency
    latency_ratio: float | None = None  # latency / the fp32 model's (what resume scores from)
    latency_source: str | None = None  # LATENCY_SIDE_BY_SIDE or LATENCY_FUNC
    model_ratio: float | None = None  # the run's latency model's prediction, what the search ranked it by
    loss: float | None = None
    met_criterion: bool = False
    int8_units: list[str] = field(default_factory=list)  # what really ended up int8
    int8_layers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    error_origin: str | None = None  # "user" (eval_func, latency_func, q_func), "tool", or "lost" (its worker died)
    worker: dict | None = None  # where it ran, on Ray: {"host", "pid", "node"}; None in the tuning process

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialRecord":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def key(self) -> tuple:
        """The configuration as a hashable value (see `config_key`)."""
        return config_key(self.config)


def config_key(config: dict[str, str]) -> tuple:
    """A configuration's cache key: its (unit, choice) pairs in unit-name order."""
    return tuple(sorted(config.items()))


class JsonlHistory:
    """history.jsonl in a workspace directory; `header` is written as its first line."""

    def __init__(self, path: str, header: dict | None = None):
        self.path = path
        self.header = header

    def append(self, record: TrialRecord) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fresh = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        with open(self.path, "a", encoding="utf-8") as f:
            if fresh and self.header is not None:
                f.write(json.dumps({"run": self.header}, sort_keys=True) + "\n")
            f.write(record.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())

    def load(self, repair: bool = False) -> list[TrialRecord]:
        """Every record (the run header, if any, goes to `self.header`). Only a torn last line
        (no newline: the process died while writing it) is skipped, and with `repair` cut off the
        file, so that appending can go on after it; any other line that does not parse is an
        error naming the file and the line, and the file is left as it was."""
        if not os.path.exists(self.path):
            return []
        records = []
        good_bytes = 0
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    break  # torn: the last line, unterminated
                try:
                    data = json.loads(line)
                    if number == 1 and isinstance(data, dict) and set(data) == {"run"}:
                        self.header = data["run"]
                    else:
                        records.append(TrialRecord.from_dict(data))
                except (UnicodeDecodeError, json.JSONDecodeError, TypeError, AttributeError) as err:
                    raise TunerInputError(
                        f"history file {self.path}, line {number}, is not a trial record "
                        f"({type(err).__name__}); only a torn last line is dropped: repair or remove "
                        "that line") from None
                good_bytes += len(line)
        if repair and good_bytes != os.path.getsize(self.path):
            with open(self.path, "r+b") as f:
                f.truncate(good_bytes)
        return records

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the history for one process: a second run writing the same file is refused.
        Re-entrant within the process (tune() holds it from the resume on, the loop again)."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        key = os.path.realpath(self.path)
        if key in _HELD:
            yield
            return
        lock_path = self.path + ".lock"
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise TunerInputError(
                f"{self.path} is being written by another tuning run ({holder}); wait for it to end "
                "or choose another output directory") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}\n")
            handle.flush()
            _HELD.add(key)
            yield
        finally:
            _HELD.discard(key)
            os.unlink(lock_path)
            handle.close()

    def write_all(self, records: list[TrialRecord]) -> None:
        for record in records:
            self.append(record)
