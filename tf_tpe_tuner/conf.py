"""The yaml conf: read with `yaml.safe_load`, validated up front, defaults filled in.

Field names follow Intel Neural Compressor 1.x where one exists. Every mistake raises
`TunerInputError` naming the dotted key (`tuning.exit_policy.max_trials`) and what was
expected; unknown keys get the nearest valid key suggested.
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import yaml

from .checks import warn_if_relative_criterion_loose
from .conf_outputs import METRICS, parse_combine, parse_metric, parse_outputs
from .errors import TunerInputError

STRATEGIES = ("tpe", "random", "basic")
BACKENDS = ("auto", "annotate", "denylist")  # auto: denylist, or annotate when a q_func is given
DTYPES = ("int8", "fp32")
DEFAULT_MAX_TRIALS = 100
DEFAULT_PATIENCE = 8  # trials without a faster configuration that meets the criterion


@dataclass(frozen=True)
class _Field:
    types: tuple
    default: Any
    check: Callable[[Any], str | None] | None = None  # returns what is expected, or None when fine


def _positive(v):
    return None if v > 0 else "a number > 0"


def _non_negative(v):
    return None if v >= 0 else "a number >= 0"


def _whole_non_negative(v):
    return None if v >= 0 else "a whole number >= 0"


def _at_least_one(v):
    return None if v >= 1 else "a whole number >= 1"


def _fraction(v):
    return None if 0 < v < 1 else "a number between 0 and 1"


def _one_of(choices):
    return lambda v: None if v in choices else "one of " + ", ".join(choices)


_INT = (int,)
_NUM = (int, float)
_STR = (str,)
_BOOL = (bool,)

# The schema: nested dicts of fields. `None` marks free-form sections checked by hand.
SCHEMA: dict = {
    "version": _Field(_NUM + _STR, 1.0),
    "device": _Field(_STR, "cpu", _one_of(("cpu",))),
    "model": {
        "name": _Field(_STR, "model"),
        "framework": _Field(_STR, "tensorflow", _one_of(("tensorflow", "keras"))),
    },
    "quantization": {
        "backend": _Field(_STR, "auto", _one_of(BACKENDS)),
        "calibration": {
            "sampling_size": _Field(_INT, 100, _at_least_one),
            "batch_size": _Field(_INT, 32, _at_least_one),
        },
        "op_wise": None,
    },
    "tuning": {
        "strategy": {
            "name": _Field(_STR, "tpe", _one_of(STRATEGIES)),
            "accuracy_weight": _Field(_NUM, 1.0, _non_negative),
            "latency_weight": _Field(_NUM, 1.0, _non_negative),
            "tpe": {
                "n_initial_points": _Field(_INT, 5, _at_least_one),
                "gamma": _Field(_NUM, 0.3, _fraction),
                "n_ei_candidates": _Field(_INT, 24, _at_least_one),
                "prior_weight": _Field(_NUM, 1.0, _positive),
                # first trials and prior from a per-unit sensitivity (tf_tpe_tuner/sensitivity.py)
                "sensitivity": _Field(_BOOL, True),
            },
            "basic": {
                # how units are ranked before the cumulative fallback (strategy/basic.py)
                "ranking": _Field(_STR, "fallback_one", _one_of(("fallback_one", "quantize_one"))),
            },
        },
        "accuracy_criterion": {
            "relative": _Field(_NUM, None, _non_negative),
            "absolute": _Field(_NUM, None, _non_negative),
            "higher_is_better": _Field(_BOOL, None),
        },
        # none of the three set: max_trials 100 and patience DEFAULT_PATIENCE (see `stop_policy`)
        "exit_policy": {
            "timeout": _Field(_NUM, None, _non_negative),
            "max_trials": _Field(_INT, None, _at_least_one),
            "patience": _Field(_INT, None, _at_least_one),
        },
        "random_seed": _Field(_INT, 1978, _whole_non_negative),  # numpy refuses negative seeds
        "executor": {
            "name": _Field(_STR, "local", _one_of(("local", "ray"))),
            "workers": _Field(_INT, 1, _at_least_one),
            "address": _Field(_STR, None),  # an existing Ray cluster; none: start one here
        },
        "workspace": {
            "path": _Field(_STR, "./tpe_workspace"),
            "resume": _Field(_STR, None),  # an earlier output directory to continue from
        },
    },
    "evaluation": {
        "accuracy": {
            "metric": None,
            "outputs": None,  # per output: metric, accuracy_criterion (conf_outputs.py)
            "combine": None,  # worst (default), an output, or a list of outputs
            "batch_size": _Field(_INT, 256, _at_least_one),
        },
        "performance": {
            "warmup": _Field(_INT, 20, _non_negative),
            "iteration": _Field(_INT, 300, _at_least_one),
            "num_threads": _Field(_INT, 1, _at_least_one),
        },
    },
}


def _type_name(types: tuple) -> str:
    names = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}
    if types == _NUM:
        return "a number"
    if types == _NUM + _STR:
        return "a number or a string"
    return " or ".join(names[t] for t in types)


def _check_value(key: str, field: _Field, value: Any) -> Any:
    # bool is an int in Python; a `true` where a number is expected is a mistake.
    if isinstance(value, bool) and bool not in field.types:
        raise TunerInputError(f"conf: {key} must be {_type_name(field.types)}, got {value!r}")
    if not isinstance(value, field.types):
        raise TunerInputError(f"conf: {key} must be {_type_name(field.types)}, got {value!r}")
    if field.check is not None:
        expected = field.check(value)
        if expected:
            raise TunerInputError(f"conf: {key} must be {expected}, got {value!r}")
    return value


def _all_keys(schema: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, sub in schema.items():
        dotted = prefix + name
        keys.append(dotted)
        if isinstance(sub, dict):
            keys.extend(_all_keys(sub, dotted + "."))
    return keys


def _unknown_key(dotted: str) -> TunerInputError:
    near = difflib.get_close_matches(dotted, _all_keys(SCHEMA), n=1, cutoff=0.5)
    if not near:  # a typo in the last part only: compare the leaf names
        leaf = dotted.rsplit(".", 1)[-1]
        leaves = {k.rsplit(".", 1)[-1]: k for k in _all_keys(SCHEMA)}
        near = [leaves[m] for m in difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)]
    hint = f" (did you mean {near[0]}?)" if near else ""
    return TunerInputError(f"conf: unknown key {dotted}{hint}")


def _validate(schema: dict, given: Any, prefix: str) -> dict:
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        where = prefix.rstrip(".") or "the conf"
        raise TunerInputError(f"conf: {where} must be a mapping of keys, got {given!r}")
    for key in given:
        if not isinstance(key, str) or key not in schema:
            raise _unknown_key(prefix + str(key))
    out = {}
    for name, sub in schema.items():
        dotted = prefix + name
        if sub is None:
            out[name] = copy.deepcopy(given.get(name))
        elif isinstance(sub, dict):
            out[name] = _validate(sub, given.get(name), dotted + ".")
        elif name in given and given[name] is not None:
            out[name] = _check_value(dotted, sub, given[name])
        else:
            out[name] = sub.default
    return out


def _parse_op_wise(raw: Any) -> dict[str, str]:
    """`quantization.op_wise` -> {unit name or regex: "int8" | "fp32"}."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise TunerInputError(
            "conf: quantization.op_wise must map unit names (or regexes) to "
            f"{{activation: {{dtype: [fp32]}}}}, got {raw!r}")
    out = {}
    for pattern, spec in raw.items():
        where = f"quantization.op_wise.{pattern}"
        try:
            re.compile(str(pattern))
        except re.error as err:
            raise TunerInputError(f"conf: {where} is not a valid regular expression ({err})") from None
        if not isinstance(spec, Mapping) or not spec:
            raise TunerInputError(f"conf: {where} must be {{activation: {{dtype: [fp32]}}}} or "
                                  f"{{activation: {{dtype: [int8]}}}}, got {spec!r}")
        chosen = set()
        for part, body in spec.items():
            if part not in ("activation", "weight"):
                raise TunerInputError(f"conf: unknown key {where}.{part} (expected activation or weight)")
            if not isinstance(body, Mapping) or set(body) != {"dtype"}:
                raise TunerInputError(f"conf: {where}.{part} must be {{dtype: [fp32]}} or {{dtype: [int8]}}")
            dtype = body["dtype"]
            dtypes = dtype if isinstance(dtype, list) else [dtype]
            if len(dtypes) != 1 or dtypes[0] not in DTYPES:
                raise TunerInputError(
                    f"conf: {where}.{part}.dtype must be [fp32] or [int8], got {dtype!r}")
            chosen.add(dtypes[0])
        if len(chosen) != 1:
            raise TunerInputError(f"conf: {where} asks for both int8 and fp32")
        out[str(pattern)] = chosen.pop()
    return out


class Conf:
    """A validated tuning conf.

    `Conf(path)` reads a yaml file, `Conf(dict)` takes the same structure, `Conf(None)` is
    all defaults. Values are read with `conf.get("tuning.exit_policy.max_trials")` or
    through the properties below; `conf.override(...)` applies command-line flags.
    """

    def __init__(self, source: "str | os.PathLike | Mapping | Conf | None" = None):
        if isinstance(source, Conf):
            self._data = copy.deepcopy(source._data)
            self.path = source.path
            return
        self.path = None
        if source is None:
            raw = {}
        elif isinstance(source, (str, os.PathLike)):
            self.path = os.fspath(source)
            raw = _read_yaml(self.path)
        elif isinstance(source, Mapping):
            raw = copy.deepcopy(dict(source))
        else:
            raise TunerInputError(f"conf must be a yaml file path or a dict, got {type(source).__name__}")
        self._data = _validate(SCHEMA, raw, "")
        self._finish()

    def _finish(self) -> None:
        crit = self._data["tuning"]["accuracy_criterion"]
        if crit["relative"] is not None and crit["absolute"] is not None:
            raise TunerInputError(
                "conf: tuning.accuracy_criterion takes exactly one of relative or absolute, not both")
        if crit["relative"] is None and crit["absolute"] is None:
            crit["relative"] = 0.01
        warn_if_relative_criterion_loose(crit["relative"])
        accuracy = self._data["evaluation"]["accuracy"]
        self.metric = parse_metric(accuracy["metric"])
        self.metric_name, self.metric_topk = self.metric.name, self.metric.topk
        self.output_settings = parse_outputs(accuracy["outputs"])
        self.combine = parse_combine(accuracy["combine"])
        self.op_wise = _parse_op_wise(self._data["quantization"]["op_wise"])

    def get(self, dotted: str) -> Any:
        node: Any = self._data
        for part in dotted.split("."):
            node = node[part]
        return node

    def override(self, **dotted_values: Any) -> "Conf":
        """A copy with `{"tuning.exit_policy.max_trials": 5, ...}` set; `None` values are skipped."""
        data = copy.deepcopy(self._data)
        for dotted, value in dotted_values.items():
            if value is None:
                continue
            node = data
            parts = dotted.split(".")
            for part in parts[:-1]:
                node = node[part]
            node[parts[-1]] = value
        raw_crit = data["tuning"]["accuracy_criterion"]
        if raw_crit["absolute"] is not None:
            raw_crit["relative"] = None
        out = Conf(data)
        out.path = self.path
        return out

    def as_dict(self) -> dict:
        return copy.deepcopy(self._data)

    # The values the tuner reads most, by name.
    @property
    def higher_is_better(self) -> bool:
        explicit = self.get("tuning.accuracy_criterion.higher_is_better")
        return METRICS[self.metric_name] if explicit is None else explicit

    @property
    def needs_labels(self) -> bool:
        """Whether evaluation data must carry labels: topk scores against classes. Every other
        metric compares with the float model's own outputs where no labels are given."""
        metrics = [self.metric] + [s.metric for s in self.output_settings.values() if s.metric]
        return any(m.name == "topk" for m in metrics)

    @property
    def criterion(self) -> tuple[str, float]:
        """("relative" | "absolute", tolerated loss)."""
        crit = self.get("tuning.accuracy_criterion")
        if crit["absolute"] is not None:
            return "absolute", float(crit["absolute"])
        return "relative", float(crit["relative"])

    @property
    def max_trials(self) -> int:
        value = self.get("tuning.exit_policy.max_trials")
        return DEFAULT_MAX_TRIALS if value is None else value

    @property
    def timeout(self) -> float | None:
        """Seconds; None: no time limit; 0: Neural Compressor's "stop at the first configuration
        that meets the criterion" (restricted to configurations faster than float)."""
        value = self.get("tuning.exit_policy.timeout")
        return None if value is None else float(value)

    @property
    def patience(self) -> int | None:
        """Trials without a faster configuration meeting the criterion, once one does, after
        which the run stops: as set, or DEFAULT_PATIENCE when the conf sets no exit policy."""
        policy = self.get("tuning.exit_policy")
        if policy["patience"] is not None:
            return policy["patience"]
        if policy["timeout"] is None and policy["max_trials"] is None:
            return DEFAULT_PATIENCE
        return None

    @property
    def seed(self) -> int:
        return self.get("tuning.random_seed")

    @property
    def workspace(self) -> str:
        return self.get("tuning.workspace.path")


def _read_yaml(path: str) -> Any:
    if not os.path.exists(path):
        raise TunerInputError(f"conf file {path} does not exist")
    if os.path.isdir(path):
        raise TunerInputError(f"conf file {path} is a directory, expected a yaml file")
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
        if context and start is not None:  # e.g. an unclosed bracket: say where it opened
            problem += f" ({context} started at line {start.line + 1})"
        raise TunerInputError(f"conf file {path}: yaml syntax error{where}: {problem}") from None
    except UnicodeDecodeError:
        raise TunerInputError(f"conf file {path} is not a text yaml file") from None
