"""Pretrained float models as MediaPipe 0.10.14 ships them (issue 13): float16 weights behind
DEQUANTIZE, sparse weights behind DENSIFY, no SignatureDef, several outputs, a batch of 1 fixed
inside the graph, TFLite metadata. face_landmark is a model where all-int8 is slower than float
(int8 PRELU has no fast kernel), hand_landmark_lite one where int8 pays; pose_detection has the
sparse weights and a batch held inside the graph. The models are read from the real wheel
(tests/pretrained.py: downloaded once into a cache, sha256-pinned; a failed download fails)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

import pretrained
from tf_tpe_tuner.data import ArrayData
from tf_tpe_tuner.evaluate import TFLiteModel
from tf_tpe_tuner.realize_tflite import TfliteRealizer
from tf_tpe_tuner.rebuild import rebuild
from tf_tpe_tuner.tflite_graph import calibrate, read_graph

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def flatbuffer(tflite: bytes):
    from tensorflow.lite.tools import flatbuffer_utils as fu
    return fu.read_model_from_bytearray(bytearray(tflite))


def ops(tflite: bytes) -> list[tuple[str, str]]:
    """(op type, output dtype) of every op, in order, read from the flatbuffer directly."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils as fu
    types = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    model = flatbuffer(tflite)
    sg = model.subgraphs[0]
    return [(fu.opcode_to_name(model, op.opcodeIndex), types[sg.tensors[op.outputs[0]].type])
            for op in sg.operators]


def compute_ops(tflite: bytes) -> list[tuple[str, str]]:
    return [op for op in ops(tflite) if op[0] not in ("QUANTIZE", "DEQUANTIZE")]


def io_names(tflite: bytes) -> tuple[list[str], list[str]]:
    sg = flatbuffer(tflite).subgraphs[0]
    return ([sg.tensors[t].name.decode() for t in sg.inputs], [sg.tensors[t].name.decode() for t in sg.outputs])


def metadata(tflite: bytes) -> dict[str, bytes]:
    model = flatbuffer(tflite)
    found = {m.name.decode(): bytes(model.buffers[m.buffer].data) for m in model.metadata or []}
    for i, b in enumerate(model.metadataBuffer if model.metadataBuffer is not None else []):
        found[f"metadataBuffer[{i}]"] = bytes(model.buffers[int(b)].data)
    return found


def as_list(value):
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def face():
    x = pretrained.faces(24)
    graph = read_graph(pretrained.model_bytes("face_landmark"), ArrayData([x]))
    return graph, x


@pytest.fixture(scope="module")
def hand():
    x = pretrained.crops("hand_landmark_lite", 24)
    graph = read_graph(pretrained.model_bytes("hand_landmark_lite"), ArrayData([x]))
    return graph, x


def test_shipped_model_loads_folded_with_the_same_outputs(face):
    graph, x = face
    shipped = pretrained.model_bytes("face_landmark")
    assert sum(kind == "DEQUANTIZE" for kind, _ in ops(shipped)) == 113
    assert graph.reference_model == shipped  # the float reference is the file as shipped
    folded = ops(graph.float_model)
    assert not any(kind in ("DEQUANTIZE", "DENSIFY") for kind, _ in folded)
    assert {dtype for _, dtype in folded} == {"FLOAT32"}
    assert len(graph.units) == 88
    for a, b in zip(as_list(TFLiteModel(shipped)(x)), as_list(TFLiteModel(graph.float_model)(x))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def pose():
    x = pretrained.crops("pose_detection", 12)
    return read_graph(pretrained.model_bytes("pose_detection"), ArrayData([x])), x


def test_sparse_weights_are_densified_and_the_batch_kept(pose):
    """pose_detection: float16 weights, 38 of them sparse behind DENSIFY, and a batch of 1
    held inside the graph (resized to 5 it returns one row of 5 x 2254 boxes, no error)."""
    graph, x = pose
    shipped = graph.reference_model
    assert sum(kind == "DENSIFY" for kind, _ in ops(shipped)) == 38
    assert not any(kind in ("DEQUANTIZE", "DENSIFY") for kind, _ in ops(graph.float_model))
    batched = as_list(TFLiteModel(shipped)(x[:5]))
    assert [o.shape for o in batched] == [(5, 2254, 12), (5, 2254, 1)]
    one_by_one = [as_list(TFLiteModel(shipped)(x[i:i + 1])) for i in range(5)]
    folded = as_list(TFLiteModel(graph.float_model)(x[:5]))
    for k in range(2):
        expected = np.concatenate([o[k] for o in one_by_one])
        np.testing.assert_array_equal(batched[k], expected)
        np.testing.assert_allclose(folded[k], expected, rtol=1e-5, atol=1e-4)
    realized = TfliteRealizer(graph, ArrayData([x])).realize(graph.unit_names)
    assert set(realized.int8_units) == set(graph.unit_names)


def batch_held_model() -> bytes:
    """A converter-made model with a batch of 1 fixed, whose last op (a MEAN over every axis,
    the batch's too) is each image's own mean only at that batch."""
    from tf_tpe_tuner._tf import tf
    kernel = tf.constant(np.random.default_rng(0).standard_normal((3, 3, 1, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
    def serve(x):
        h = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME"))
        return h - tf.reduce_mean(h)
    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()]).convert()


def test_calibration_feeds_a_fixed_batch_one_sample_at_a_time():
    """The calibrated range of the output is the min/max of the float outputs computed sample
    by sample (a calibrator that resized the batch would feed all 16 at once, and the model
    then subtracts the mean of all 16 images)."""
    tflite = batch_held_model()
    x = np.random.default_rng(1).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32) * \
        np.linspace(0.1, 3, 16, dtype=np.float32).reshape(-1, 1, 1, 1)
    graph = read_graph(tflite, ArrayData([x]))
    assert graph.input_shapes == [(1, 8, 8, 1)]
    calibrated = flatbuffer(calibrate(graph.float_model, ArrayData([x]), graph.input_shapes, batch_size=32))
    sg = calibrated.subgraphs[0]
    out = TFLiteModel(tflite)(x)
    expected = np.concatenate([TFLiteModel(tflite)(x[i:i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)  # evaluation: one at a time
    q = sg.tensors[sg.outputs[0]].quantization
    np.testing.assert_allclose([q.min[0], q.max[0]], [expected.min(), expected.max()], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["face", "hand"])
def test_configurations_are_realized_exactly_by_op_index(which, face, hand):
    graph, x = face if which == "face" else hand
    names = [n.split(";")[0] for n in _op_output_names(graph.float_model)]
    op_of_unit = {u.name: names.index(u.layers[0].split(";")[0]) for u in graph.units}
    float_ops = ops(graph.float_model)
    realizer = TfliteRealizer(graph, ArrayData([x]))
    rng = np.random.default_rng(0)
    configs = [graph.unit_names, [u for u in graph.unit_names if not u.startswith("prelu")],
               graph.unit_names[:1], graph.unit_names[-1:]]
    configs += [[u for u in graph.unit_names if rng.random() < 0.5] for _ in range(3)]
    for int8 in configs:
        realization = realizer.realize(int8)
        got = compute_ops(realization.tflite_model)
        assert [kind for kind, _ in got] == [kind for kind, _ in float_ops]
        for unit in graph.unit_names:
            dtype = got[op_of_unit[unit]][1]
            assert (dtype == "INT8") == (unit in int8), (unit, dtype)
        assert set(realization.int8_units) == set(int8)


def _op_output_names(tflite: bytes) -> list[str]:
    model = flatbuffer(tflite)
    sg = model.subgraphs[0]
    return [sg.tensors[op.outputs[0]].name.decode() for op in sg.operators]


def test_every_model_keeps_the_shipped_interface(face):
    """Names and order of inputs and outputs, the metadata MediaPipe reads, and float16
    weights for the ops that stay float (a mostly-float model is as small as the shipped one)."""
    graph, x = face
    shipped = graph.reference_model
    realizer = TfliteRealizer(graph, ArrayData([x]))
    assert io_names(shipped) == (["input_1"], ["conv2d_21", "conv2d_31"])
    for int8 in (graph.unit_names, graph.unit_names[:3]):
        tflite = realizer.realize(int8).tflite_model
        assert io_names(tflite) == io_names(shipped)
        kept = metadata(tflite)
        for key, value in metadata(shipped).items():
            assert kept[key] == value, key
        model = TFLiteModel(tflite)
        assert [d["name"] for d in model._outputs] == ["conv2d_21", "conv2d_31"]
        assert [o.shape for o in as_list(model(x[:2]))] == [(2, 1, 1, 1404), (2, 1, 1, 1)]
    float16 = [dtype for kind, dtype in ops(tflite) if kind == "DEQUANTIZE"]
    assert float16 and len(tflite) < 1.01 * len(shipped) < 0.6 * len(graph.float_model)


def test_export_keeps_names_and_metadata_and_the_fixed_batch(face, tmp_path):
    graph, x = face
    shipped = graph.reference_model
    config = {"units": {u: ("fp32" if u.startswith("prelu") else "int8") for u in graph.unit_names},
              "realization": {"backend": "denylist", "calibration": {"sampling_size": len(x), "batch_size": 32}}}
    exported = rebuild(shipped, config, x, graph=graph)
    assert exported.io["batch"] == "1"
    assert (exported.input_names, exported.output_names) == io_names(shipped)
    assert metadata(exported.tflite_model)["TFLITE_METADATA"] == metadata(shipped)["TFLITE_METADATA"]
    # the command line: --batch=dynamic cannot be had for a model that fixes its batch
    model = tmp_path / "face_landmark.tflite"
    model.write_bytes(shipped)
    (tmp_path / "best_config.yaml").write_text(yaml.safe_dump(config))
    np.savez(tmp_path / "calib.npz", x=x)
    base = [sys.executable, "-m", "tf_tpe_tuner.export_cli", f"--model={model}",
            f"--config={tmp_path / 'best_config.yaml'}", f"--calib_data={tmp_path / 'calib.npz'}",
            f"--output={tmp_path / 'out.tflite'}"]
    done = subprocess.run(base + ["--batch=dynamic"], env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "fixes its batch at 1" in lines[0], done.stderr
    assert not (tmp_path / "out.tflite").exists()
    done = subprocess.run(base, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "batch 1 (fixed by the model" in done.stdout
    written = (tmp_path / "out.tflite").read_bytes()
    assert io_names(written) == io_names(shipped)
    assert metadata(written)["TFLITE_METADATA"] == metadata(shipped)["TFLITE_METADATA"]


def test_a_custom_op_is_refused_in_one_line_naming_it(tmp_path):
    model = pretrained.model_file("selfie_segmentation", tmp_path)
    np.savez(tmp_path / "calib.npz", x=pretrained.crops("selfie_segmentation", 2), y=np.zeros(2))
    done = subprocess.run([sys.executable, "-m", "tf_tpe_tuner", f"--model={model}",
                           f"--calib_data={tmp_path / 'calib.npz'}", f"--eval_data={tmp_path / 'calib.npz'}",
                           f"--output_dir={tmp_path / 'out'}"], env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tf-tpe-tune: error: the TFLite model has a custom op 'Convolution2DTransposeBias' that LiteRT "
        "cannot run without its own kernel"]
