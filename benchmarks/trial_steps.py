"""Where one tuning trial's time goes, and how the all-int8 realization compares with the converter's PTQ.

    python benchmarks/trial_steps.py        (from the repository root; ~4-6 min on 2 cores)
    python benchmarks/trial_steps.py --models mobilenetv2 --zoo /tmp/tf_tpe_tuner_zoo --steps-only
                                            (only the trial steps of MobileNetV2, ~2 min)

Options: `--models` (cnn, mobilenetv2; both by default); `--zoo DIR` takes MobileNetV2 from the
benchmark zoo's cache (`benchmarks/zoo.py`: same architecture, data and recipe, its own training
run) instead of training it here; `--steps-only` measures only 2. (no float / PTQ routes, no extra
latency rounds, no from_keras_model comparison); `--repeats N` (3).

On two models -- the demo CNN of examples/demo.py (8x8 digits, trained as the demo trains it) and
tf_keras MobileNetV2 (alpha 0.35, 32x32x1 input, BatchNormalization momentum 0.9) trained on the
digits upsampled to 32x32 -- it measures:

1. test accuracy and latency (ms, median of 300 invokes at batch 1, 1 thread, after 20 warm-up
   invokes, `TFLiteModel.latency_ms(20, 300)`) of
   - the float TFLite model (`AnnotationRealizer.realize_float()`, concrete-function conversion),
   - the TFLite converter's own full-int8 post-training quantization (`from_keras_model`,
     `Optimize.DEFAULT`, `TFLITE_BUILTINS_INT8`, float I/O, representative dataset = the same
     calibration samples the realizer uses, one sample per step),
   - the all-int8 configuration realized by `AnnotationRealizer(...).realize(graph.unit_names)`;
   accuracy is `TFLiteModel(bytes, num_threads=1).predict(ArrayData([x_test], y_test), 256)`,
   argmax against the labels; also the share of test samples whose top-1 class equals the float
   TFLite model's, the mean |difference| of the outputs from the float model's, and three more
   latency runs interleaved across the routes (single runs of tens of microseconds are noisy);
2. the time of each step of one trial -- `Realization.seconds` (annotate, apply, calibrate, convert,
   inspect) and evaluation (`Evaluator(...).evaluate(bytes).seconds`, plus its split into the
   accuracy pass and the latency benchmark, timed separately) -- for the all-int8 configuration and
   for a mixed one (every other unit int8), with the Evaluator's own top-1 accuracy beside the
   argmax accuracy (they differ when an int8 output ties at its maximum). Each configuration is
   realized once as a warm-up (its numbers are reported as "first") and then 3 more times (the
   median per step is reported);
3. on MobileNetV2, the time of `TFLiteConverter.from_keras_model(qmodel).convert()` on the
   quantize-applied, calibrated model, against the concrete-function path (`realize.convert`),
   and whether both give the same outputs.

Calibration: the first 200 training samples for both models (the demo's sampling_size), also
with `--zoo`.
Nothing is written to disk. Failures are caught per step and reported with a traceback excerpt.
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_T0 = time.perf_counter()
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)

from tf_tpe_tuner._tf import keras, tf  # noqa: E402
from tf_tpe_tuner import realize as R  # noqa: E402
from tf_tpe_tuner.data import ArrayData  # noqa: E402
from tf_tpe_tuner.evaluate import Evaluator, TFLiteModel, make_metric  # noqa: E402
from tf_tpe_tuner.walker import walk  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(_ROOT, "examples"))
from demo import build_cnn, digits  # noqa: E402

CALIB_SAMPLES = 200
REPEATS = 3
STEPS = ("annotate", "apply", "calibrate", "convert", "inspect")
WARMUP, ITERATIONS = 20, 300


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f}s] {msg}", flush=True)


def excerpt(err: BaseException, lines: int = 12) -> str:
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__)).rstrip().splitlines()
    return "\n".join("    " + line for line in text[-lines:])


# -- models --------------------------------------------------------------------------------

def train_cnn():
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = digits()
    model = build_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    return model, x_train[:CALIB_SAMPLES], x_test, y_test, acc


def digits32():
    """The demo's digits split (1000 train / 797 test), bilinearly upsampled to 32x32x1."""
    (x_train, y_train), (x_test, y_test) = digits()
    up = lambda x: tf.image.resize(x, (32, 32), method="bilinear").numpy().astype("float32")  # noqa: E731
    return (up(x_train), y_train), (up(x_test), y_test)


def zoo_mobilenet(cache: str):
    """The zoo's MobileNetV2 (cached; built and trained like `train_mobilenet`), the same data split."""
    sys.path.insert(0, _HERE)
    import zoo
    model = zoo.load_cases(cache, names=["mobilenetv2"], log=log)[0].model
    (x_train, _), (x_test, y_test) = digits32()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    return model, x_train[:CALIB_SAMPLES], x_test, y_test, acc


def train_mobilenet(epochs: int = 20):
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = digits32()
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 1), alpha=0.35, classes=10)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    return model, x_train[:CALIB_SAMPLES], x_test, y_test, acc


# -- measurements --------------------------------------------------------------------------

def accuracy(tflite: bytes, x, y) -> float:
    pred = TFLiteModel(tflite, num_threads=1).predict(ArrayData([x], y), 256)
    return float(np.mean(np.argmax(pred, axis=-1) == y))


def outputs(tflite: bytes, x) -> np.ndarray:
    return TFLiteModel(tflite, num_threads=1).predict(ArrayData([x]), 256)


def vs_float(tflite: bytes, x, float_out) -> tuple[float, float]:
    """Top-1 agreement with the float TFLite model, and mean |output difference|."""
    out = outputs(tflite, x)
    return (float(np.mean(np.argmax(out, -1) == np.argmax(float_out, -1))),
            float(np.mean(np.abs(out - float_out))))


def latency(tflite: bytes) -> float:
    return TFLiteModel(tflite, num_threads=1).latency_ms(WARMUP, ITERATIONS)


def op_summary(tflite: bytes) -> str:
    """Compute ops by output type, and the QUANTIZE/DEQUANTIZE/CAST boundary ops."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interp = Interpreter(model_content=tflite,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    int_ops = float_ops = quant = dequant = cast = 0
    for op in interp._get_ops_details():
        name = op["op_name"]
        if name == "QUANTIZE":
            quant += 1
        elif name == "DEQUANTIZE":
            dequant += 1
        elif name == "CAST":
            cast += 1
        elif len(op["outputs"]):
            dtype = interp._get_tensor_details(op["outputs"][0], 0)["dtype"]
            if dtype in (np.int8, np.uint8, np.int16, np.int32):
                int_ops += 1
            else:
                float_ops += 1
    return f"{int_ops} int / {float_ops} float ops, Q {quant} DQ {dequant} CAST {cast}"


def ptq(model, calib_x) -> tuple[bytes, float]:
    def representative():
        for i in range(len(calib_x)):
            yield [calib_x[i:i + 1]]

    start = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    tflite = converter.convert()
    return tflite, time.perf_counter() - start


def one_trial(realizer, evaluator, units) -> dict:
    """One trial as the tuner runs it: realize, then Evaluator.evaluate; plus the eval split."""
    real = realizer.realize(units)
    row = {step: real.seconds.get(step, float("nan")) for step in STEPS}
    row["realize"] = sum(real.seconds.values())
    ev = evaluator.evaluate(real.tflite_model)
    row["evaluate"] = ev.seconds
    # The same evaluation split in two, timed separately (interpreter build counted in "acc pass").
    start = time.perf_counter()
    m = TFLiteModel(real.tflite_model, evaluator.num_threads)
    evaluator.accuracy(m)
    row["acc_pass"] = time.perf_counter() - start
    start = time.perf_counter()
    m.latency_ms(evaluator.warmup, evaluator.iterations)
    row["lat_bench"] = time.perf_counter() - start
    row["trial"] = row["realize"] + row["evaluate"]
    row["_acc"], row["_lat"], row["_units"], row["_tflite"] = ev.accuracy, ev.latency_ms, real.int8_units, \
        real.tflite_model
    return row


def time_config(label, realizer, evaluator, units) -> dict:
    log(f"  {label}: first realization (warm-up) + {REPEATS} repeats")
    first = one_trial(realizer, evaluator, units)
    rest = [one_trial(realizer, evaluator, units) for _ in range(REPEATS)]
    med = {k: statistics.median(r[k] for r in rest) for k in first if not k.startswith("_")}
    same = all(r["_tflite"] == first["_tflite"] for r in rest)
    x = evaluator.eval_data.x[0]
    ref = outputs(first["_tflite"], x)
    same_out = all(np.array_equal(outputs(r["_tflite"], x), ref) for r in rest)
    argmax_acc = float(np.mean(np.argmax(ref, -1) == evaluator.eval_data.y))
    return {"first": first, "median": med, "deterministic": same, "same_outputs": same_out,
            "acc": [first["_acc"]] + [r["_acc"] for r in rest], "argmax_acc": argmax_acc,
            "lat": statistics.median([first["_lat"]] + [r["_lat"] for r in rest]),
            "units": first["_units"], "tflite": first["_tflite"]}


def bench_model(name, model, calib_x, x_test, y_test, keras_acc, results, notes, compare_from_keras=False,
                steps_only=False):
    log(f"{name}: Keras test accuracy {keras_acc:.4f}; walking the graph")
    graph = walk(model)
    units = graph.unit_names
    mixed = units[::2]
    log(f"{name}: {len(units)} units, {len(graph.float_layers)} non-unit layers "
        f"({sum(f.passthrough for f in graph.float_layers)} pass-through)")
    not_pass = [f for f in graph.float_layers if not f.passthrough]
    if not_pass:
        notes.append(f"{name}: layers left float (not units, not pass-through): "
                     + ", ".join(f"{f.name} ({f.layer_type})" for f in not_pass))
    realizer = R.AnnotationRealizer(graph, ArrayData([calib_x]), batch_size=32)
    evaluator = Evaluator(make_metric("topk", 1), ArrayData([x_test], y_test), batch_size=256,
                          warmup=WARMUP, iterations=ITERATIONS, num_threads=1)
    checksum = float(sum(np.abs(w).sum() for w in model.get_weights()))
    res = {"name": name, "units": len(units), "keras_acc": keras_acc, "routes": {}, "trials": {},
           "checksum": checksum}
    results.append(res)

    def route(label, make):
        try:
            tflite, secs = make()
            res["routes"][label] = {"acc": accuracy(tflite, x_test, y_test), "lat": latency(tflite),
                                    "secs": secs, "ops": op_summary(tflite), "tflite": tflite}
            r = res["routes"][label]
            log(f"{name}: {label}: acc {r['acc']:.4f}, {r['lat']:.4f} ms, {secs:.2f} s to make; {r['ops']}")
        except Exception as err:  # noqa: BLE001
            res["routes"][label] = {"error": err}
            notes.append(f"{name}: {label} FAILED: {type(err).__name__}: {err}\n{excerpt(err)}")
            log(f"{name}: {label} FAILED: {type(err).__name__}: {err}")

    def float_route():
        real = realizer.realize_float()
        return real.tflite_model, real.seconds["convert"]

    float_out = None
    if not steps_only:
        route("float TFLite", float_route)
        route("converter PTQ full-int8", lambda: ptq(model, calib_x))
        if "tflite" in res["routes"]["float TFLite"]:
            float_out = outputs(res["routes"]["float TFLite"]["tflite"], x_test)

    for label, cfg in (("all-int8", units), (f"mixed ({len(mixed)}/{len(units)} int8)", mixed)):
        try:
            t = time_config(label, realizer, evaluator, cfg)
            res["trials"][label] = t
            got, want = t["units"], frozenset(cfg)
            log(f"{name}: {label}: acc {t['argmax_acc']:.4f} (Evaluator: {t['acc'][0]:.4f}), {len(got)} of {len(want)} requested units int8, "
                f"identical bytes across repeats: {t['deterministic']}, identical outputs: {t['same_outputs']}")
            if got != want:
                notes.append(f"{name}: {label}: realized int8 units differ from the request: "
                             f"missing {sorted(want - got)}, extra {sorted(got - want)}")
            if len(set(t["acc"])) > 1:
                notes.append(f"{name}: {label}: Evaluator accuracy differs across repeats: {t['acc']}")
            if t["acc"][0] != t["argmax_acc"]:
                notes.append(f"{name}: {label}: Evaluator top-1 {t['acc'][0]:.4f} != argmax accuracy "
                             f"{t['argmax_acc']:.4f} of the same outputs (tie at the max broken differently)")
            if not t["deterministic"]:
                notes.append(f"{name}: {label}: TFLite bytes differ across the 4 realizations; test-set outputs "
                             + ("bit-identical" if t["same_outputs"] else "DIFFER"))
            if label == "all-int8":
                res["routes"]["tuner all-int8 (realize)"] = {
                    "acc": t["argmax_acc"], "lat": latency(t["tflite"]), "secs": t["median"]["realize"],
                    "ops": op_summary(t["tflite"]), "tflite": t["tflite"]}
            t["out"] = outputs(t["tflite"], x_test)
        except Exception as err:  # noqa: BLE001
            res["trials"][label] = {"error": err}
            notes.append(f"{name}: realize({label}) FAILED: {type(err).__name__}: {err}\n{excerpt(err)}")
            log(f"{name}: realize({label}) FAILED: {type(err).__name__}: {err}")

    # Latency again, 3 interleaved rounds: single measurements of tens of microseconds are noisy.
    made = [r for r in res["routes"].values() if "tflite" in r]
    for r in made:
        r["lat_rounds"] = []
    for _ in range(0 if steps_only else 3):
        for r in made:
            r["lat_rounds"].append(latency(r["tflite"]))
    if float_out is not None:
        for r in made:
            r["agree"], r["dp"] = vs_float(r["tflite"], x_test, float_out)
        for t in res["trials"].values():
            if "out" in t:
                t["agree"] = float(np.mean(np.argmax(t["out"], -1) == np.argmax(float_out, -1)))
                t["dp"] = float(np.mean(np.abs(t["out"] - float_out)))

    ptq_r = res["routes"].get("converter PTQ full-int8", {})
    ours = res["routes"].get("tuner all-int8 (realize)", {})
    if "acc" in ptq_r and "acc" in ours and ours["acc"] < ptq_r["acc"] - 0.005:
        notes.append(f"{name}: all-int8 accuracy {ours['acc']:.4f} is "
                     f"{100 * (ptq_r['acc'] - ours['acc']):.2f} points below PTQ {ptq_r['acc']:.4f}")

    if compare_from_keras and not steps_only:
        try:
            log(f"{name}: from_keras_model(qmodel).convert() vs the concrete-function path")
            plan = R.plan_annotations(graph, units)
            qmodel = R.quantize_apply(R.build_annotated_model(graph, plan))
            R.calibrate(qmodel, realizer.calib, 32)
            start = time.perf_counter()
            conv = tf.lite.TFLiteConverter.from_keras_model(qmodel)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            slow = conv.convert()
            slow_secs = time.perf_counter() - start
            start = time.perf_counter()
            fast = R.convert(qmodel, graph.input_shapes, graph.input_names, True)
            fast_secs = time.perf_counter() - start
            p_slow = TFLiteModel(slow).predict(ArrayData([x_test]), 256)
            p_fast = TFLiteModel(fast).predict(ArrayData([x_test]), 256)
            realized = res["trials"].get("all-int8", {}).get("out")
            res["from_keras"] = {
                "slow": slow_secs, "fast": fast_secs, "same_bytes": slow == fast,
                "vs_realize": float("nan") if realized is None else float(np.max(np.abs(p_fast - realized))),
                "max_diff": float(np.max(np.abs(p_slow - p_fast))),
                "acc_slow": float(np.mean(np.argmax(p_slow, -1) == y_test)),
                "acc_fast": float(np.mean(np.argmax(p_fast, -1) == y_test))}
        except Exception as err:  # noqa: BLE001
            res["from_keras"] = {"error": err}
            notes.append(f"{name}: from_keras_model comparison FAILED: {type(err).__name__}: {err}\n"
                         f"{excerpt(err)}")


# -- report --------------------------------------------------------------------------------

def fmt_row(cells, widths):
    return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = [fmt_row(header, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt_row(r, widths) for r in rows]
    return "\n".join(lines)


def report(results, notes, total):
    print("\n" + "=" * 100)
    print("RESULTS")
    print("=" * 100)
    rows = []
    for res in results:
        for label in ("float TFLite", "converter PTQ full-int8", "tuner all-int8 (realize)"):
            r = res["routes"].get(label)
            if r is None:
                rows.append([res["name"], label] + ["-"] * 7)
            elif "error" in r:
                rows.append([res["name"], label, "ERROR"] + ["-"] * 5 + [type(r["error"]).__name__])
            else:
                rounds = r.get("lat_rounds") or [float("nan")]
                rows.append([res["name"], label, f"{100 * r['acc']:.2f}",
                             f"{100 * r.get('agree', float('nan')):.2f}", f"{r.get('dp', float('nan')):.5f}",
                             f"{r['lat']:.4f}", f"{min(rounds):.4f}-{max(rounds):.4f}",
                             f"{r['secs']:.2f}", r["ops"]])
    print("\nAccuracy (test, %) and latency (ms, median of 300 invokes, batch 1, 1 thread)")
    print("(make s: float = concrete-function convert; PTQ = from_keras_model convert incl. calibration;"
          " all-int8 = median realize())")
    print(table(["model", "route", "acc %", "top1 = float %", "mean |dp|", "latency ms", "3 more runs ms",
                 "make s", "TFLite ops"], rows))
    print("  top1 = float: test samples whose top-1 class equals the float TFLite model's; mean |dp|: mean absolute"
          " difference of the softmax outputs from the float TFLite model's;\n  3 more runs: min-max of three more"
          " latency_ms(20, 300), interleaved across the routes of the model")
    for res in results:
        print(f"  {res['name']}: {res['units']} units, Keras float test accuracy {100 * res['keras_acc']:.2f} %, "
              f"sum |weights| {res['checksum']:.6f}")

    print("\nOne trial, seconds per step (first = first realization of that configuration, incl. warm-up;"
          f" median = median of the {REPEATS} following ones)")
    cols = list(STEPS) + ["realize", "acc_pass", "lat_bench", "evaluate", "trial"]
    rows = []
    for res in results:
        for label, t in res["trials"].items():
            if "error" in t:
                rows.append([res["name"], label, "ERROR"] + ["-"] * len(cols))
                continue
            for which in ("first", "median"):
                rows.append([res["name"], label, which] + [f"{t[which][c]:.3f}" for c in cols])
    print(table(["model", "config", "run"] + cols, rows))
    print("  realize = annotate+apply+calibrate+convert+inspect; evaluate = Evaluator.evaluate().seconds "
          "(accuracy pass + latency benchmark);\n  acc_pass / lat_bench = the same two parts timed "
          "separately; trial = realize + evaluate")
    rows = []
    for res in results:
        for label, t in res["trials"].items():
            if "error" not in t:
                rows.append([res["name"], label, f"{100 * t['argmax_acc']:.2f}", f"{100 * t['acc'][0]:.2f}",
                             f"{100 * t.get('agree', float('nan')):.2f}", f"{t.get('dp', float('nan')):.5f}",
                             f"{t['lat']:.4f}", f"{len(t['units'])}/{res['units']}", op_summary(t["tflite"])])
    print("\nTrial configurations: accuracy, latency (median over the 4 realizations' Evaluator runs)")
    print(table(["model", "config", "acc % (argmax)", "Evaluator acc %", "top1 = float %", "mean |dp|", "latency ms", "int8 units",
                 "TFLite ops"], rows))

    for res in results:
        fk = res.get("from_keras")
        if fk is None:
            continue
        print(f"\n{res['name']}: converting the quantize-applied, calibrated all-int8 model")
        if "error" in fk:
            print(f"  FAILED: {type(fk['error']).__name__}: {fk['error']}")
            continue
        print(table(["conversion path", "seconds", "acc %"], [
            ["TFLiteConverter.from_keras_model(qmodel).convert()", f"{fk['slow']:.2f}", f"{100 * fk['acc_slow']:.2f}"],
            ["realize.convert (concrete function)", f"{fk['fast']:.2f}", f"{100 * fk['acc_fast']:.2f}"]]))
        print(f"  identical bytes: {fk['same_bytes']}; max |output difference| on the test set: {fk['max_diff']:.3g}; "
              f"max |difference| of this rebuilt model (concrete path) vs the realize() all-int8 model: "
              f"{fk['vs_realize']:.3g}")

    print("\nNotes:")
    for n in notes or ["none"]:
        print("  - " + n)
    cpu = sum(os.times()[:4])
    print(f"\nTotal runtime: {total:.1f} s wall, {cpu:.1f} s CPU of this process; "
          f"load average at the end {os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[2]:.2f} (15 min) "
          f"on {os.cpu_count()} CPUs -- times are inflated if other processes shared the machine")


def main(argv=None) -> int:
    global REPEATS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cnn,mobilenetv2", help="comma-separated: cnn, mobilenetv2")
    ap.add_argument("--zoo", metavar="DIR", help="take MobileNetV2 from the benchmark zoo's cache in DIR")
    ap.add_argument("--steps-only", action="store_true", help="only the per-step times of the trials")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    args = ap.parse_args(argv)
    REPEATS = args.repeats
    models = args.models.split(",")
    cmd = " ".join(shlex.quote(a) for a in ["python"] + sys.argv)
    print(f"$ cd {shlex.quote(os.getcwd())} && {cmd}   (interpreter: {sys.executable})", flush=True)
    print(f"tensorflow {tf.__version__}, tf_keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    results, notes = [], []

    if "cnn" in models:
        log("training the demo CNN (15 epochs, batch 32, adam)")
        model, calib_x, x_test, y_test, acc = train_cnn()
        bench_model("demo CNN", model, calib_x, x_test, y_test, acc, results, notes, steps_only=args.steps_only)

    if "mobilenetv2" in models:
        if args.zoo:
            log(f"MobileNetV2 from the zoo cache {args.zoo}")
            model, calib_x, x_test, y_test, acc = zoo_mobilenet(args.zoo)
        else:
            log("training MobileNetV2 alpha 0.35 on 32x32 digits (BN momentum 0.9, 20 epochs, batch 32, adam)")
            model, calib_x, x_test, y_test, acc = train_mobilenet()
        bench_model("MobileNetV2", model, calib_x, x_test, y_test, acc, results, notes, compare_from_keras=True,
                    steps_only=args.steps_only)

    report(results, notes, time.perf_counter() - _T0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
