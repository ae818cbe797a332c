"""Issue 12, item 8: the realize step per model kind, and how much of each zoo model the search reaches.

    python benchmarks/kinds.py [--configs 10] [--cases cnn,cnn_outliers,rescnn,mlp,mobilenetv2]

1. The zoo's MobileNetV2 (tf_keras, 32x32x1, trained on digits) in four kinds: the tf_keras model,
   the same network in Keras 3 with its weights, a plain SavedModel (Keras 3's `export`) and the
   converter's `.tflite` of it. For each kind, the same random configurations are realized
   (calibration once, then one quantization per configuration, read back); printed: the median
   realize time per configuration, and its ratio to the tf_keras model on the path the default
   backend took before session 4 (`realize_denylist.DenylistRealizer` on the walker's units),
   realized in the same loop, interleaved configuration by configuration.
2. For each zoo model: the share of its multiply-adds that the search can make int8, before
   (the walker's units, tfmot's registry) and after (every op the quantizer can run in int8).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zoo import digits32, load_cases  # noqa: E402

from tf_tpe_tuner._tf import tf  # noqa: E402
from tf_tpe_tuner.data import ArrayData  # noqa: E402
from tf_tpe_tuner.realize_denylist import DenylistRealizer  # noqa: E402
from tf_tpe_tuner.realizers import make_realizer  # noqa: E402
from tf_tpe_tuner.run_setup import model_graph  # noqa: E402
from tf_tpe_tuner.walker import walk  # noqa: E402


def four_kinds(tf_keras_model, where: str) -> dict:
    import keras

    k3 = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 1), alpha=0.35, classes=10)
    k3.set_weights(tf_keras_model.get_weights())
    k3.export(os.path.join(where, "saved"), verbose=False)
    tflite = tf.lite.TFLiteConverter.from_saved_model(os.path.join(where, "saved")).convert()
    return {"tf_keras": tf_keras_model, "keras3": k3, "saved_model": os.path.join(where, "saved"),
            "tflite": tflite}


def realize_times(models: dict, calib: ArrayData, configs: int) -> dict[str, list[float]]:
    realizers = {kind: make_realizer("denylist", model_graph(m), calib) for kind, m in models.items()}
    old = walk(models["tf_keras"])
    realizers["tf_keras, walker path (before)"] = DenylistRealizer(old, calib)
    for r in realizers.values():
        r.realize([])  # calibration, paid once per run
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {kind: [] for kind in realizers}
    for _ in range(configs):
        draw = rng.random(200)
        for kind, r in realizers.items():
            names = r.graph.unit_names
            int8 = [u for u, p in zip(names, draw) if p < 0.5]
            start = time.perf_counter()
            r.realize(int8)
            times[kind].append(time.perf_counter() - start)
    return times


def mac_share_before(model, after) -> float:
    """The share of the TFLite model's multiply-adds in ops whose layer is in a walker unit."""
    walked = walk(model)
    layers = {walked.display_names.get(layer, layer) for u in walked.units for layer in u.layers}
    total = sum(after.macs.values()) or 1
    reached = 0
    for node, macs in after.macs.items():
        shown = after.display_names.get(node, "")
        layer = shown.split(":")[0].split("#")[0]
        if layer in layers:
            reached += macs
    return reached / total


def separable_cnn():
    """A tf_keras digits-sized CNN whose compute sits mostly in SeparableConv2D layers (outside
    tfmot's registry: the walker left them float), untrained: shares do not depend on weights."""
    from tf_tpe_tuner._tf import keras

    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inputs)
    for i in range(4):
        h = keras.layers.SeparableConv2D(32, 3, padding="same", activation="relu", name=f"sep{i}")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(h), name="sepcnn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=10)
    parser.add_argument("--cases", default="cnn,cnn_outliers,rescnn,mlp,mobilenetv2")
    args = parser.parse_args()
    cases = {c.name: c for c in load_cases(names=args.cases.split(","), log=lambda *a: None)}
    (x32, _), _ = digits32()
    if "mobilenetv2" in cases:
        with tempfile.TemporaryDirectory() as where:
            models = four_kinds(cases["mobilenetv2"].model, where)
            times = realize_times(models, ArrayData([x32[:200]]), args.configs)
        before = statistics.median(times["tf_keras, walker path (before)"])
        print(f"realize step per configuration, MobileNetV2, median of {args.configs} (interleaved):")
        for kind, t in times.items():
            print(f"  {kind:<32} {1000 * statistics.median(t):8.1f} ms   {statistics.median(t) / before:5.2f}x before")
    print("multiply-add share the search reaches (before: walker units / after: quantizable ops):")
    for name, model in [(n, c.model) for n, c in cases.items()] + [("sepcnn", separable_cnn())]:
        after = model_graph(model)
        print(f"  {name:<14} {100 * mac_share_before(model, after):6.1f} %  ->  "
              f"{100 * sum(after.mac_shares().values()):6.1f} %   ({len(walk(model).units)} -> "
              f"{len(after.units)} units)")


if __name__ == "__main__":
    main()
