"""Quieting what TensorFlow's C++ code prints straight to file descriptor 2.

Its start-up logging (oneDNN, CUDA) and the quantizer's "fully_quantize: 0, ..." line are not
Python output and no environment variable stops them; they would bury the tool's own messages.
"""
import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced():
    """Point file descriptor 2 at /dev/null meanwhile. Python exceptions raised inside still
    propagate, and are printed after the descriptor is restored."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
