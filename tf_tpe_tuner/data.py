"""Calibration and evaluation data, brought to one shape: arrays per model input, labels.

Users hand data over in many forms (arrays, `(x, y)` tuples, dicts keyed by input name,
`tf.data` datasets, `.npz` files); everything downstream sees an `ArrayData`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .errors import TunerInputError


@dataclass
class ArrayData:
    """`x`: one array per model input (same first dimension); `y`: labels or None."""

    x: list[np.ndarray]
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.x[0].shape[0])

    def take(self, n: int) -> "ArrayData":
        return ArrayData([a[:n] for a in self.x], None if self.y is None else self.y[:n])

    def batches(self, batch_size: int) -> Iterator[list[np.ndarray]]:
        for start in range(0, len(self), batch_size):
            yield [a[start:start + batch_size] for a in self.x]


def load_npz(path: str, input_names: Sequence[str], what: str) -> ArrayData:
    """Read `x` (or arrays named after the model's inputs) and optional `y` from an .npz file."""
    if not os.path.exists(path):
        raise TunerInputError(f"{what} file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise TunerInputError(f"{what} file {path} is not a readable .npz file ({err})") from None
    return _from_mapping(arrays, input_names, f"{what} file {path}")


def _from_mapping(arrays: Mapping[str, Any], input_names: Sequence[str], where: str) -> ArrayData:
    y = arrays.get("y")
    if len(input_names) == 1 and "x" in arrays:
        x = [arrays["x"]]
    elif all(name in arrays for name in input_names):
        x = [arrays[name] for name in input_names]
    elif len(input_names) == 1:
        raise TunerInputError(f"{where} has no array named x (found: {', '.join(arrays) or 'none'})")
    else:
        missing = [n for n in input_names if n not in arrays]
        raise TunerInputError(
            f"{where} must hold one array per model input, named {', '.join(input_names)}; "
            f"missing {', '.join(missing)}")
    return ArrayData([np.asarray(a) for a in x], None if y is None else np.asarray(y))


def as_array_data(data: Any, input_names: Sequence[str], what: str) -> ArrayData:
    """Bring `data` (see module docstring) to an `ArrayData` for a model with these inputs."""
    if isinstance(data, ArrayData):
        return data
    if isinstance(data, (str, os.PathLike)):
        return load_npz(os.fspath(data), input_names, what)
    if isinstance(data, np.ndarray):
        return ArrayData([data])
    if isinstance(data, Mapping):
        return _from_mapping(data, input_names, what)
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
        xs = _input_list(x, input_names, what)
        return ArrayData(xs, None if y is None else np.asarray(y))
    if isinstance(data, list) and data and all(isinstance(a, np.ndarray) for a in data) \
            and len(data) == len(input_names) > 1:
        return ArrayData(list(data))
    if hasattr(data, "__iter__"):
        return _from_batches(data, input_names, what)
    raise TunerInputError(
        f"{what}: expected an array, (x, y), a dict of arrays, a dataset of batches or an .npz "
        f"path, got {type(data).__name__}")


def _input_list(x: Any, input_names: Sequence[str], what: str) -> list[np.ndarray]:
    if isinstance(x, Mapping):
        missing = [n for n in input_names if n not in x]
        if missing:
            raise TunerInputError(f"{what}: missing input arrays {', '.join(missing)}")
        return [np.asarray(x[n]) for n in input_names]
    if isinstance(x, (list, tuple)) and len(input_names) > 1:
        return [np.asarray(a) for a in x]
    return [np.asarray(x)]


def _from_batches(batches: Any, input_names: Sequence[str], what: str) -> ArrayData:
    """A tf.data.Dataset or any iterable of batches `x` or `(x, y)`."""
    xs: list[list[np.ndarray]] = []
    ys: list[np.ndarray] = []
    for batch in batches:
        if isinstance(batch, tuple) and len(batch) == 2:
            x, y = batch
            ys.append(np.asarray(y))
        else:
            x = batch
        xs.append(_input_list(_numpy(x), input_names, what))
    if not xs:
        raise TunerInputError(f"{what} is empty")
    if ys and len(ys) != len(xs):
        raise TunerInputError(f"{what}: some batches have labels and some do not")
    x_cat = [np.concatenate([b[i] for b in xs]) for i in range(len(xs[0]))]
    return ArrayData(x_cat, np.concatenate(ys) if ys else None)


def _numpy(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: np.asarray(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [np.asarray(v) for v in x]
    return np.asarray(x)


def check_against_model(data: ArrayData, input_shapes: Sequence[tuple], what: str) -> ArrayData:
    """Cast to float32 and check every input array's sample shape against the model's."""
    if len(data.x) != len(input_shapes):
        raise TunerInputError(f"{what} has {len(data.x)} input arrays, the model takes {len(input_shapes)}")
    out = []
    for i, (arr, shape) in enumerate(zip(data.x, input_shapes)):
        expected = tuple(shape[1:])
        got = tuple(arr.shape[1:])
        fits = len(got) == len(expected) and all(e is None or e == g for e, g in zip(expected, got))
        if not fits:
            name = f" (input {i})" if len(input_shapes) > 1 else ""
            pretty = "(N, " + ", ".join("?" if e is None else str(e) for e in expected) + ")"
            raise TunerInputError(
                f"{what}{name} has samples of shape {got}, the model expects {pretty}")
        if arr.shape[0] != len(data):
            raise TunerInputError(f"{what}: input arrays differ in their number of samples")
        out.append(np.asarray(arr, dtype=np.float32))
    if len(out[0]) == 0:
        raise TunerInputError(f"{what} holds no samples")
    if data.y is not None and len(data.y) != len(out[0]):
        raise TunerInputError(f"{what}: y has {len(data.y)} labels for {len(out[0])} samples")
    return ArrayData(out, data.y)
