"""Errors the tuner reports to users.

`TunerInputError` is a mistake in what the user gave us (conf, files, model, data): the
command line prints its message on one line and exits 2. Everything else is a bug or an
environment failure and exits 3.
"""


class TunerInputError(Exception):
    """Bad input from the user; the message names the field, flag or file and what is expected."""


class ModelNotSupportedError(TunerInputError):
    """The graph walker cannot read this model."""


class TuningInterrupted(KeyboardInterrupt):
    """Ctrl-C during tuning; the best result so far was written. `result` holds it."""

    def __init__(self, result):
        super().__init__("tuning interrupted")
        self.result = result


class UserCodeError(Exception):
    """The user's own code (eval_func, latency_func, q_func) raised or returned something that
    is not a number: the trial fails, the search goes on (a bug of the tool's own stops it)."""


class TrialsBroken(RuntimeError):
    """The tool's own realization or evaluation failed on each of the first trials alike,
    after the float baseline worked: a bug or a broken installation, not data."""
