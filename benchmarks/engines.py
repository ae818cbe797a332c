"""Which engine realizes a configuration of a float .tflite: the project's (TensorFlow's
calibrator once, then the converter's MLIR quantizer with a denylist per configuration) or
Google's ai-edge-quantizer (AEQ; a recipe with a `no_quantize` entry per float op).

    pip install ai-edge-quantizer==0.10.0   # beside the project's pins (it changes none)
    python benchmarks/engines.py [--configs 10] [--zoo /tmp/tf_tpe_tuner_zoo] [--out engines.json]

Models: MediaPipe 0.10.14's face_landmark and hand_landmark_lite as shipped (tests/pretrained.py
fetches the wheel), and the zoo's digits CNN and residual CNN converted to float .tflite files.
Per model and engine: what fails on the model as shipped; calibration time; per configuration
(all-int8 and seeded random ones) the time to realize it, whether the int8 op set is exactly the
one asked for (read by op index from the flatbuffer, not by name), and the fidelity to the float
model (MAE of the first output on held-out inputs; top-1 for the zoo); the all-int8 latency of
both engines as ratios to the float model, measured side by side in one loop.
"Equal statistics": AEQ's own calibration is a moving average of per-sample extremes; it is also
run with the project's global min/max per tensor put into AEQ's calibration result, so that the
engines differ only in how they quantize.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

from tf_tpe_tuner.data import ArrayData  # noqa: E402
from tf_tpe_tuner.realize_tflite import TfliteRealizer  # noqa: E402
from tf_tpe_tuner.tflite_edit import QuantizedIOModel, apply_io_options  # noqa: E402
from tf_tpe_tuner.tflite_graph import read_graph  # noqa: E402

SIGNATURE = "serving_default"


def _fb(tflite: bytes):
    from tensorflow.lite.tools import flatbuffer_utils as fu
    return fu, fu.read_model_from_bytearray(bytearray(tflite))


def compute_ops(tflite: bytes) -> list[tuple[str, bool]]:
    """(op type, runs in an integer type) of every op but QUANTIZE/DEQUANTIZE, in order."""
    from tensorflow.lite.python import schema_py_generated as fb
    fu, model = _fb(tflite)
    ints = {fb.TensorType.INT8, fb.TensorType.UINT8, fb.TensorType.INT16}
    sg = model.subgraphs[0]
    return [(fu.opcode_to_name(model, op.opcodeIndex), sg.tensors[op.outputs[0]].type in ints)
            for op in sg.operators if fu.opcode_to_name(model, op.opcodeIndex) not in ("QUANTIZE", "DEQUANTIZE")]


def exact(tflite: bytes, graph, int8: set[str]) -> bool | str:
    """The int8 op set equals the request: unit ops by op index against the folded float model."""
    float_ops = compute_ops(graph.float_model)
    got = compute_ops(tflite)
    if [k for k, _ in got] != [k for k, _ in float_ops]:
        return "op list differs"
    fu, model = _fb(graph.float_model)
    sg = model.subgraphs[0]
    names = [sg.tensors[op.outputs[0]].name.decode() for op in sg.operators]
    for unit in graph.units:
        if got[names.index(unit.layers[0])][1] != (unit.name in int8):
            return False
    return True


def with_signature(tflite: bytes) -> bytes:
    """AEQ needs a SignatureDef: one named after the io tensors (shipped models have none)."""
    fu, model = _fb(tflite)
    if model.signatureDefs:
        return tflite
    sg = model.subgraphs[0]
    ins = [sg.tensors[t].name.decode() for t in sg.inputs]
    outs = [sg.tensors[t].name.decode() for t in sg.outputs]
    return apply_io_options(tflite, {"input_type": "float32", "output_type": "float32", "batch": "dynamic"},
                            ins, outs)


def signature_inputs(tflite: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_content=tflite).get_signature_runner(SIGNATURE)
    return list(runner.get_input_details())


def outputs(tflite: bytes, x: np.ndarray) -> list[np.ndarray]:
    out = QuantizedIOModel(tflite)(x)
    return out if isinstance(out, list) else [out]


# -- the engines ------------------------------------------------------------------------------
class Project:
    name = "project"

    def __init__(self, graph, calib: np.ndarray):
        self.graph = graph
        self.realizer = TfliteRealizer(graph, ArrayData([calib]))
        self.restore_s: list[float] = []  # of the realization: keep_interface (AEQ does none)
        self.untimed_s = 0.0

    def calibrate(self) -> None:
        self.realizer.calibrate()

    def realize(self, int8: set[str]) -> bytes:
        from tf_tpe_tuner.tflite_shipped import keep_interface
        tflite = self.realizer.realize(int8).tflite_model
        start = time.perf_counter()  # what the restore inside realize() cost, timed again
        keep_interface(tflite, self.graph.reference_model)
        self.untimed_s = time.perf_counter() - start
        self.restore_s.append(self.untimed_s)
        return tflite


class AEQ:
    name = "ai-edge-quantizer"

    def __init__(self, graph, calib: np.ndarray, equal_stats: bool):
        self.graph = graph
        self.model = with_signature(graph.float_model)  # folded: AEQ fails on the shipped file
        self.input_name = signature_inputs(self.model)[0]
        self.calib = calib
        self.equal_stats = equal_stats
        self.name = "aeq, project's min/max" if equal_stats else "aeq, own calibration"
        self.result = None

    def _quantizer(self, recipe):
        from ai_edge_quantizer import quantizer
        return quantizer.Quantizer(bytearray(self.model), recipe)

    def calibrate(self) -> None:
        from ai_edge_quantizer import recipe
        q = self._quantizer(recipe.static_wi8_ai8())
        data = {SIGNATURE: [{self.input_name: self.calib[i:i + 1]} for i in range(len(self.calib))]}
        result = q.calibrate(data)
        if self.equal_stats:  # the project's global min/max, in AEQ's own format
            from tensorflow.lite.tools import flatbuffer_utils as fu
            from tf_tpe_tuner.tflite_graph import calibrate
            calibrated = fu.read_model_from_bytearray(bytearray(
                calibrate(self.graph.float_model, ArrayData([self.calib]), self.graph.input_shapes)))
            ranges = {t.name.decode(): (t.quantization.min, t.quantization.max)
                      for t in calibrated.subgraphs[0].tensors
                      if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min)}
            for name, qsv in result.items():
                if name in ranges:
                    lo, hi = ranges[name]
                    qsv["min"] = np.full_like(np.asarray(qsv["min"]), float(lo[0]))
                    qsv["max"] = np.full_like(np.asarray(qsv["max"]), float(hi[0]))
        self.result = result

    def recipe(self, int8: set[str]) -> list[dict]:
        from ai_edge_quantizer import recipe
        entries = list(recipe.static_wi8_ai8())
        for unit in self.graph.units:
            if unit.name not in int8:  # AEQ's scope is the op's output names joined, with a trailing ';'
                entries.append({"regex": f"^{re.escape(unit.layers[0])};$", "operation": "*",
                                "algorithm_key": "no_quantize"})
        return entries

    def realize(self, int8: set[str]) -> bytes:
        q = self._quantizer(self.recipe(int8))
        return bytes(q.quantize(self.result, enable_progress_report=False).quantized_model)


def shipped_failures(shipped: bytes, calib: np.ndarray) -> dict[str, str]:
    """What AEQ does with the model as shipped, with no signature and with one added."""
    from ai_edge_quantizer import quantizer, recipe
    found = {}
    for label, model in (("as shipped", shipped), ("shipped + a signature", with_signature(shipped))):
        try:
            q = quantizer.Quantizer(bytearray(model), recipe.static_wi8_ai8())
            name = signature_inputs(model)[0] if label != "as shipped" else "input_1"
            result = q.calibrate({SIGNATURE: [{name: calib[i:i + 1]} for i in range(4)]})
            out = bytes(q.quantize(result, enable_progress_report=False).quantized_model)
            ints = sum(i for _, i in compute_ops(out))
            found[label] = f"ran: {ints} of {len(compute_ops(out))} compute ops int8"
            QuantizedIOModel(out)(calib[:1])
        except Exception as err:  # noqa: BLE001  a failure is a result here
            found[label] = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
    return found


# -- cases --------------------------------------------------------------------------------------
def mediapipe_cases():
    import pretrained
    for name, images in (("face_landmark", lambda n, s: pretrained.faces(n, s)),
                         ("hand_landmark_lite", lambda n, s: pretrained.crops("hand_landmark_lite", n, s))):
        x = images(64, 1)
        yield name, pretrained.model_bytes(name), x[:32], x[32:], None


def zoo_cases(cache: str):
    from tf_tpe_tuner._tf import tf
    from zoo import load_cases
    for case in load_cases(cache, names=["cnn", "rescnn"], log=lambda *a: None):
        model = case.model
        spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="image")
        concrete = tf.function(lambda t, m=model: m(t, training=False), input_signature=[spec]).get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
        converter.experimental_lower_to_saved_model = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tflite = converter.convert()
        yield case.name, tflite, case.calib_x[:100], case.eval_x[:400], case.eval_y[:400]


def measure(name, shipped, calib, held, labels, n_configs: int, seed: int = 0) -> dict:
    graph = read_graph(shipped, ArrayData([calib]))
    rng = np.random.default_rng(seed)
    configs = [set(graph.unit_names)] + [{u for u in graph.unit_names if rng.random() < 0.5}
                                         for _ in range(n_configs - 1)]
    reference = outputs(shipped, held)[0]
    row = {"model": name, "units": len(graph.units), "engines": {}}
    if labels is None:
        row["aeq_on_the_shipped_file"] = shipped_failures(shipped, calib)
    all_int8 = {}
    for engine in (Project(graph, calib), AEQ(graph, calib, False), AEQ(graph, calib, True)):
        entry = {"failures": []}
        try:
            start = time.perf_counter()
            engine.calibrate()
            entry["calibrate_s"] = round(time.perf_counter() - start, 3)
        except Exception as err:  # noqa: BLE001
            entry["failures"].append(f"calibrate: {type(err).__name__}: {str(err)[:160]}")
            row["engines"][engine.name] = entry
            continue
        times, exacts, errors, accs = [], [], [], []
        for int8 in configs:
            try:
                start = time.perf_counter()
                tflite = engine.realize(int8)
                times.append(time.perf_counter() - start - getattr(engine, "untimed_s", 0.0))
                exacts.append(exact(tflite, graph, int8))
                out = outputs(tflite, held)[0]
                errors.append(float(np.mean(np.abs(out - reference))))
                if labels is not None:
                    accs.append(float(np.mean(np.argmax(out, -1) == labels)))
                if int8 == configs[0]:
                    all_int8[engine.name] = tflite
            except Exception as err:  # noqa: BLE001
                entry["failures"].append(f"{len(int8)} int8 units: {type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}")
        entry.update({
            "realize_s_median": round(float(np.median(times)), 4) if times else None,
            **({"of_which_keep_interface_s_median": round(float(np.median(engine.restore_s)), 4)}
               if getattr(engine, "restore_s", None) else {}),
            "exact": f"{sum(e is True for e in exacts)}/{len(configs)}",
            "not_exact": [str(e) for e in exacts if e is not True][:3],
            "mae_all_int8": round(errors[0], 4) if errors and configs[0] == set(graph.unit_names) else None,
            "mae_median": round(float(np.median(errors)), 4) if errors else None,
            **({"top1_all_int8": accs[0], "top1_float": float(np.mean(np.argmax(reference, -1) == labels))}
               if accs else {}),
        })
        row["engines"][engine.name] = entry
    from tf_tpe_tuner.evaluate import TFLiteModel
    float_model = TFLiteModel(shipped)
    row["all_int8_latency_ratio"] = {
        k: round(float(np.median([TFLiteModel(v).latency_ratio(float_model, 20, 300) for _ in range(3)])), 3)
        for k, v in all_int8.items()}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", type=int, default=10)
    parser.add_argument("--zoo", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tf_tpe_tuner_zoo"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--models", default="face_landmark,hand_landmark_lite,cnn,rescnn")
    args = parser.parse_args()
    wanted = set(args.models.split(","))
    rows = []
    for case in list(mediapipe_cases()) + list(zoo_cases(args.zoo)):
        if case[0] in wanted:
            rows.append(measure(*case, n_configs=args.configs))
            print(json.dumps(rows[-1], indent=1), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
