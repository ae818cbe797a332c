"""A float .tflite file written by the TFLite converter, tuned with no Keras model (issue 12, the
.tflite kind): units found by asking the quantizer, every configuration realized exactly, the
command line end to end, export from best_config.yaml, and the refusals."""
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

import cost_latency
from conftest import FAST_PERF
from tf_tpe_tuner import TunerInputError, tune
from tf_tpe_tuner._tf import tf
from tf_tpe_tuner.data import ArrayData
from tf_tpe_tuner.realize_tflite import TfliteRealizer
from tf_tpe_tuner.tflite_graph import read_graph

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def converted(model) -> bytes:
    spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="image")
    concrete = tf.function(lambda t: model(t, training=False), input_signature=[spec]).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.experimental_lower_to_saved_model = False
    return converter.convert()


@pytest.fixture(scope="module")
def cnn_tflite(cnn, digits, tmp_path_factory):
    (x, _), (xt, yt) = digits
    root = tmp_path_factory.mktemp("tflite")
    (root / "model.tflite").write_bytes(converted(cnn))
    np.savez(root / "calib.npz", x=x[:100])
    np.savez(root / "eval.npz", x=xt, y=yt)
    (root / "conf.yaml").write_text(yaml.safe_dump({"evaluation": {"performance": FAST_PERF}}))
    return root


def op_dtypes(tflite: bytes) -> list[tuple[str, str]]:
    """(op type, output dtype) of every op but QUANTIZE / DEQUANTIZE, in order: read from the
    flatbuffer directly, without the names the realizer maps by."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils as fu
    types = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    model = fu.read_model_from_bytearray(bytearray(tflite))
    sg = model.subgraphs[0]
    out = []
    for op in sg.operators:
        kind = fu.opcode_to_name(model, op.opcodeIndex)
        if kind not in ("QUANTIZE", "DEQUANTIZE"):
            out.append((kind, types[sg.tensors[op.outputs[0]].type]))
    return out


def test_every_configuration_is_realized_exactly_by_op_index(cnn_tflite, digits):
    (x, _), _ = digits
    graph = read_graph(str(cnn_tflite / "model.tflite"))
    float_ops = op_dtypes(graph.float_model)
    assert [k for k, _ in float_ops] == ["CONV_2D", "CONV_2D", "MAX_POOL_2D", "CONV_2D", "RESHAPE",
                                         "FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"]
    unit_index = {u.name: i for i, u in enumerate(graph.units)}
    op_of_unit = [0, 1, 3, 5, 6, 7]  # the units are the compute ops, in model order
    realizer = TfliteRealizer(graph, ArrayData([x[:64]]))
    for k in range(len(graph.units) + 1):
        for int8 in itertools.combinations(graph.unit_names, k):
            ops = op_dtypes(realizer.realize(int8).tflite_model)
            assert [kind for kind, _ in ops] == [kind for kind, _ in float_ops]
            for unit in graph.unit_names:
                dtype = ops[op_of_unit[unit_index[unit]]][1]
                assert (dtype == "INT8") == (unit in int8), (int8, unit, dtype)


def test_dry_run_shares_of_the_multiply_adds(cnn, cnn_tflite):
    out = subprocess.run([sys.executable, "-m", "tf_tpe_tuner", f"--model={cnn_tflite / 'model.tflite'}",
                          "--dry_run"], env=ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    graph = read_graph(str(cnn_tflite / "model.tflite"))
    total = sum(graph.macs.values())
    assert abs(sum(graph.mac_shares().values()) + sum(graph.macs[f.layer] for f in graph.float_layers) / total
               - 1.0) < 1e-12
    # by hand from the Keras layers: output pixels x filters x kernel area x input channels
    for unit, layer in zip(graph.units[:3], ("conv1", "conv2", "conv3")):
        conv = cnn.get_layer(layer)
        _, h, w, filters = conv.output_shape
        kh, kw = conv.kernel_size
        macs = h * w * filters * kh * kw * conv.input_shape[-1]
        assert graph.macs[unit.layers[0]] == macs, layer
        assert f"{100 * macs / total:6.2f} %" in out.stdout
    fc1 = cnn.get_layer("fc1")
    assert graph.macs[graph.units[3].layers[0]] == fc1.input_shape[-1] * fc1.units
    assert "the quantizer leaves this op float" not in out.stdout  # every compute op is a unit here
    assert "MAX_POOL_2D" in out.stdout and "neighbours' precision" in out.stdout


@pytest.mark.slow
def test_the_command_line_tunes_a_tflite_file_and_exports_it_again(cnn_tflite, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "tf_tpe_tuner", f"--model={cnn_tflite / 'model.tflite'}",
            f"--conf={cnn_tflite / 'conf.yaml'}", f"--calib_data={cnn_tflite / 'calib.npz'}",
            f"--eval_data={cnn_tflite / 'eval.npz'}", f"--output_dir={out}",
            cost_latency.FLAG]  # int8 pays on any CPU
    run = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["handed_back"] == "quantized" and summary["met_criterion"] and summary["speedup"] > 1.2
    config = yaml.safe_load((out / "best_config.yaml").read_text())
    graph = read_graph(str(cnn_tflite / "model.tflite"))
    shares = graph.mac_shares()
    assert sum(shares[u] for u in config["int8_units"]) >= 0.5  # at least half the multiply-adds int8
    exported = tmp_path / "exported.tflite"
    again = subprocess.run([sys.executable, "-m", "tf_tpe_tuner.export_cli", f"--model={cnn_tflite / 'model.tflite'}",
                            f"--config={out / 'best_config.yaml'}", f"--calib_data={cnn_tflite / 'calib.npz'}",
                            f"--output={exported}", f"--eval_data={cnn_tflite / 'eval.npz'}"],
                           env=ENV, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    from tf_tpe_tuner.model_compare import same_model
    assert same_model(exported.read_bytes(), (out / "best_model.tflite").read_bytes())


def test_a_tflite_model_refuses_what_it_cannot_do(cnn_tflite, digits, tmp_path):
    (x, _), (xt, yt) = digits
    model = str(cnn_tflite / "model.tflite")
    with pytest.raises(TunerInputError, match="backend annotate needs a tf_keras model"):
        tune(model, {"quantization": {"backend": "annotate"}}, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path))
    graph = read_graph(model)
    quantized = TfliteRealizer(graph, ArrayData([x[:64]])).realize(graph.unit_names).tflite_model
    (tmp_path / "int8.tflite").write_bytes(quantized)
    with pytest.raises(TunerInputError, match="nothing to tune: the TFLite model is already int8"):
        tune(str(tmp_path / "int8.tflite"), None, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path / "o"))
    (tmp_path / "text.tflite").write_text("not a model")
    with pytest.raises(TunerInputError, match="is not a TFLite flatbuffer"):
        tune(str(tmp_path / "text.tflite"), None, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()
