"""The report (report.md, report.json, pareto.png), the per-unit sensitivity, and progress."""
import dataclasses
import io
import json
import logging

import numpy as np
import pytest

from conftest import fast_conf
from cost_latency import int8_pays
from tf_tpe_tuner import Conf, TpeTuneStrategy
from tf_tpe_tuner.data import ArrayData
from tf_tpe_tuner.evaluate import TFLiteModel
from tf_tpe_tuner.history import TrialRecord
from tf_tpe_tuner.progress import ProgressHooks, attach, resolve_mode
from tf_tpe_tuner.realize_tflite import TfliteRealizer
from tf_tpe_tuner.report import pareto_figure, pareto_front, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(cnn, digits, tmp_path_factory):
    """A real 4-trial run with a log-mode progress display attached, on a latency that makes
    int8 pay (on a CPU where it does not, no trial would be chosen)."""
    (x, _), (xt, yt) = digits
    out = tmp_path_factory.mktemp("report")
    conf = Conf(fast_conf(exit_policy={"max_trials": 4, "timeout": 3600}, workspace={"path": str(out)}))
    strategy = TpeTuneStrategy(cnn, conf, x[:100], eval_dataloader=(xt[:400], yt[:400]), latency_func=int8_pays)
    with attach(strategy, mode="log", file=io.StringIO()) as hooks:
        result = strategy.traverse()
    return strategy, result, hooks, out


@pytest.fixture(scope="module")
def report(run, digits):
    strategy, result, _, out = run
    _, (xt, yt) = digits
    return write_report(result, strategy.graph, str(out), strategy.realizer.calib, conf=strategy.conf,
                        test_data=(xt[400:], yt[400:]), sensitivity=result.sensitivity)


def test_report_files_and_a_valid_png(report, run):
    import matplotlib.image

    out = run[3]
    for name in ("report.md", "report.json", "pareto.png"):
        assert (out / name).stat().st_size > 0
    png = (out / "pareto.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    image = matplotlib.image.imread(str(out / "pareto.png"))
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    assert image.std() > 0.01  # something is drawn
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))


def test_report_content(report, run):
    strategy, result, _, out = run
    assert report["baseline"] == {"accuracy": result.baseline.accuracy, "latency_ms": result.baseline.latency_ms}
    assert report["best"]["trial"] == result.best_trial
    assert report["best"]["int8_units"] == result.int8_units
    assert report["trials"] == 4 and len(report["history"]) == 4
    assert report["criterion"]["kind"] == "relative"
    assert report["criterion"]["threshold"] == pytest.approx(result.baseline.accuracy * 0.99)
    assert [row["unit"] for row in report["units"]] == strategy.graph.unit_names
    for row in report["units"]:
        assert row["dtype"] == ("int8" if row["unit"] in result.int8_units else "fp32")
        assert row["sensitivity"]["rel_rmse"] > 0
        assert 0 <= row["sensitivity"]["top1_change"] <= 1
    assert report["all_int8_trial"] == 1
    trials = {r.trial for r in result.history}
    assert report["pareto_front"] and set(report["pareto_front"]) <= trials
    if result.met_criterion and not result.final_choice:  # the fastest that meets is never dominated
        assert result.best_trial in report["pareto_front"]
    elif result.final_choice:  # a near-tie settled by re-measuring: one of the contenders
        assert str(result.best_trial) in result.final_choice["remeasured"]
    md = (out / "report.md").read_text()
    assert "![accuracy against latency](pareto.png)" in md
    for unit in strategy.graph.unit_names:
        assert f"| {unit} |" in md
    assert "Held-out test data" in md


def test_test_data_numbers_are_the_models_on_that_data(report, run, digits):
    strategy, result, _, _ = run
    _, (xt, yt) = digits
    test = report["test"]
    assert test["samples"] == len(xt) - 400
    float_model = strategy.graph.float_model  # the converter's float model of the tf_keras model
    for tflite, key in ((float_model, "fp32_accuracy"), (result.tflite_model, "best_accuracy")):
        pred = TFLiteModel(tflite).predict(ArrayData([xt[400:]]), 256)
        assert test[key] == pytest.approx(float(np.mean(pred.argmax(1) == yt[400:])))


def test_sensitivity_is_the_output_error_of_the_single_unit_model(run, report):
    """The report shows the sensitivity the search measured (one definition, measured once), and
    it is the output error of the model with only that unit int8, computed here by hand."""
    strategy, result, _, _ = run
    graph, calib = strategy.graph, strategy.realizer.calib
    assert result.sensitivity is not None and result.sensitivity.complete
    realizer = TfliteRealizer(graph, calib)
    ref = TFLiteModel(realizer.realize_float().tflite_model)(calib.x[0]).astype(np.float64)
    for unit in graph.unit_names:
        q = TFLiteModel(realizer.realize([unit]).tflite_model)(calib.x[0]).astype(np.float64)
        expected = np.sqrt(np.sum((q - ref) ** 2) / np.sum(ref ** 2))
        row = next(r for r in report["units"] if r["unit"] == unit)
        assert row["sensitivity"]["rel_rmse"] == pytest.approx(expected, rel=1e-6)
        assert row["sensitivity"] == result.sensitivity.output_errors[unit]
    everything = TFLiteModel(realizer.realize(graph.unit_names).tflite_model)(calib.x[0]).astype(np.float64)
    expected = np.sqrt(np.sum((everything - ref) ** 2) / np.sum(ref ** 2))
    assert report["sensitivity"]["all_int8"]["rel_rmse"] == pytest.approx(expected, rel=1e-6)


def test_pareto_front():
    points = [(1, 1.0, 0.90), (2, 0.5, 0.80), (3, 0.6, 0.85), (4, 0.7, 0.84), (5, 2.0, 0.95), (6, 0.5, 0.79)]
    assert pareto_front(points) == [2, 3, 1, 5]
    lower = [(1, 1.0, 0.1), (2, 0.5, 0.3), (3, 0.6, 0.2), (4, 0.7, 0.25)]
    assert pareto_front(lower, higher_is_better=False) == [2, 3, 1]


def test_report_explains_the_loss_column(report, run):
    md = (run[3] / "report.md").read_text()
    assert "| loss |" in md and "The loss is what the search minimizes" in md and "0 at 2x" in md


def rgba_at(fig, ax, x, y) -> np.ndarray:
    """The rendered figure's pixel at data point (x, y)."""
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())
    px, py = ax.transData.transform((x, y))
    return image[int(round(image.shape[0] - py)), int(round(px))]


def test_pareto_plot_microseconds_singular_and_the_all_int8_marker_on_the_best(run):
    _, result, _, _ = run
    first = result.history[0]  # all-int8 (the tuner's first trial)
    assert all(d == "int8" for d in first.config.values())
    one = dataclasses.replace(result, history=[first], best_trial=first.trial, accuracy=first.accuracy,
                              latency_ms=first.latency_ms)
    assert result.baseline.latency_ms < 0.1  # the CNN runs in microseconds
    fig, _ = pareto_figure(one)
    (ax,) = fig.axes
    assert ax.get_xlabel().startswith("latency (µs")
    assert ax.get_title().startswith("1 trial: ")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"fp32 ({result.baseline.latency_ms * 1e3:.4g} µs)" in labels, labels
    assert any(label.startswith("all-int8 (trial 1") for label in labels), labels
    # the all-int8 marker is drawn over the best's star, not hidden under it
    r, g, b, _ = rgba_at(fig, ax, first.latency_ms * 1e3, first.accuracy).astype(int)
    assert g > 120 and g > r + 50 and g > b + 30, (r, g, b)  # the marker's green (#2e9e4f)
    slow = dataclasses.replace(result, baseline=dataclasses.replace(result.baseline, latency_ms=2.5),
                               history=[dataclasses.replace(r, latency_ms=1.5) for r in result.history])
    fig, _ = pareto_figure(slow)
    assert fig.axes[0].get_xlabel().startswith("latency (ms")
    assert fig.axes[0].get_title().startswith(f"{len(result.history)} trials: ")


def test_the_report_leaves_matplotlibs_backend_and_figures_alone(run, tmp_path):
    """A notebook's inline backend must survive a tuning: the report draws on its own canvas."""
    import subprocess
    import sys
    code = ("import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt; plt.figure()\n"
            "import sys, pickle; from tf_tpe_tuner.report import plot_pareto\n"
            "result = pickle.load(open(sys.argv[1], 'rb'))\n"
            "plot_pareto(result, sys.argv[2])\n"
            "print(matplotlib.get_backend(), len(plt.get_fignums()))\n")
    import pickle
    _, result, _, _ = run
    path = tmp_path / "result.pkl"
    path.write_bytes(pickle.dumps(dataclasses.replace(result, tflite_model=None, sensitivity=None)))
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "p.png")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "1"]  # still the user's backend, and only the user's figure
    assert (tmp_path / "p.png").read_bytes().startswith(PNG_SIGNATURE)


def test_report_when_every_trial_failed(run, tmp_path):
    import matplotlib.image

    strategy, result, _, _ = run
    failed = [TrialRecord(trial=i, config=dict(result.config), status="failed", error="RuntimeError: boom")
              for i in (1, 2)]
    nothing = dataclasses.replace(result, history=failed, tflite_model=None, accuracy=None, latency_ms=None,
                                  best_trial=None, int8_units=[], met_criterion=False)
    report = write_report(nothing, strategy.graph, str(tmp_path), strategy.realizer.calib, sensitivity=False)
    assert report["best"] is None and report["failed_trials"] == 2
    assert "No trial succeeded" in (tmp_path / "report.md").read_text()
    assert matplotlib.image.imread(str(tmp_path / "pareto.png")).ndim == 3


# -- progress -------------------------------------------------------------------------------------
def test_log_mode_one_line_per_trial(run):
    """One line per trial, with the trial's own numbers and the run's: no second progress line."""
    _, result, hooks, _ = run
    assert len(hooks.lines) == result.trials
    for record, line in zip(result.history, hooks.lines):
        n_int8 = sum(1 for d in record.config.values() if d == "int8")
        assert line.startswith(f"trial {record.trial}  int8 {n_int8}/{len(record.config)}  acc {record.accuracy:.4f}  "
                               f"lat {record.latency_ms:.4f} ms  loss {record.loss:.2f}  "), line
        assert f" | {record.trial}/4 trials " in line and "/1:00:00 | chosen: trial " in line, line
    # the accuracy shown last is the chosen (best) trial's, and says so (near-ties are settled
    # after the last trial: then it is one of the contenders re-measured)
    shown = int(hooks.lines[-1].rsplit("chosen: trial ", 1)[1].split()[0])
    if result.final_choice:
        assert str(shown) in result.final_choice["remeasured"]
    else:
        assert hooks.lines[-1].endswith(f"chosen: trial {result.best_trial} (acc {result.accuracy:.4f}, "
                                        f"{result.speedup:.2f}x, meets)")


def record(trial, acc, lat, met, status="ok"):
    return TrialRecord(trial=trial, config={"a": "int8", "b": "fp32"}, status=status, accuracy=acc,
                       latency_ms=lat, met_criterion=met)


def test_bar_mode_draws_a_tqdm_bar():
    out = io.StringIO()
    hooks = ProgressHooks(max_trials=3, timeout=60, mode="bar", file=out)
    with hooks:
        for i, rec in enumerate([record(1, 0.9, 2.0, True), record(2, None, None, False, "failed"),
                                 record(3, 0.95, 1.0, True)], start=1):
            hooks.on_trial_begin(i, rec.config)
            hooks.on_trial_end(rec)
    text = out.getvalue()
    assert "3/3" in text and "/1:00" in text and "chosen: trial 3 (acc 0.9500, 1.0000 ms, meets)" in text
    assert hooks.failed == 1


def test_quiet_mode_and_hook_chaining(caplog):
    seen = []
    hooks = ProgressHooks(max_trials=2, mode="quiet", file=io.StringIO())
    merged = hooks.q_hooks({"on_trial_end": seen.append})
    with caplog.at_level(logging.INFO, logger="tf_tpe_tuner"):
        merged["on_trial_begin"](1, {"a": "int8"})
        merged["on_trial_end"](record(1, 0.9, 1.0, True))
    assert len(seen) == 1 and hooks.done == 1 and not hooks.lines and not caplog.records
    assert resolve_mode("auto", stream=io.StringIO()) == "log"
    assert resolve_mode("bar", quiet=True) == "quiet"
    with pytest.raises(ValueError):
        resolve_mode("loud")
