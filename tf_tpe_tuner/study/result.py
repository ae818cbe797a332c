"""What a tuning run hands back (and what the output directory holds)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..history import TrialRecord

# What best_model.tflite is
QUANTIZED = "quantized"  # the fastest configuration that meets the criterion
FLOAT = "float"  # configurations met the criterion, none faster than float beyond the noise
BEST_ATTEMPT = "best_attempt"  # nothing met the criterion: the lowest loss, flagged


@dataclass
class Baseline:
    accuracy: float
    latency_ms: float
    outputs: dict[str, float] | None = None  # each scored output's metric (several outputs)


@dataclass
class TuningResult:
    """The best model of a run, how it was chosen, and every trial."""

    tflite_model: bytes | None
    config: dict[str, str]
    accuracy: float | None
    latency_ms: float | None
    met_criterion: bool
    baseline: Baseline
    best_trial: int | None  # None when the float model is handed back
    int8_units: list[str]
    int8_layers: list[str]
    fp32_layers: list[str]
    history: list[TrialRecord]
    seed: int
    elapsed_s: float
    strategy: str
    stop_reason: str = ""
    realization: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False  # Ctrl-C: this is the best found before it
    report: dict | None = None  # report.json's content, when tune() wrote a report
    handed_back: str | None = None  # QUANTIZED, FLOAT or BEST_ATTEMPT (None: every trial failed)
    fastest_quantized: dict | None = None  # with FLOAT: {"trial", "latency_ratio"} of the fastest that met
    latency_noise: float = 0.0  # ratios closer than this to each other are not told apart
    sensitivity: Any = None  # tf_tpe_tuner.sensitivity.Sensitivity, when the run measured it
    final_choice: dict | None = None  # near-ties re-measured at the end (study/final_choice.py)
    latency_model: dict | None = None  # the latency model the search ranked trials by (latency_model.py)
    criterion: Any = None  # the run's study.Criterion (several outputs: every output within its own)
    metric: str | None = None  # what `accuracy` is: top1, MSE, ... or the worst output's share of tolerance
    outputs: list[dict] | None = None  # per scored output: metric, criterion, fp32 and best value, meets
    pinned_int8_run_float: list[str] = field(default_factory=list)  # FLOAT: units op_wise pins to int8

    @property
    def trials(self) -> int:
        return len(self.history)

    @property
    def speedup(self) -> float | None:
        if not self.latency_ms:
            return None
        return self.baseline.latency_ms / self.latency_ms

    def describe(self) -> str:
        """One line for people: what was handed back and why."""
        if self.handed_back is None:
            return "every trial failed"
        if self.handed_back == FLOAT:
            fq = self.fastest_quantized or {}
            return (f"the float model is handed back: no quantized configuration that meets the criterion "
                    f"is faster than float (fastest: trial {fq.get('trial')}, "
                    f"{fq.get('latency_ratio', float('nan')):.3f}x the float latency)"
                    + (f"; units op_wise pins to int8 run float in it: {', '.join(self.pinned_int8_run_float)}"
                       if self.pinned_int8_run_float else ""))
        verdict = "meets" if self.met_criterion else "does NOT meet"
        return (f"trial {self.best_trial}, {len(self.int8_units)}/{len(self.config)} units int8, "
                f"{self.speedup:.2f}x faster than float, {verdict} the criterion")
