"""The tuning history: one JSON object per finished trial, appended as soon as it finishes.

Each line is flushed and fsynced before the next trial starts, so a run killed at any
moment keeps every trial it finished; a half-written last line is dropped when read back.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclass
class TrialRecord:
    """One evaluated configuration, as written to history.jsonl."""

    trial: int
    config: dict[str, str]  # unit -> "int8" | "fp32", as proposed
    status: str = STATUS_OK
    accuracy: float | None = None
    latency_ms: float | None = None
    loss: float | None = None
    met_criterion: bool = False
    int8_units: list[str] = field(default_factory=list)  # what really ended up int8
    int8_layers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialRecord":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def key(self) -> frozenset[str]:
        """The configuration as the set of units proposed int8."""
        return frozenset(u for u, dtype in self.config.items() if dtype == "int8")


class JsonlHistory:
    """history.jsonl in a workspace directory."""

    def __init__(self, path: str):
        self.path = path

    def append(self, record: TrialRecord) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(record.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())

    def load(self, repair: bool = False) -> list[TrialRecord]:
        """Every complete record. A torn last line (the process died mid-write) is skipped,
        and with `repair` cut off the file, so that appending can go on after it."""
        if not os.path.exists(self.path):
            return []
        records = []
        good_bytes = 0
        with open(self.path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    records.append(TrialRecord.from_dict(json.loads(line)))
                except (UnicodeDecodeError, json.JSONDecodeError, TypeError):
                    break
                good_bytes += len(line)
        if repair and good_bytes != os.path.getsize(self.path):
            with open(self.path, "r+b") as f:
                f.truncate(good_bytes)
        return records

    def write_all(self, records: list[TrialRecord]) -> None:
        for record in records:
            self.append(record)
