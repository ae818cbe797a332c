"""Evaluation on the CPU with the LiteRT interpreter: accuracy, and latency from a benchmark loop."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from .data import ArrayData
from .errors import TunerInputError


class TFLiteModel:
    """A converted model as a callable: a batch of inputs -> outputs (numpy).

    This is what a user's `eval_func` receives; `tflite_model` holds the TFLite bytes.
    """

    def __init__(self, tflite_model: bytes, num_threads: int = 1):
        self.tflite_model = tflite_model
        self.num_threads = num_threads
        self._interpreter = Interpreter(model_content=tflite_model, num_threads=num_threads)
        self._inputs = sorted(self._interpreter.get_input_details(), key=lambda d: d["index"])
        self._outputs = sorted(self._interpreter.get_output_details(), key=lambda d: d["index"])
        self._batch = None

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
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
        self._resize(int(np.shape(inputs[0])[0]))
        for detail, value in zip(self._inputs, inputs):
            self._interpreter.set_tensor(detail["index"], np.asarray(value, dtype=detail["dtype"]))
        self._interpreter.invoke()
        outs = [self._interpreter.get_tensor(d["index"]) for d in self._outputs]
        return outs[0] if len(outs) == 1 else outs

    def predict(self, data: ArrayData, batch_size: int) -> np.ndarray | list[np.ndarray]:
        parts = [self(batch) for batch in data.batches(batch_size)]
        if isinstance(parts[0], list):
            return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
        return np.concatenate(parts)

    def latency_ms(self, warmup: int, iterations: int) -> float:
        """Median time of one invoke at batch 1, after `warmup` invokes, in milliseconds."""
        self._resize(1)
        for detail in self._inputs:
            sample = np.zeros(detail["shape"], dtype=detail["dtype"])
            self._interpreter.set_tensor(detail["index"], sample)
        invoke = self._interpreter.invoke
        for _ in range(warmup):
            invoke()
        times = np.empty(iterations)
        clock = time.perf_counter
        for i in range(iterations):
            start = clock()
            invoke()
            times[i] = clock() - start
        return float(np.median(times) * 1e3)


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
        top = np.argsort(-pred, axis=-1)[..., :k]
        return float(np.mean(np.any(top == y.reshape(-1, 1), axis=-1)))
    return topk


def make_metric(name: str, topk: int = 1) -> Metric:
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
    raise ValueError(name)


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    latency_ms: float
    seconds: float


class Evaluator:
    """Scores a TFLite model: accuracy from the eval data + metric or the user's `eval_func`,
    latency from `TFLiteModel.latency_ms`."""

    def __init__(self, metric: Metric, eval_data: ArrayData | None = None,
                 eval_func: Callable | None = None, batch_size: int = 256,
                 warmup: int = 20, iterations: int = 300, num_threads: int = 1):
        if eval_data is None and eval_func is None:
            raise TunerInputError("give evaluation data (eval_data) or an eval_func")
        if eval_func is None and eval_data.y is None:
            raise TunerInputError("evaluation data has no labels (y)")
        self.metric = metric
        self.eval_data = eval_data
        self.eval_func = eval_func
        self.batch_size = batch_size
        self.warmup = warmup
        self.iterations = iterations
        self.num_threads = num_threads

    def accuracy(self, model: TFLiteModel) -> float:
        if self.eval_func is not None:
            value = self.eval_func(model)
        else:
            value = self.metric.compute(model.predict(self.eval_data, self.batch_size), self.eval_data.y)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"the accuracy must be a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ValueError(f"the accuracy is {value}")
        return float(value)

    def evaluate(self, tflite_model: bytes) -> Evaluation:
        start = time.perf_counter()
        model = TFLiteModel(tflite_model, self.num_threads)
        accuracy = self.accuracy(model)
        latency = model.latency_ms(self.warmup, self.iterations)
        return Evaluation(accuracy, latency, time.perf_counter() - start)

    def check_labels(self, output_shapes: list[tuple]) -> None:
        """Refuse evaluation labels that cannot match the model's output."""
        if self.eval_func is not None or self.eval_data is None:
            return
        y = np.asarray(self.eval_data.y)
        out = output_shapes[0]
        width = out[-1] if len(out) > 1 else 1
        if self.metric.name.startswith("top"):
            if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
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
