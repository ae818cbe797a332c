"""Calibration and evaluation data, brought to one shape: arrays per model input, labels.

Users hand data over in many forms (arrays, `(x, y)` tuples, dicts keyed by input name,
`tf.data` datasets, `.npz` files); everything downstream sees an `ArrayData`.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .errors import TunerInputError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive's first bytes (the second: empty)


@dataclass
class ArrayData:
    """`x`: one array per model input (same first dimension); `y`: labels or None (for a model
    with several outputs, a list with one entry per output, None where it has none).

    `source` says where the data came from, for messages ("evaluation data file eval.npz");
    `npy`: read from a .npy file, which holds a single array and so never labels; `named`: the
    other arrays of an .npz or dict (labels named after outputs, resolved in `outputs.py`).
    """

    x: list[np.ndarray]
    y: np.ndarray | list | None = None
    source: str = ""
    npy: bool = False
    named: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x[0].shape[0])

    def take(self, n: int) -> "ArrayData":
        y = self.y
        if isinstance(y, list):
            y = [None if a is None else a[:n] for a in y]
        elif y is not None:
            y = y[:n]
        return ArrayData([a[:n] for a in self.x], y, self.source, self.npy,
                         {k: v[:n] for k, v in self.named.items()})

    def require_labels(self, what: str = "data") -> None:
        """Refuse data without labels (y), saying how to add them."""
        if self.y is None:
            raise _no_labels(self.source or what, self.npy)

    def for_calibration(self, batch_size: int) -> "ArrayData":
        """Samples for min/max calibration in batches of one size: TFLite's calibrator sizes a
        model with several inputs once, for its first batch (a smaller last batch then fails
        to run), so that batch is filled up with the first samples again, which leaves every
        min and max as it was. A one-input model's data as it is."""
        short = -len(self) % batch_size
        if len(self.x) == 1 or short == 0 or len(self) < batch_size:
            return self
        return ArrayData([np.concatenate([a, a[:short]]) for a in self.x], None, self.source, self.npy)

    def batches(self, batch_size: int) -> Iterator[list[np.ndarray]]:
        for start in range(0, len(self), batch_size):
            yield [a[start:start + batch_size] for a in self.x]


def _no_labels(where: str, npy: bool) -> TunerInputError:
    if npy:
        return TunerInputError(
            f"{where} is a .npy file, which holds one array (the inputs) and no labels; save "
            "inputs and labels together in an .npz: numpy.savez(path, x=x, y=y)")
    return TunerInputError(f"{where} has no labels (y)")


def file_kind(path: str, what: str, labels_needed: bool = False) -> str:
    """The file's format from its first bytes (not its name): "npz" or "npy". Anything else is
    refused, and so is a .npy file where labels are needed. Reads no arrays: cheap and free of
    TensorFlow, so that the command line can refuse a wrong file before loading it."""
    where = f"{what} file {path}"
    if not os.path.exists(path):
        raise TunerInputError(f"{where} does not exist")
    if os.path.isdir(path):
        raise TunerInputError(f"{where} is a directory, expected an .npz file")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(NPY_MAGIC):
        if labels_needed:
            raise _no_labels(where, npy=True)
        return "npy"
    if head.startswith(ZIP_MAGICS):
        return "npz"
    found = "it is empty" if not head else f"it starts with {head!r}"
    raise TunerInputError(
        f"{where} is not an .npz file: an .npz is a zip archive of arrays (numpy.savez writes "
        f"one), {found}")


def load_npz(path: str, input_names: Sequence[str], what: str) -> ArrayData:
    """Read `x` (or arrays named after the model's inputs) and optional `y` from an .npz file,
    or the inputs of a single-input model from a .npy file."""
    where = f"{what} file {path}"
    try:
        if file_kind(path, what) == "npy":
            if len(input_names) > 1:
                raise TunerInputError(
                    f"{where} is a .npy file, which holds one array; the model takes "
                    f"{len(input_names)} inputs: save an .npz with arrays {', '.join(input_names)}")
            return ArrayData([np.load(path, allow_pickle=False)], None, where, npy=True)
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except zipfile.BadZipFile as err:
        raise TunerInputError(f"{where} is a damaged zip archive ({err})") from None
    except (OSError, ValueError) as err:
        raise TunerInputError(f"{where} is not a readable .npz file ({err})") from None
    return _from_mapping(arrays, input_names, where)


def _from_mapping(arrays: Mapping[str, Any], input_names: Sequence[str], where: str) -> ArrayData:
    y = arrays.get("y")
    if len(input_names) == 1 and "x" in arrays:
        x, used = [arrays["x"]], {"x"}
    elif all(name in arrays for name in input_names):
        x, used = [arrays[name] for name in input_names], set(input_names)
    elif len(input_names) == 1:
        raise TunerInputError(f"{where} has no array named x (found: {', '.join(arrays) or 'none'})")
    else:
        missing = [n for n in input_names if n not in arrays]
        raise TunerInputError(
            f"{where} must hold one array per model input, named {', '.join(input_names)}; "
            f"missing {', '.join(missing)}")
    named = {str(k): np.asarray(v) for k, v in arrays.items() if k not in used and k not in ("x", "y")}
    return ArrayData([np.asarray(a) for a in x], None if y is None else np.asarray(y), where, named=named)


def as_array_data(data: Any, input_names: Sequence[str], what: str) -> ArrayData:
    """Bring `data` (see module docstring) to an `ArrayData` for a model with these inputs."""
    if isinstance(data, ArrayData):
        return data
    if isinstance(data, (str, os.PathLike)):
        return load_npz(os.fspath(data), input_names, what)
    if isinstance(data, np.ndarray):
        return ArrayData([data], source=what)
    if isinstance(data, Mapping):
        return _from_mapping(data, input_names, what)
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
        xs = _input_list(x, input_names, what)
        if isinstance(y, Mapping):  # labels by output name
            return ArrayData(xs, None, what, named={str(k): np.asarray(v) for k, v in y.items()})
        if isinstance(y, (list, tuple)) and y and all(isinstance(a, np.ndarray) for a in y):
            return ArrayData(xs, [np.asarray(a) for a in y], what)  # labels by output position
        return ArrayData(xs, None if y is None else np.asarray(y), what)
    if isinstance(data, list) and data and all(isinstance(a, np.ndarray) for a in data) \
            and len(data) == len(input_names) > 1:
        return ArrayData(list(data), source=what)
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
    return ArrayData(x_cat, np.concatenate(ys) if ys else None, what)


def _numpy(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: np.asarray(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [np.asarray(v) for v in x]
    return np.asarray(x)


def check_against_model(data: ArrayData, input_shapes: Sequence[tuple], what: str,
                        input_dtypes: Sequence[Any] | None = None) -> ArrayData:
    """Cast each input to the model's dtype (float32 for a float input: an int32 or uint8 input
    keeps its integers) and check every input array's sample shape against the model's, and
    that inputs and labels are finite (one NaN turns a calibrated range, or the accuracy, into
    nonsense without any error)."""
    where = data.source or what
    if len(data.x) != len(input_shapes):
        raise TunerInputError(f"{where} has {len(data.x)} input arrays, the model takes {len(input_shapes)}")
    dtypes = list(input_dtypes) if input_dtypes is not None else [np.float32] * len(input_shapes)
    out = []
    for i, (arr, shape, dtype) in enumerate(zip(data.x, input_shapes, dtypes)):
        expected = tuple(shape[1:])
        got = tuple(arr.shape[1:])
        fits = len(got) == len(expected) and all(e is None or e == g for e, g in zip(expected, got))
        name = f" (input {i})" if len(input_shapes) > 1 else ""
        if not fits:
            pretty = "(N, " + ", ".join("?" if e is None else str(e) for e in expected) + ")"
            raise TunerInputError(
                f"{where}{name} has samples of shape {got}, the model expects {pretty}")
        if arr.shape[0] != len(data):
            raise TunerInputError(f"{where}: input arrays differ in their number of samples")
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            out.append(_as_integers(arr, dtype, f"{where}{name}"))
            continue
        try:
            with np.errstate(over="ignore"):  # a value too big for float32 is refused just below
                arr = np.asarray(arr, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise TunerInputError(f"{where}{name}: the inputs are not numbers ({err})") from None
        _check_finite(arr, f"{where}{name}: the inputs")
        out.append(arr)
    if len(out[0]) == 0:
        raise TunerInputError(f"{where} holds no samples")
    labels = data.y if isinstance(data.y, list) else [data.y]
    for k, y in enumerate(labels):
        if y is None:
            continue
        which = f"y[{k}]" if isinstance(data.y, list) else "y"
        if len(y) != len(out[0]):
            raise TunerInputError(f"{where}: {which} has {len(y)} labels for {len(out[0])} samples")
        if np.issubdtype(np.asarray(y).dtype, np.number):
            _check_finite(np.asarray(y), f"{where}: the labels ({which})")
    return ArrayData(out, data.y, data.source, data.npy, data.named)


def _as_integers(arr: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    """An integer (or bool) model input: whole numbers in the dtype's range, cast to it."""
    arr = np.asarray(arr)
    if arr.dtype == dtype:
        return arr
    if arr.dtype.kind not in "biuf":
        raise TunerInputError(f"{where}: the inputs are not numbers (dtype {arr.dtype})")
    if dtype.kind == "b":
        return arr.astype(bool)
    info = np.iinfo(dtype)
    bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (arr < info.min) | (arr > info.max) \
        if arr.dtype.kind == "f" else (arr < info.min) | (arr > info.max)
    if bad.any():
        first = int(np.argmax(bad.reshape(len(arr), -1).any(axis=1)))
        raise TunerInputError(
            f"{where}: the model's input is {dtype.name}, the data holds values that are not whole "
            f"numbers in {info.min}..{info.max} ({float(arr.reshape(-1)[int(np.argmax(bad.reshape(-1)))]):g}, "
            f"sample {first})")
    return arr.astype(dtype)


def _check_finite(values: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.argmax(bad.reshape(len(values), -1).any(axis=1)))
        raise TunerInputError(
            f"{what} hold NaN or infinity ({int(bad.sum())} of {values.size} values, the first in "
            f"sample {first})")
