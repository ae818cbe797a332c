"""The tuning report: report.md, report.json and pareto.png in the output directory.

    report.write_report(result, strategy.graph, output_dir, strategy.realizer.calib,
                        conf=strategy.conf, test_data=test_data)

- The baseline, the best configuration, and how the search went.
- A per-unit table: layer types, int8 or kept float in the best model, and the run's per-unit
  sensitivity (`tf_tpe_tuner.sensitivity`): the model's output error when only that unit is
  int8 (relative RMS error against the float model, and how often the top class changes).
- pareto.png: accuracy against latency for every trial, the Pareto front, the best trial,
  the float and the all-int8 models, and the accuracy the criterion asks for.
- With `test_data` (held apart from the evaluation data the search chose on), the final and
  the float model's accuracy on it: the best of many trials flatters itself on the data it
  was chosen with.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Iterable, Mapping

import numpy as np

from .data import ArrayData, as_array_data, check_against_model
from .export import write_atomic
from .history import STATUS_OK, TrialRecord

log = logging.getLogger("tf_tpe_tuner")


# -- sensitivity ------------------------------------------------------------------------------
SENSITIVITY_METHOD = ("relative RMS error of the TFLite model's outputs against the float TFLite model's "
                      "when only this unit is int8 (the run's per-unit sensitivity)")


def sensitivity_summary(graph, calib: ArrayData, batch_size: int, sensitivity=True) -> dict:
    """report.json's sensitivity: the run's own (`sensitivity.Sensitivity`), or measured now
    (`sensitivity=True`) when the search did not measure it."""
    from .realizers import make_realizer
    from .sensitivity import Sensitivity, unit_sensitivity

    if not isinstance(sensitivity, Sensitivity):  # a part-measured one (timeout) is shown as it is
        sensitivity = unit_sensitivity(graph, calib, realizer=make_realizer("denylist", graph, calib, batch_size))
    return {"units": dict(sensitivity.output_errors), "all_int8": sensitivity.all_int8,
            "samples": sensitivity.samples, "seconds": round(sensitivity.seconds, 3),
            "method": SENSITIVITY_METHOD}


# -- Pareto front and plot --------------------------------------------------------------------
def pareto_front(points: Iterable[tuple[Any, float, float]], higher_is_better: bool = True) -> list:
    """Keys of the (key, latency, accuracy) points that no other point beats on both."""
    pts = list(points)
    sign = 1.0 if higher_is_better else -1.0
    front = []
    for key, lat, acc in pts:
        dominated = any((l2 <= lat and sign * a2 >= sign * acc) and (l2 < lat or sign * a2 > sign * acc)
                        for _, l2, a2 in pts)
        if not dominated:
            front.append((lat, key))
    return [key for _, key in sorted(front, key=lambda t: t[0])]


def all_int8_record(history: list[TrialRecord]) -> TrialRecord | None:
    """The trial with the most units proposed int8 (the all-int8 model; op_wise may fix some)."""
    ok = [r for r in history if r.status == STATUS_OK]
    if not ok:
        return None
    return max(ok, key=lambda r: (sum(1 for d in r.config.values() if d == "int8"), -r.trial))


def plot_pareto(result, path: str, higher_is_better: bool = True, threshold: float | None = None,
                metric_name: str = "accuracy") -> list[int]:
    """Draw pareto.png; returns the trials on the Pareto front."""
    fig, front_keys = pareto_figure(result, higher_is_better, threshold, metric_name)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, "." + os.path.basename(path) + ".tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return [k for k in front_keys if k != "fp32"]


def pareto_figure(result, higher_is_better: bool = True, threshold: float | None = None,
                  metric_name: str = "accuracy"):
    """The figure of pareto.png and the Pareto front's keys (trials, "fp32").

    A `matplotlib.figure.Figure` on its own Agg canvas, not pyplot: the process's backend (a
    notebook's inline plots) and pyplot's list of open figures are left alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ok = [r for r in result.history if r.status == STATUS_OK]
    base = result.baseline
    points = [(r.trial, r.latency_ms, r.accuracy) for r in ok]
    front_keys = pareto_front(points + [("fp32", base.latency_ms, base.accuracy)], higher_is_better)
    # Small models run in microseconds: 12.6 µs reads better than 0.0126 ms.
    scale, unit = (1e3, "µs") if max([base.latency_ms] + [r.latency_ms for r in ok]) < 1 else (1.0, "ms")
    fig = Figure(figsize=(7.5, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    met = [r for r in ok if r.met_criterion]
    missed = [r for r in ok if not r.met_criterion]
    if missed:
        ax.scatter([r.latency_ms * scale for r in missed], [r.accuracy for r in missed], s=28,
                   color="#f0a35e", label="trial (misses the criterion)", zorder=2)
    if met:
        ax.scatter([r.latency_ms * scale for r in met], [r.accuracy for r in met], s=28, color="#4c8bd6",
                   label="trial (meets the criterion)", zorder=2)
    lookup = {r.trial: (r.latency_ms * scale, r.accuracy) for r in ok}
    lookup["fp32"] = (base.latency_ms * scale, base.accuracy)
    front = [lookup[k] for k in front_keys]
    if front:
        xs, ys = zip(*front)
        right = max(p[0] for p in lookup.values())
        xs, ys = list(xs) + [right * 1.02], list(ys) + [ys[-1]]
        ax.step(xs, ys, where="post", color="#555555", linewidth=1.2, label="Pareto front", zorder=1)
    ax.scatter([base.latency_ms * scale], [base.accuracy], marker="s", s=70, color="black",
               label=f"fp32 ({base.latency_ms * scale:.4g} {unit})", zorder=3)
    best = result.best_trial is not None and result.latency_ms is not None
    if best:
        ax.scatter([result.latency_ms * scale], [result.accuracy], marker="*", s=260, color="#d62728",
                   edgecolors="black", linewidths=0.6, label=f"best (trial {result.best_trial})", zorder=4)
    int8 = all_int8_record(result.history)
    if int8 is not None:
        label = "all-int8" if all(d == "int8" for d in int8.config.values()) else "most-int8"
        on_best = best and int8.trial == result.best_trial
        # drawn over the best's star when it is the best too, else the star would hide it
        ax.scatter([int8.latency_ms * scale], [int8.accuracy], marker="^", s=80, color="#2e9e4f",
                   edgecolors="white" if on_best else "none", linewidths=0.8,
                   label=f"{label} (trial {int8.trial}{', the best' if on_best else ''})",
                   zorder=5 if on_best else 3)
    if threshold is not None:
        ax.axhline(threshold, color="#999999", linestyle="--", linewidth=1,
                   label=f"criterion ({threshold:.4g})")
    ax.set_xlabel(f"latency ({unit}, median of single-sample invokes)")
    ax.set_ylabel(metric_name + ("" if higher_is_better else " (lower is better)"))
    ax.set_title(f"{len(ok)} trial{'' if len(ok) == 1 else 's'}: {metric_name} against latency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig, front_keys


# -- the report -------------------------------------------------------------------------------
def _criterion(conf, baseline, run_criterion=None) -> tuple[dict | None, float | None]:
    if conf is None and run_criterion is None:
        return None, None
    from .study import Criterion

    criterion = run_criterion or Criterion.from_conf(conf)  # the run's (several outputs: its own)
    threshold = criterion.threshold(baseline.accuracy)
    return {**criterion.as_dict(), "threshold": threshold}, threshold


def evaluate_on(tflite: bytes, data: ArrayData, metric, batch_size: int = 256) -> float:
    from .evaluate import TFLiteModel

    return float(metric.compute(TFLiteModel(tflite).predict(data, batch_size), data.y))


def load_test_data(test_data, graph) -> ArrayData | None:
    """Read and check test data against the model (call it before tuning: a bad file is then
    refused at once, not after the search)."""
    if test_data is None:
        return None
    data = check_against_model(as_array_data(test_data, graph.input_names, "test data"),
                               graph.input_shapes, "test data")
    data.require_labels("test data")
    return data


def _test_accuracy(result, graph, calib, test_data, conf=None) -> dict:
    """The best and the float model's accuracy on held-apart test data."""
    from .conf import Conf
    from .evaluate import make_metric
    from .realizers import make_realizer

    conf = conf if conf is not None else Conf(None)
    data = load_test_data(test_data, graph)
    metric = make_metric(conf.metric_name, conf.metric_topk)
    batch = conf.get("evaluation.accuracy.batch_size")
    float_model = make_realizer("denylist", graph, calib, batch).realize_float().tflite_model
    out = {"samples": len(data), "metric": metric.name,
           "fp32_accuracy": evaluate_on(float_model, data, metric, batch),
           "best_accuracy": None}
    if result.tflite_model is not None:
        out["best_accuracy"] = evaluate_on(result.tflite_model, data, metric, batch)
    return out


def build_report(result, graph, calib, conf=None, test_data=None, sensitivity: Any = True,
                 test: dict | None = None) -> dict:
    """report.json's content (no files written)."""
    calib = calib if isinstance(calib, ArrayData) else check_against_model(
        as_array_data(calib, graph.input_names, "calibration data"), graph.input_shapes, "calibration data")
    criterion, _ = _criterion(conf, result.baseline, getattr(result, "criterion", None))
    batch_size = conf.get("quantization.calibration.batch_size") if conf is not None else 32
    sens, sens_error = None, None
    if sensitivity:
        try:
            sens = sensitivity_summary(graph, calib, batch_size, sensitivity)
        except Exception as err:  # an extra: the report is still written without it
            sens_error = f"{type(err).__name__}: {err}"
            log.warning("per-unit sensitivity could not be computed: %s", sens_error)
    if test is None and test_data is not None:
        test = _test_accuracy(result, graph, calib, test_data, conf)
    int8_now = set(result.int8_units)
    units = []
    for unit in graph.units:
        row = {"unit": unit.name,
               "layers": [graph.display_names[n] for n in unit.layers],
               "layer_types": list(unit.layer_types),
               "proposed": result.config.get(unit.name),
               "dtype": "int8" if unit.name in int8_now else "fp32"}
        if sens is not None:
            row["sensitivity"] = sens["units"].get(unit.name)
        units.append(row)
    int8 = all_int8_record(result.history)
    history = result.history
    failed = [r for r in history if r.status != STATUS_OK]
    return {
        "baseline": {"accuracy": result.baseline.accuracy, "latency_ms": result.baseline.latency_ms},
        "best": None if result.best_trial is None else {
            "trial": result.best_trial, "accuracy": result.accuracy, "latency_ms": result.latency_ms,
            "speedup": result.speedup, "met_criterion": result.met_criterion,
            "int8_units": list(result.int8_units), "config": dict(result.config)},
        "criterion": criterion,
        "metric": getattr(result, "metric", None) or (None if conf is None else conf.metric.short),
        "outputs": getattr(result, "outputs", None),
        "handed_back": getattr(result, "handed_back", None),
        "fastest_quantized": getattr(result, "fastest_quantized", None),
        "pinned_int8_run_float": list(getattr(result, "pinned_int8_run_float", [])),
        "latency_noise": getattr(result, "latency_noise", None),
        "trials": len(history),
        "failed_trials": len(failed),
        "elapsed_s": result.elapsed_s,
        "stop_reason": getattr(result, "stop_reason", ""),
        "interrupted": bool(getattr(result, "interrupted", False)),
        "strategy": result.strategy,
        "seed": result.seed,
        "all_int8_trial": None if int8 is None else int8.trial,
        "test": test,
        "units": units,
        "float_layers": [{"layer": f.name, "type": f.layer_type, "reason": f.reason,
                          "passthrough": f.passthrough} for f in graph.float_layers],
        "sensitivity": None if sens is None else {
            "method": sens["method"], "samples": sens["samples"], "seconds": sens["seconds"],
            "all_int8": sens["all_int8"]},
        "sensitivity_error": sens_error,
        "history": [{"trial": r.trial, "status": r.status, "accuracy": r.accuracy,
                     "latency_ms": r.latency_ms, "loss": r.loss, "met_criterion": r.met_criterion,
                     "int8_units": list(r.int8_units), "error": r.error} for r in history],
    }


def write_report(result, graph, output_dir: str, calib, *, conf=None, test_data=None,
                 sensitivity: Any = True, test: dict | None = None) -> dict:
    """Write report.md, report.json and pareto.png to output_dir; returns report.json's content.

    Args:
        result: the TuningResult.
        graph: the walked model (`strategy.graph`).
        calib: the calibration samples (`strategy.realizer.calib`, or any calibration data).
        conf: the run's Conf (criterion, metric, calibration batch size); optional.
        test_data: labelled data held apart from the evaluation data; the best and the float
            model are scored on it (`report["test"]`).
        sensitivity: the run's `Sensitivity` (result.sensitivity), True to measure it now, or
            False for none.
        test: test results computed already (skips test_data).
    """
    report = build_report(result, graph, calib, conf=conf, test_data=test_data,
                          sensitivity=sensitivity, test=test)
    criterion = report["criterion"]
    threshold = criterion["threshold"] if criterion else None
    hib = criterion["higher_is_better"] if criterion else True
    report["pareto_front"] = []
    report["plot_error"] = None
    try:
        report["pareto_front"] = plot_pareto(result, os.path.join(output_dir, "pareto.png"), hib,
                                             threshold, report["metric"] or "accuracy")
    except Exception as err:
        report["plot_error"] = f"{type(err).__name__}: {err}"
        log.warning("pareto.png could not be drawn: %s", report["plot_error"])
    write_atomic(os.path.join(output_dir, "report.json"), json.dumps(report, indent=2, default=_json) + "\n")
    write_atomic(os.path.join(output_dir, "report.md"), render_markdown(report))
    return report


def _json(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(type(value).__name__)


def _f(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pinned_sentence(units: list[str] | None) -> str:
    return f" Units that op_wise pins to int8 run float in it: {', '.join(units)}." if units else ""


def render_markdown(report: Mapping) -> str:
    base, best, crit = report["baseline"], report["best"], report["criterion"]
    metric = report["metric"] or "accuracy"
    lines = ["# Tuning report", ""]
    if report.get("handed_back") == "float":
        fastest = report.get("fastest_quantized") or {}
        lines += [f"**The float model is handed back** (best_model.tflite is the fp32 model, {metric} "
                  f"{_f(base['accuracy'])}, {_f(base['latency_ms'])} ms): configurations met the criterion, "
                  f"but none was faster than float by more than the latency noise "
                  f"({_pct(report.get('latency_noise'))}). The fastest that met it: trial "
                  f"{fastest.get('trial')}, {_f(fastest.get('latency_ratio'), 3)}x the float latency."
                  + _pinned_sentence(report.get("pinned_int8_run_float")), ""]
    elif best is None:
        lines += ["No trial succeeded: there is no tuned model (see history.jsonl for the errors).", ""]
    else:
        n_int8, n = len(best["int8_units"]), len(report["units"])
        verdict = "meets" if best["met_criterion"] else "does **not** meet"
        lines += [f"Best: trial {best['trial']}, {n_int8}/{n} units int8, {metric} "
                  f"{_f(best['accuracy'])} (fp32 {_f(base['accuracy'])}), latency "
                  f"{_f(best['latency_ms'])} ms (fp32 {_f(base['latency_ms'])} ms, "
                  f"{_f(best['speedup'], 2)}x); it {verdict} the criterion"
                  + (f" ({crit['kind']} {crit['tolerance']:g}: {metric} "
                     f"{'>=' if crit['higher_is_better'] else '<='} {_f(crit['threshold'])})" if crit else "")
                  + ".", ""]
    lines += [f"{report['trials']} trials ({report['failed_trials']} failed), "
              f"{report['elapsed_s']:.1f} s, strategy {report['strategy']}, seed {report['seed']}"
              + (", interrupted" if report.get("interrupted") else "") + ".",
              f"Stopped: {report.get('stop_reason') or '-'}.", ""]
    if report.get("outputs"):
        from .outputs import markdown_lines

        lines += markdown_lines(report["outputs"], (report.get("test") or {}).get("outputs"))
    test = report.get("test")
    if test:
        lines += ["## Held-out test data", "",
                  f"{test['samples']} samples kept apart from the evaluation data the search chose on "
                  f"({test['metric']}):", "",
                  "| model | " + metric + " |", "|---|---|",
                  f"| fp32 | {_f(test['fp32_accuracy'])} |",
                  f"| tuned (trial {best['trial'] if best else '-'}) | {_f(test['best_accuracy'])} |", ""]
    lines += ["## Accuracy against latency", ""]
    if report.get("plot_error"):
        lines += [f"(the plot could not be drawn: {report['plot_error']})", ""]
    else:
        front = ", ".join(str(t) for t in report["pareto_front"]) or "-"
        lines += ["![accuracy against latency](pareto.png)", "",
                  f"Pareto front (trials, fastest first): {front}. All-int8 trial: "
                  f"{report['all_int8_trial'] if report['all_int8_trial'] is not None else '-'}.", ""]
    sens = report.get("sensitivity")
    lines += ["## Units", ""]
    if sens:
        every = sens.get("all_int8")
        lines += [f"Sensitivity: {sens['method']}, on {sens['samples']} calibration samples "
                  f"({sens['seconds']:.1f} s). "
                  + ("Measured part-way (the timeout came first)." if every is None else
                     f"With every unit int8: {_pct(every['rel_rmse'])} error"
                     + (f", top-1 changed on {_pct(every['top1_change'])} of samples"
                        if every.get("top1_change") is not None else "") + "."), ""]
    elif report.get("sensitivity_error"):
        lines += [f"(sensitivity not computed: {report['sensitivity_error']})", ""]
    lines += ["| unit | layer types | best model | output error, only this unit int8 | top-1 changed |",
              "|---|---|---|---|---|"]
    for row in report["units"]:
        s = row.get("sensitivity") or {}
        dtype = row["dtype"] if row["dtype"] == row["proposed"] or row["proposed"] is None \
            else f"{row['dtype']} (proposed {row['proposed']})"
        lines.append(f"| {row['unit']} | {' + '.join(row['layer_types'])} | {dtype} | "
                     f"{_pct(s.get('rel_rmse'))} | {_pct(s.get('top1_change'))} |")
    lines.append("")
    if report["float_layers"]:
        lines += ["Layers that are not units:", "", "| layer | type | why |", "|---|---|---|"]
        lines += [f"| {f['layer']} | {f['type']} | {f['reason']} |" for f in report["float_layers"]]
        lines.append("")
    lines += ["## Trials", "", f"| trial | int8 units | {metric} | latency (ms) | loss | criterion |",
              "|---|---|---|---|---|---|"]
    for r in report["history"]:
        if r["status"] != STATUS_OK:
            lines.append(f"| {r['trial']} | - | failed: {str(r['error'])[:80]} | - | - | - |")
            continue
        mark = " **best**" if best and r["trial"] == best["trial"] else ""
        lines.append(f"| {r['trial']}{mark} | {len(r['int8_units'])} | {_f(r['accuracy'])} | "
                     f"{_f(r['latency_ms'])} | {_f(r['loss'], 2)} | "
                     f"{'meets' if r['met_criterion'] else 'misses'} |")
    lines += ["", LOSS_NOTE, ""]
    return "\n".join(lines)


LOSS_NOTE = ("The loss is what the search minimizes (Neural Compressor's TPE loss; lower is better). "
             "With the default weights, a trial that meets the criterion scores 10 × (1 − log2 speed-up): "
             "10 at the float model's speed, 0 at 2x, −10 at 4x; one that misses it scores 80 more, "
             "and about 10 more per 1 % of accuracy lost.")


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"
