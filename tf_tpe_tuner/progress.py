"""Progress over trials: a tqdm bar for people, plain log lines for scripts and CI, or quiet.

    hooks = progress.attach(strategy, mode="auto")    # after building the strategy
    with hooks:
        result = strategy.traverse()

Modes:
- "bar": a tqdm bar on stderr: trials against `max_trials`, time against `timeout`, the best
  accuracy and speed-up so far. Log lines go above it (`setup_logging("bar")`).
- "log": no bar; one progress line per finished trial on the `tf_tpe_tuner` logger
  (absl-style plain lines; the command line prints them on stdout).
- "quiet": nothing but warnings and errors.
- "auto": "bar" when stderr is a terminal, else "log".

`ProgressHooks` fits `TuneStrategy`'s q_hooks ({"on_trial_begin", "on_trial_end"}); bound to
the strategy (`attach`) it also knows the float baseline (for the speed-up) and the clock.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Callable, Mapping

MODES = ("auto", "bar", "log", "quiet")
LOGGER = "tf_tpe_tuner"
log = logging.getLogger(LOGGER)


def resolve_mode(mode: str | None = "auto", quiet: bool = False, stream=None) -> str:
    """The mode to use: `quiet` wins; "auto" is "bar" on a terminal, else "log"."""
    if quiet:
        return "quiet"
    mode = "auto" if mode is None else str(mode).lower()
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "auto":
        stream = stream if stream is not None else sys.stderr
        isatty = getattr(stream, "isatty", None)
        return "bar" if callable(isatty) and isatty() else "log"
    return mode


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TqdmLoggingHandler(logging.Handler):
    """Writes log records with tqdm.write, so that they appear above a running bar."""

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream or sys.stdout)
        except Exception:  # noqa: BLE001  (logging must never raise)
            self.handleError(record)


def setup_logging(mode: str, stream=None) -> logging.Handler | None:
    """The command line's logging for a mode: the tuner's lines on `stream` (stdout), through
    tqdm in bar mode, only warnings in quiet mode; absl's (the converter's) chatter silenced.
    Returns the handler it installed."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logger = logging.getLogger(LOGGER)
    for old in [h for h in logger.handlers if getattr(h, "_tf_tpe_tuner", False)]:
        logger.removeHandler(old)
    stream = stream if stream is not None else sys.stdout
    handler: logging.Handler = TqdmLoggingHandler(stream) if mode == "bar" else logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._tf_tpe_tuner = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if mode == "quiet" else logging.INFO)
    logger.propagate = False
    return handler


class ProgressHooks:
    """Progress over trials, driven by TuneStrategy's q_hooks.

    Args:
        max_trials, timeout: the run's limits (timeout 0: no time limit).
        mode: "bar", "log", "quiet" or "auto".
        file: where the bar goes (stderr); log mode falls back to it when no logging handler
            would show the `tf_tpe_tuner` logger's lines.
        higher_is_better: how to read accuracies.
        strategy: the TuneStrategy; gives the baseline (speed-up), the best trial and the clock.
        desc: the bar's label.
    """

    def __init__(self, max_trials: int, timeout: float = 0.0, mode: str = "auto", *, file=None,
                 higher_is_better: bool = True, strategy=None, desc: str = "tuning"):
        self.max_trials = int(max_trials)
        self.timeout = float(timeout or 0)
        self.file = file if file is not None else sys.stderr
        self.mode = resolve_mode(mode, stream=self.file)
        self.higher_is_better = higher_is_better
        self.strategy = strategy
        self.desc = desc
        self.done = 0
        self.failed = 0
        self._best = None  # the best record seen, when no strategy tells
        self._bar = None
        self._start = time.monotonic()
        self.lines: list[str] = []  # log mode's lines, kept for callers and tests

    # -- what the strategy calls -----------------------------------------------------------
    def on_trial_begin(self, trial: int, config: Mapping[str, str]) -> None:
        if self.mode == "bar":
            bar = self._ensure_bar()
            n_int8 = sum(1 for d in config.values() if d == "int8")
            bar.set_description_str(f"{self.desc} (trial {trial}: {n_int8}/{len(config)} int8)")

    def on_trial_end(self, record) -> None:
        self.done += 1
        if record.status != "ok":
            self.failed += 1
        elif self.strategy is None:
            self._best = self._better(self._best, record)
        if self.mode == "bar":
            bar = self._ensure_bar()
            bar.set_description_str(self.desc)
            bar.set_postfix_str(self.status(), refresh=False)
            bar.update(1)
        elif self.mode == "log":
            self._emit(f"progress: {self.status(with_count=True)}")

    def q_hooks(self, existing: Mapping[str, Callable] | None = None) -> dict[str, Callable]:
        """{"on_trial_begin", "on_trial_end"}: these hooks, after any `existing` ones."""
        existing = dict(existing or {})
        hooks = {}
        for name in ("on_trial_begin", "on_trial_end"):
            mine = getattr(self, name)
            theirs = existing.get(name)
            if theirs is None or getattr(theirs, "__self__", None) is self:
                hooks[name] = mine
            else:
                hooks[name] = _chain(theirs, mine)
        return {**existing, **hooks}

    # -- reading the state -----------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        if self.strategy is not None and hasattr(self.strategy, "elapsed"):
            return float(self.strategy.elapsed())
        return time.monotonic() - self._start

    @property
    def best(self):
        if self.strategy is not None:
            return getattr(self.strategy, "best", None)
        return self._best

    @property
    def baseline(self):
        return getattr(self.strategy, "baseline", None) if self.strategy is not None else None

    def status(self, with_count: bool = False) -> str:
        parts = []
        if with_count:
            parts.append(f"{self._trials_total()}/{self.max_trials} trials"
                         + (f" ({self.failed} failed)" if self.failed else ""))
        parts.append(f"{_clock(self.elapsed)}/{_clock(self.timeout)}" if self.timeout
                     else _clock(self.elapsed))
        best, base = self.best, self.baseline
        if best is None or best.accuracy is None:
            parts.append("best -")
        else:
            text = f"best acc {best.accuracy:.4f}"
            if base is not None and best.latency_ms:
                text += f" ({base.latency_ms / best.latency_ms:.2f}x)"
            else:
                text += f" ({best.latency_ms:.4f} ms)"
            if best.met_criterion:
                text += " meets"
            parts.append(text)
        return ", ".join(parts)

    def _trials_total(self) -> int:
        resumed = self._resumed()
        return resumed + self.done

    def _resumed(self) -> int:
        if not hasattr(self, "_resumed_count"):
            history = getattr(self.strategy, "history", None) if self.strategy is not None else None
            self._resumed_count = max(0, len(history) - self.done) if history is not None else 0
        return self._resumed_count

    def _better(self, current, record):
        if current is None or current.accuracy is None:
            return record
        if record.met_criterion != current.met_criterion:
            return record if record.met_criterion else current
        if record.met_criterion:
            return record if record.latency_ms < current.latency_ms else current
        sign = 1 if self.higher_is_better else -1
        return record if sign * record.accuracy > sign * current.accuracy else current

    # -- output ------------------------------------------------------------------------------
    def _ensure_bar(self):
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.max_trials, initial=self._resumed(), desc=self.desc,
                             unit="trial", file=self.file, dynamic_ncols=True, leave=True,
                             bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {postfix}")
            self._bar.set_postfix_str(self.status(), refresh=True)
        return self._bar

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        if log.isEnabledFor(logging.INFO) and _has_handlers(log):
            log.info(line)
        else:
            print(line, file=self.file, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.set_description_str(self.desc)
            self._bar.set_postfix_str(self.status(), refresh=True)
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "ProgressHooks":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _has_handlers(logger: logging.Logger) -> bool:
    """Some handler (not Python's last resort) would show the logger's lines."""
    node: logging.Logger | None = logger
    while node is not None:
        if node.handlers:
            return True
        if not node.propagate:
            return False
        node = node.parent
    return False


def _chain(first: Callable, second: Callable) -> Callable:
    def both(*args):
        first(*args)
        second(*args)
    return both


def attach(strategy, mode: str = "auto", file=None, desc: str = "tuning") -> ProgressHooks:
    """Drive a progress display from `strategy`'s trials (after the user's own q_hooks).

    Use as `with progress.attach(strategy, mode): result = strategy.traverse()`; the bar is
    closed on the way out, whatever happens.
    """
    hooks = ProgressHooks(strategy.conf.max_trials, strategy.conf.timeout, mode, file=file,
                          higher_is_better=getattr(strategy, "higher_is_better", True),
                          strategy=strategy, desc=desc)
    strategy.q_hooks = hooks.q_hooks(getattr(strategy, "q_hooks", None))
    return hooks
