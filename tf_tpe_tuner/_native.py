"""Quieting what TensorFlow's and LiteRT's C++ code prints straight to file descriptor 2.

At start-up TensorFlow prints oneDNN and CUDA lines ("Could not find cuda drivers",
`E0000 ... cuInit`) that no value of TF_CPP_MIN_LOG_LEVEL stops, and LiteRT prints "Created
TensorFlow Lite XNNPACK delegate for CPU" when the first interpreter allocates its tensors; the
quantizer prints "fully_quantize: 0, ..." on every call. None of it is Python output, and it
would bury the tool's own messages.

The rule: the package sets TF_CPP_MIN_LOG_LEVEL=2 (warnings and info hidden) when it is unset,
and hides the start-up lines. A TF_CPP_MIN_LOG_LEVEL the user sets wins: TensorFlow's own
filtering then decides, and nothing is hidden at start-up.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LOG_LEVEL = "2"
# Set beside LOG_LEVEL when the package chose its value, so that child processes (the
# examples' and tests' command lines, Ray workers) do not take it for the user's.
_CHOSEN_BY_PACKAGE = "_TF_TPE_TUNER_DEFAULT_LOG_LEVEL"


def set_default_log_level() -> None:
    """TF_CPP_MIN_LOG_LEVEL=2 unless it is set already (before TensorFlow is imported)."""
    if LOG_LEVEL not in os.environ:
        os.environ[LOG_LEVEL] = os.environ[_CHOSEN_BY_PACKAGE] = DEFAULT_LOG_LEVEL


def user_log_level() -> str | None:
    """The TF_CPP_MIN_LOG_LEVEL the user set, or None (unset, or the package's default)."""
    value = os.environ.get(LOG_LEVEL)
    if value is None or os.environ.get(_CHOSEN_BY_PACKAGE) == value:
        return None
    return value


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null meanwhile. Python exceptions raised inside still
    propagate, and are printed after the descriptor is restored."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a daemon): nothing to quiet
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def start_up_silenced() -> Iterator[None]:
    """`native_stderr_silenced()` for loading TensorFlow, unless the user set a log level."""
    if user_log_level() is not None:
        yield
        return
    with native_stderr_silenced():
        yield


def _one_add_model() -> bytes:
    """The smallest TFLite model XNNPACK takes on: y = x + x, one float."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    def tensor(name: bytes):
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = [1], schema.TensorType.FLOAT32, 0, name
        return t

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    code.version = 1
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 0], [1]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = [tensor(b"x"), tensor(b"y")], [0], [1], [op]
    model = schema.ModelT()
    model.version, model.buffers, model.subgraphs, model.operatorCodes = 3, [schema.BufferT()], [graph], [code]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def greet_litert() -> None:
    """Have LiteRT print its once-per-process "Created TensorFlow Lite XNNPACK delegate" line
    now (inside `start_up_silenced`), by allocating a one-op model, rather than at the first
    trial. Best effort: if this LiteRT build differs, the line is merely printed later."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        Interpreter(model_content=_one_add_model()).allocate_tensors()
    except (ImportError, AttributeError, TypeError, ValueError, RuntimeError):
        pass
