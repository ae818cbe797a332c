"""Evaluation on the CPU with the LiteRT interpreter: accuracy, and latency from a benchmark loop."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from .data import ArrayData
from .errors import TunerInputError, UserCodeError
from .history import LATENCY_FUNC, LATENCY_SIDE_BY_SIDE

LATENCY_ROUNDS = 10  # interleaved blocks per latency ratio (see TFLiteModel.latency_ratio)
LATENCY_MIN_BLOCK_S = 0.001  # and their shortest duration


class TFLiteModel:
    """A converted model as a callable: a batch of inputs -> outputs (numpy).

    This is what a user's `eval_func` receives; `tflite_model` holds the TFLite bytes.
    """

    def __init__(self, tflite_model: bytes, num_threads: int = 1):
        self.tflite_model = tflite_model
        self.num_threads = num_threads
        self._interpreter = Interpreter(model_content=tflite_model, num_threads=num_threads)
        # in the model's own order (the subgraph's), which tensor indices need not follow
        self._inputs = list(self._interpreter.get_input_details())
        self._outputs = list(self._interpreter.get_output_details())
        self._batch = None
        # A batch the model fixes (no dynamic first dimension in an input's shape signature) is
        # never resized: such models can hold it inside the graph and compute garbage at another.
        fixed = [int(d["shape"][0]) for d in self._inputs
                 if len(d["shape_signature"]) and int(d["shape_signature"][0]) != -1]
        self.fixed_batch: int | None = min(fixed) if fixed else None

    def _resize(self, batch: int) -> None:
        if self.fixed_batch is not None:
            batch = self.fixed_batch
            if self._batch is None:
                self._interpreter.allocate_tensors()
        elif batch != self._batch:
            for detail in self._inputs:
                shape = list(detail["shape_signature"])
                shape[0] = batch
                self._interpreter.resize_tensor_input(detail["index"], shape)
            self._interpreter.allocate_tensors()
        self._batch = batch

    def __call__(self, *inputs) -> np.ndarray | list[np.ndarray]:
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            inputs = tuple(inputs[0])
        if len(inputs) != len(self._inputs):
            raise ValueError(f"the model takes {len(self._inputs)} inputs, got {len(inputs)}")
        n = int(np.shape(inputs[0])[0])
        if self.fixed_batch is not None and n != self.fixed_batch:  # batches of its own size
            from .batching import fixed_batches

            parts = [self._run(part) for part in fixed_batches([np.asarray(a) for a in inputs], self.fixed_batch)]
            outs = [np.concatenate([p[k] for p in parts])[:n] for k in range(len(parts[0]))]
        else:
            outs = self._run(inputs)
        return outs[0] if len(outs) == 1 else outs

    def _run(self, inputs) -> list[np.ndarray]:
        """One invoke on a batch the interpreter can take."""
        self._resize(int(np.shape(inputs[0])[0]))
        for detail, value in zip(self._inputs, inputs):
            self._interpreter.set_tensor(detail["index"], np.asarray(value, dtype=detail["dtype"]))
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(d["index"]) for d in self._outputs]

    def predict(self, data: ArrayData, batch_size: int) -> np.ndarray | list[np.ndarray]:
        parts = [self(batch) for batch in data.batches(batch_size)]
        if isinstance(parts[0], list):
            return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
        return np.concatenate(parts)

    def _ready_for_latency(self) -> Callable[[], None]:
        """Batch 1, zero inputs; returns the interpreter's invoke."""
        self._resize(1)
        for detail in self._inputs:
            sample = np.zeros(detail["shape"], dtype=detail["dtype"])
            self._interpreter.set_tensor(detail["index"], sample)
        return self._interpreter.invoke

    @staticmethod
    def _block_median(invoke: Callable[[], None], n: int) -> float:
        times = np.empty(n)
        clock = time.perf_counter
        for i in range(n):
            start = clock()
            invoke()
            times[i] = clock() - start
        return float(np.median(times))

    def latency_ms(self, warmup: int, iterations: int) -> float:
        """Median time of one invoke at batch 1, after `warmup` invokes, in milliseconds."""
        invoke = self._ready_for_latency()
        for _ in range(warmup):
            invoke()
        return self._block_median(invoke, iterations) * 1e3

    def latency_ratio(self, reference: "TFLiteModel", warmup: int, iterations: int,
                      rounds: int = LATENCY_ROUNDS) -> float:
        """This model's latency / `reference`'s, the two measured in alternation.

        `rounds` times: a block of `iterations // rounds` invokes of each model (more if that
        block would last under `LATENCY_MIN_BLOCK_S`), in turn (which one goes first
        alternates); the ratio of the two block medians. Returns the median of
        these ratios. A change of machine load during the measurement hits both models of a
        round alike, so it cancels out of the ratio, where it moves a plain median.
        """
        mine, theirs = self._ready_for_latency(), reference._ready_for_latency()
        clock = time.perf_counter
        start, pairs = clock(), 0
        # warm-up: `warmup` invokes in all, and at least as long as two blocks (a fresh
        # interpreter's first invokes are slow, and tiny models run 10 invokes in 0.1 ms)
        while pairs < max(1, warmup // 2) or clock() - start < 2 * LATENCY_MIN_BLOCK_S:
            mine()
            theirs()
            pairs += 1
        pair_s = (clock() - start) / pairs
        # A block shorter than ~1 ms (tiny models) is mostly timer and scheduler noise: such
        # models get more invokes per block, which costs little since they are fast.
        per_block = max(5, iterations // rounds, int(math.ceil(LATENCY_MIN_BLOCK_S / max(pair_s / 2, 1e-7))))
        ratios = []
        for r in range(rounds):
            if r % 2:
                b = self._block_median(theirs, per_block)
                a = self._block_median(mine, per_block)
            else:
                a = self._block_median(mine, per_block)
                b = self._block_median(theirs, per_block)
            ratios.append(a / b)
        return float(np.median(ratios))


def _finite_number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{what} is {value}")
    return float(value)


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    compute: Callable[[np.ndarray, np.ndarray], float]


def _topk(k: int) -> Callable:
    def topk(pred, y):
        pred = np.asarray(pred)
        y = np.asarray(y)
        if pred.ndim == 1 or pred.shape[-1] == 1:  # one sigmoid output: threshold at 0.5
            return float(np.mean((pred.reshape(-1) > 0.5).astype(int) == y.reshape(-1).astype(int)))
        if y.ndim == pred.ndim and y.shape[-1] == pred.shape[-1]:  # one-hot labels
            y = np.argmax(y, axis=-1)
        # stable: int8 outputs tie often (1/256 steps); break ties like argmax, by index
        top = np.argsort(-pred, axis=-1, kind="stable")[..., :k]
        return float(np.mean(np.any(top == y.reshape(-1, 1), axis=-1)))
    return topk


def _agreement(threshold: float) -> Callable:
    """Share of samples whose top class is the labels' (the float model's outputs, say): argmax
    against argmax, or, for a one-value output, the same side of `threshold`."""
    def agreement(pred, y):
        pred = np.asarray(pred, dtype=np.float64).reshape(len(y), -1)
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if pred.shape[1] == 1:
            return float(np.mean((pred[:, 0] > threshold) == (y[:, 0] > threshold)))
        top = np.argsort(-pred, axis=-1, kind="stable")[:, 0]  # ties broken by index, as topk does
        return float(np.mean(top == np.argsort(-y, axis=-1, kind="stable")[:, 0]))
    return agreement


def spread(y: np.ndarray) -> float:
    """What NRMSE divides by: the standard deviation of all the labels' values."""
    return float(np.std(np.asarray(y, dtype=np.float64)))


def make_metric(name: str, topk: int = 1, threshold: float = 0.5) -> Metric:
    def diff(pred, y):
        return np.asarray(pred, dtype=np.float64).reshape(len(y), -1) - \
            np.asarray(y, dtype=np.float64).reshape(len(y), -1)

    if name == "topk":
        return Metric(f"top{topk}", True, _topk(topk))
    if name == "mse":
        return Metric("MSE", False, lambda p, y: float(np.mean(diff(p, y) ** 2)))
    if name == "rmse":
        return Metric("RMSE", False, lambda p, y: float(np.sqrt(np.mean(diff(p, y) ** 2))))
    if name == "mae":
        return Metric("MAE", False, lambda p, y: float(np.mean(np.abs(diff(p, y)))))
    if name == "agreement":
        return Metric("agreement", True, _agreement(threshold))
    if name == "nrmse":  # RMSE in units of the labels' spread: one scale for every output
        return Metric("NRMSE", False, lambda p, y: float(np.sqrt(np.mean(diff(p, y) ** 2))) / spread(y))
    raise ValueError(name)


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    latency_ms: float
    seconds: float
    latency_ratio: float | None = None  # latency / the reference's, when one is set
    outputs: dict[str, float] | None = None  # per scored output, for a model with several


class Evaluator:
    """Scores a TFLite model: accuracy from the eval data + metric or the user's `eval_func`,
    latency from `TFLiteModel.latency_ms`."""

    def __init__(self, metric: Metric, eval_data: ArrayData | None = None,
                 eval_func: Callable | None = None, batch_size: int = 256,
                 warmup: int = 20, iterations: int = 300, num_threads: int = 1,
                 latency_func: Callable[[bytes], float] | None = None, scoring=None):
        if eval_data is None and eval_func is None:
            raise TunerInputError("give evaluation data (eval_data) or an eval_func")
        if eval_func is None:
            eval_data.require_labels("evaluation data")
        self.metric = metric
        self.eval_data = eval_data
        self.eval_func = eval_func
        self.batch_size = batch_size
        self.warmup = warmup
        self.iterations = iterations
        self.num_threads = num_threads
        # latency_func(tflite_bytes) -> seconds replaces the built-in benchmark loop, for
        # users who measure on their deployment device.
        self.latency_func = latency_func
        # outputs.Scoring, for a model with several outputs: labels per output, one number from them
        self.scoring = None if scoring is None or scoring.single else scoring
        self._reference = self._reference_bytes = self.reference_ms = None  # set_latency_reference

    def accuracy(self, model: TFLiteModel) -> float:
        """The metric on the evaluation data, or `eval_func(model)`: what the user's function
        raises or returns that is not a finite number is a `UserCodeError`."""
        return self.scores(model)[0]

    def scores(self, model: TFLiteModel) -> tuple[float, dict[str, float] | None]:
        """(`accuracy`, the value of each scored output or None for a one-output model)."""
        if self.eval_func is None and self.scoring is not None:
            value, per_output = self.scoring.score(model, model.predict(self.eval_data, self.batch_size),
                                                   self.eval_data.y)
            return _finite_number(value, "the accuracy"), per_output
        if self.eval_func is None:
            return _finite_number(self.metric.compute(model.predict(self.eval_data, self.batch_size),
                                                      self.eval_data.y), "the accuracy"), None
        try:
            value = self.eval_func(model)
        except Exception as err:
            raise UserCodeError(f"eval_func raised {type(err).__name__}: {err}") from err
        try:
            return _finite_number(value, "eval_func's accuracy"), None
        except ValueError as err:
            raise UserCodeError(str(err)) from None

    def set_latency_reference(self, tflite_model: bytes | None) -> float | None:
        """Measure every later latency as a ratio to this model (the fp32 one).

        The reference's own latency (`reference_ms`) is measured now: the median of three
        `latency_ms` runs, or `latency_func` once. A later model's ratio is measured side by side
        (invokes alternated with the reference's, so that a change of load cancels out), or is
        `latency_func`'s figure over the reference's; its milliseconds are ratio x reference_ms.
        Returns `reference_ms`; None clears the reference.
        """
        self._reference = self._reference_bytes = self.reference_ms = None
        if tflite_model is None:
            return None
        reference = TFLiteModel(tflite_model, self.num_threads)
        if self.latency_func is not None:
            self.reference_ms = self.latency_ms(reference)
        else:
            self.reference_ms = float(np.median(
                [reference.latency_ms(self.warmup, self.iterations) for _ in range(3)]))
        self._reference, self._reference_bytes = reference, tflite_model
        return self.reference_ms

    @property
    def reference_bytes(self) -> bytes | None:
        """The fp32 model latency is measured against (`set_latency_reference`)."""
        return self._reference_bytes

    @property
    def latency_source(self) -> str:
        return LATENCY_FUNC if self.latency_func is not None else LATENCY_SIDE_BY_SIDE

    def latency_noise(self, repeats: int = 5) -> float:
        """How far the fp32 model's ratio to a fresh copy of itself strays from 1 (the median of
        `repeats` side-by-side measurements, each with a fresh copy: one disturbed reading does
        not set the noise of the whole run): differences below it are noise. 0 with a
        latency_func, whose precision the tuner cannot know."""
        if self._reference is None or self.latency_func is not None:
            return 0.0
        return float(np.median([abs(TFLiteModel(self._reference_bytes, self.num_threads).latency_ratio(
            self._reference, self.warmup, self.iterations) - 1.0) for _ in range(repeats)]))

    def _latency(self, model: TFLiteModel) -> tuple[float, float | None]:
        """(milliseconds, ratio to the reference or None when no reference is set)."""
        if self._reference is None:
            return self.latency_ms(model), None
        if model.tflite_model is self._reference_bytes or model.tflite_model == self._reference_bytes:
            return self.reference_ms, 1.0
        if self.latency_func is not None:
            ms = self.latency_ms(model)
            return ms, ms / self.reference_ms
        ratio = model.latency_ratio(self._reference, self.warmup, self.iterations)
        return ratio * self.reference_ms, ratio

    def latency_ratio_of(self, model: TFLiteModel) -> float:
        """`model`'s latency as a ratio to the reference's, measured side by side."""
        return self._latency(model)[1]

    def latency_ratio_between(self, model: TFLiteModel, anchor: TFLiteModel) -> float:
        """`model`'s latency as a ratio to `anchor`'s: side by side, or `latency_func`'s two
        figures."""
        if self.latency_func is not None:
            return self.latency_ms(model) / self.latency_ms(anchor)
        return model.latency_ratio(anchor, self.warmup, self.iterations)

    def latency_ms(self, model: TFLiteModel) -> float:
        """Milliseconds per single-sample inference: `latency_func`'s, else the benchmark's
        (alone; `evaluate` measures against the reference when one is set)."""
        if self.latency_func is None:
            return model.latency_ms(self.warmup, self.iterations)
        try:
            seconds = self.latency_func(model.tflite_model)
        except Exception as err:
            raise UserCodeError(f"latency_func raised {type(err).__name__}: {err}") from err
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.number)) \
                or not math.isfinite(float(seconds)) or seconds <= 0:
            raise UserCodeError(f"latency_func must return a time in seconds > 0, got {seconds!r}")
        return float(seconds) * 1e3

    def evaluate(self, tflite_model: bytes) -> Evaluation:
        start = time.perf_counter()
        model = TFLiteModel(tflite_model, self.num_threads)
        accuracy, per_output = self.scores(model)
        latency, ratio = self._latency(model)
        return Evaluation(accuracy, latency, time.perf_counter() - start, ratio, per_output)

    def check_labels(self, output_shapes: list[tuple], data: ArrayData | None = None) -> None:
        """Refuse labels that cannot match the model's output: those of the evaluation data, or
        of `data` (test data, say) when given."""
        if data is None:
            if self.eval_func is not None or self.eval_data is None:
                return
            data = self.eval_data
        where = data.source or "evaluation data"
        y = np.asarray(data.y)
        out = output_shapes[0]
        width = out[-1] if len(out) > 1 else 1
        if self.metric.name.startswith("top"):
            if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
                _check_class_indices(y, width, where)
                if width and width > 1 and (y.min() < 0 or y.max() >= width):
                    raise TunerInputError(
                        f"evaluation labels range over {int(y.min())}..{int(y.max())} but the model "
                        f"has {width} outputs")
            elif y.shape[-1] != width:
                raise TunerInputError(
                    f"evaluation labels have shape {y.shape[1:]}, the model outputs {out[1:]}")
        elif y.reshape(len(y), -1).shape[1] != int(np.prod([d for d in out[1:] if d])):
            raise TunerInputError(
                f"evaluation targets have shape {y.shape[1:]}, the model outputs {out[1:]}")


def _check_class_indices(y: np.ndarray, width: int | None, where: str) -> None:
    """Labels of shape (N,) or (N, 1) for a topk metric are class indices: whole numbers.
    (Floats such as 0.3 would be truncated to a class and score nonsense without an error.)"""
    if y.dtype.kind not in "biuf":
        raise TunerInputError(f"{where}: the labels (y) are not numbers (dtype {y.dtype})")
    if y.dtype.kind != "f":
        return
    fractional = y != np.round(y)
    if fractional.any():
        first = int(np.argmax(fractional.reshape(-1)))
        expected = (f"class indices 0..{width - 1}, or one-hot or soft labels of shape (N, {width})"
                    if width and width > 1 else "class indices 0 or 1 (the model has one output)")
        raise TunerInputError(
            f"{where}: the labels (y) are floats that are not whole numbers ({y.reshape(-1)[first]:g} "
            f"in sample {first}); the topk metric needs {expected}")
