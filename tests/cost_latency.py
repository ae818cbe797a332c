"""Latencies that make int8 pay, or not, on any CPU, for tests whose subject is what the tuner
does then (`tune(latency_func=int8_pays)`, `tf-tpe-tune --latency_func=tests/cost_latency.py:int8_pays`).

Whether int8 pays on the machine at hand depends on its CPU: on an AVX2-only AMD EPYC (Zen 3,
no VNNI) the small test CNN's all-int8 model reads 1.2x float and hand_landmark_full's 0.99-1.06x,
where CPUs with VNNI read 0.4-0.7x. A test that reads the clock would be deciding on that, not on
the tuner.
"""
import numpy as np


def int8_pays(tflite: bytes, int8_share: float = 0.25) -> float:
    """Seconds on a CPU where int8 pays: an op costs its multiply-adds, `int8_share` of that in
    int8, and a QUANTIZE / DEQUANTIZE its elements."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils as fu
    model = fu.read_model_from_bytearray(bytearray(tflite))
    sg = model.subgraphs[0]
    size = lambda t: int(np.prod([max(1, d) for d in sg.tensors[t].shape]))  # noqa: E731
    cost = 0.0
    for op in sg.operators:
        kind = fu.opcode_to_name(model, op.opcodeIndex)
        out = size(op.outputs[0])
        if kind in ("QUANTIZE", "DEQUANTIZE"):
            cost += out
            continue
        shape = sg.tensors[op.inputs[1]].shape if len(op.inputs) > 1 else None
        macs = out
        if kind in ("CONV_2D", "FULLY_CONNECTED") and shape is not None:
            macs = out * int(np.prod(shape[1:]))
        elif kind == "DEPTHWISE_CONV_2D":
            macs = out * int(np.prod(shape[1:-1]))
        int8 = sg.tensors[op.outputs[0]].type == fb.TensorType.INT8
        cost += macs * (int8_share if int8 else 1.0)
    return cost * 1e-10  # 0.1 ns a multiply-add: the small test CNN in tens of microseconds


def int8_slower(tflite: bytes) -> float:
    """Seconds on a CPU where int8 ops take twice as long as float ones."""
    return int8_pays(tflite, int8_share=2.0)


# the same for the command line: tf-tpe-tune loads the function from this file
FLAG = f"--latency_func={__file__}:int8_pays"
FLAG_SLOWER = f"--latency_func={__file__}:int8_slower"
