"""A pause point for tests that signal a running tuner; inert unless its variable is set.

    TF_TPE_TUNER_HOLD_AFTER_TRIAL="N:PATH"

After trial N is recorded (in history.jsonl, fsynced), the tuning process creates PATH and
waits until PATH is removed. A test waits for PATH to appear, and then knows exactly where the
process is when its signal (SIGKILL, SIGINT) lands: no polling race against fast trials.
"""
from __future__ import annotations

import os
import time

VARIABLE = "TF_TPE_TUNER_HOLD_AFTER_TRIAL"


def hold_after(trial: int) -> None:
    setting = os.environ.get(VARIABLE)
    if not setting:
        return
    number, _, path = setting.partition(":")
    if int(number) != trial:
        return
    with open(path, "w") as f:
        f.write(f"held after trial {trial}\n")
    while os.path.exists(path):  # Ctrl-C raises KeyboardInterrupt out of the sleep, as mid-trial
        time.sleep(0.01)
