"""Progress over trials: a tqdm bar for people, plain log lines for scripts and CI, or quiet.

    hooks = progress.attach(strategy, mode="auto")    # after building the strategy
    with hooks:
        result = strategy.traverse()

Modes:
- "log": one line per finished trial on the `tf_tpe_tuner` logger (the command line prints
  them on stdout), with the trial's own numbers, then the run's: trials done, the clock, and
  the configuration chosen so far (the best: the fastest that meets the criterion)::

    trial 3  int8 4/5  acc 0.9837  lat 0.0044 ms  loss -5.35  meets | 3/20 trials  0:01/10:00 | chosen: trial 2 (acc 0.9837, 2.92x, meets)

- "bar": a tqdm bar on stderr, of a fixed layout (trials, the clock, the trial running, the
  chosen configuration), with the same line per trial above it. On a terminal whose width is
  unknown or 0 tqdm draws nothing, so there the log mode is used instead.
- "quiet": nothing but warnings and errors.
- "auto": "bar" when stderr is a terminal, else "log".

`ProgressHooks` fits `TuneStrategy`'s q_hooks ({"on_trial_begin", "on_trial_end"}); bound to
the strategy (`attach`) it also knows the float baseline (for the speed-up), the chosen trial
and the clock.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Callable, Mapping

MODES = ("auto", "bar", "log", "quiet")
LOGGER = "tf_tpe_tuner"
BAR_WIDTH = 20  # characters; fixed, so that the text around the bar does not move
log = logging.getLogger(LOGGER)


def terminal_width(stream) -> int | None:
    """Columns of the terminal `stream` writes to; None when unknown (not a terminal)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return None


def _isatty(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def resolve_mode(mode: str | None = "auto", quiet: bool = False, stream=None) -> str:
    """The mode to use: `quiet` wins; "auto" is "bar" on a terminal, else "log"; "bar" on a
    terminal of unknown or zero width is "log" (tqdm would show nothing there)."""
    if quiet:
        return "quiet"
    mode = "auto" if mode is None else str(mode).lower()
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode in ("auto", "bar"):
        stream = stream if stream is not None else sys.stderr
        tty = _isatty(stream)
        if mode == "auto" and not tty:
            return "log"
        if tty and not terminal_width(stream):
            return "log"
        return "bar"
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
        strategy: the TuneStrategy; gives the baseline (speed-up), the chosen trial and the clock.
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
        self._running = ""  # the bar's "trial 4: 3/5 int8" while a trial runs
        # widths that only grow, so that the bar's status text does not move about
        self._running_width = self._status_width = 0
        self._start = time.monotonic()
        self.lines: list[str] = []  # the lines per trial, kept for callers and tests

    # -- what the strategy calls -----------------------------------------------------------
    def on_trial_begin(self, trial: int, config: Mapping[str, str]) -> None:
        if self.mode == "bar":
            n_int8 = sum(1 for d in config.values() if d == "int8")
            digits = len(str(len(config)))
            self._running = f"trial {trial:>{len(str(self.max_trials))}}: {n_int8:>{digits}}/{len(config)} int8"
            self._refresh_bar()

    def on_trial_end(self, record) -> None:
        self.done += 1
        if record.status != "ok":
            self.failed += 1
        elif self.strategy is None:
            self._best = self._better(self._best, record)
        if self.mode in ("log", "bar"):
            self._emit(self.trial_line(record))
        if self.mode == "bar":
            self._running = ""
            self._refresh_bar(advance=1)

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
        """The chosen trial so far (the strategy's best), or None."""
        if self.strategy is not None:
            return getattr(self.strategy, "best", None)
        return self._best

    @property
    def baseline(self):
        return getattr(self.strategy, "baseline", None) if self.strategy is not None else None

    def trial_line(self, record) -> str:
        """One line for a finished trial: its own numbers | the run's count and clock | the
        configuration chosen so far. It starts with "trial N "."""
        n_int8 = sum(1 for d in record.config.values() if d == "int8")
        own = f"trial {record.trial}  int8 {n_int8}/{len(record.config)}  "
        if record.status != "ok":
            own += f"FAILED: {_first_line(record.error)}"
        else:
            own += (f"acc {_num(record.accuracy)}  lat {_num(record.latency_ms)} ms  "
                    f"loss {_num(record.loss, 2)}  {'meets' if record.met_criterion else 'misses'}")
        return f"{own} | {self._count()}  {self._clock()} | {self._chosen()}"

    def bar_status(self) -> str:
        """What the bar shows right of it: the clock, the trial running, the chosen one."""
        self._running_width = max(self._running_width, len(self._running))
        return f"{self._clock()}  {self._running.ljust(self._running_width)}  {self._chosen()}"

    def _count(self) -> str:
        return (f"{self._resumed() + self.done}/{self.max_trials} trials"
                + (f" ({self.failed} failed)" if self.failed else ""))

    def _clock(self) -> str:
        if not self.timeout:
            return _clock(self.elapsed)
        limit = _clock(self.timeout)
        return f"{_clock(self.elapsed).rjust(len(limit))}/{limit}"

    def _chosen(self) -> str:
        """The chosen trial, its accuracy labelled as its own: the best trial changes, and a
        bare "acc" would look like the best accuracy going down when a faster one is chosen."""
        best, base = self.best, self.baseline
        if best is None and getattr(self.strategy, "handing_back", None) == "float":
            return "chosen: the float model (no trial that meets is faster)"
        if best is None or best.accuracy is None:
            return "chosen: -"
        if base is not None and best.latency_ms:
            speed = f"{base.latency_ms / best.latency_ms:.2f}x"
        else:
            speed = f"{best.latency_ms:.4f} ms"
        return (f"chosen: trial {best.trial} (acc {best.accuracy:.4f}, {speed}, "
                f"{'meets' if best.met_criterion else 'misses'})")

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
    def _refresh_bar(self, advance: int = 0) -> None:
        bar = self._ensure_bar()
        status = self.bar_status()
        self._status_width = max(self._status_width, len(status))
        bar.status = status.ljust(self._status_width)
        if advance:
            bar.update(advance)  # redraws
        else:
            bar.refresh()

    def _ensure_bar(self):
        if self._bar is None:
            self._bar = _bar_class()(
                status=self.bar_status(), total=self.max_trials, initial=self._resumed(),
                desc=self.desc, unit="trial",
                file=self.file, dynamic_ncols=True, leave=True, mininterval=0,
                bar_format="{desc} {n_fmt:>%d}/{total_fmt} |{bar:%d}| {status}"
                           % (len(str(self.max_trials)), BAR_WIDTH))
        return self._bar

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        if log.isEnabledFor(logging.INFO) and _has_handlers(log):
            log.info(line)
        elif self._bar is not None:
            from tqdm import tqdm

            tqdm.write(line, file=self.file)  # above the bar
        else:
            print(line, file=self.file, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._running = ""
            self._refresh_bar()
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "ProgressHooks":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _bar_class():
    """tqdm with a `status` field for its bar_format (tqdm's own postfix comes with a ", ")."""
    from tqdm import tqdm

    class Bar(tqdm):
        def __init__(self, *args, status: str = "", **kwargs):
            self.status = status  # before tqdm's __init__, which draws the bar once
            super().__init__(*args, **kwargs)

        @property
        def format_dict(self):
            return {**super().format_dict, "status": self.status}

    return Bar


def _num(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _first_line(text, limit: int = 160) -> str:
    """An error message as one line of at most `limit` characters."""
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


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
