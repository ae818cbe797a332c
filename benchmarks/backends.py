"""The two realization backends side by side: same int8 layers? same accuracy? time per trial?

    python benchmarks/backends.py [--models cnn,rescnn,mobilenetv2] [--configs 6] [--cache DIR] [--show-all]

For each zoo model (`benchmarks/zoo.py`), the same configurations -- every one when the space has
at most 32, else all-int8 plus `--configs` random ones (each unit int8 with probability 0.2 ... 0.9)
-- are realized by `AnnotationRealizer` (tfmot) and by `DenylistRealizer` (calibrate once,
re-quantize), from the same 100 calibration samples. Printed per model:

- the configurations whose int8 units read back from the model differ from the request, per backend;
- test accuracy (or MSE) of both, the largest and the mean difference (denylist - annotate), and
  both per configuration where they differ by more than 0.5 pp (every configuration with `--show-all`);
- how close the two models' test outputs are (the accuracy difference is a few samples' worth):
  mean |output difference| and, for classifiers, the share of samples with the same top-1 class;
- time per trial: realization steps (median over configurations; the denylist's one-off
  calibration is shown apart) and evaluation (accuracy + latency as a ratio to fp32, 300 invokes).
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import zoo  # noqa: E402
from tf_tpe_tuner import Conf, walk  # noqa: E402
from tf_tpe_tuner.data import ArrayData  # noqa: E402
from tf_tpe_tuner.evaluate import Evaluator, TFLiteModel, make_metric  # noqa: E402
from tf_tpe_tuner.realize import AnnotationRealizer  # noqa: E402
from tf_tpe_tuner.realize_denylist import DenylistRealizer  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cnn,rescnn,mobilenetv2")
    ap.add_argument("--configs", type=int, default=6)
    ap.add_argument("--cache", default=zoo.DEFAULT_CACHE)
    ap.add_argument("--show-all", action="store_true", help="print every configuration's accuracies")
    args = ap.parse_args(argv)
    for case in zoo.load_cases(args.cache, names=args.models.split(",")):
        graph = walk(case.model)
        conf = Conf(case.conf)
        units = graph.unit_names
        if 2 ** len(units) <= 32:
            configs = [frozenset(u for u, b in zip(units, bits) if b)
                       for bits in itertools.product([0, 1], repeat=len(units))]
        else:
            rng = np.random.RandomState(0)
            configs = [frozenset(units)] + [frozenset(u for u in units if rng.rand() < p)
                                            for p in np.linspace(0.2, 0.9, args.configs)]
        calib = ArrayData([case.calib_x])
        eval_data = ArrayData([case.eval_x], case.eval_y)
        ev = Evaluator(make_metric(conf.metric_name, conf.metric_topk), eval_data, warmup=20, iterations=300)
        backends = {"annotate": AnnotationRealizer(graph, calib), "denylist": DenylistRealizer(graph, calib)}
        fp32 = backends["denylist"].realize_float().tflite_model
        ev.set_latency_reference(fp32)
        out = {name: {"acc": [], "bad": 0, "steps": [], "eval": [], "outputs": []} for name in backends}
        for cfg in configs:
            for name, realizer in backends.items():
                realization = realizer.realize(cfg)
                evaluation = ev.evaluate(realization.tflite_model)
                o = out[name]
                o["bad"] += realization.int8_units != cfg
                o["acc"].append(evaluation.accuracy)
                o["steps"].append(dict(realization.seconds))
                o["eval"].append(evaluation.seconds)
                o["outputs"].append(TFLiteModel(realization.tflite_model, num_threads=1).predict(eval_data, 256))
        print(f"\n{case.name}: {len(units)} units, {len(configs)} configurations")
        for name, o in out.items():
            once = ""
            steps = [s for s in o["steps"] if s]  # the all-fp32 configuration is the float model
            if name == "denylist":  # its calibration happens once, charged to the first trial
                steps = [{k: v for k, v in s.items() if k not in ("calibrate", "convert")} for s in steps]
                once = f", one-off calibration {sum(backends[name].setup_seconds.values()):.2f} s"
            keys = sorted({k for s in steps for k in s})
            per_step = {k: float(np.median([s.get(k, 0.0) for s in steps])) for k in keys}
            realize = float(np.median([sum(s.values()) for s in steps]))
            print(f"  {name:<9} int8 set differs from the request: {o['bad']}/{len(configs)}; "
                  f"realize {realize:.3f} s/trial ({', '.join(f'{k} {v:.3f}' for k, v in per_step.items())}){once}; "
                  f"evaluate {np.median(o['eval']):.3f} s")
        diff = np.array(out["denylist"]["acc"]) - np.array(out["annotate"]["acc"])
        scale = 100.0 if conf.metric_name == "topk" else 1.0
        unit = "pp" if conf.metric_name == "topk" else conf.metric_name.upper()
        print(f"  accuracy denylist - annotate: max |diff| {scale * np.abs(diff).max():.3f} {unit}, "
              f"mean {scale * diff.mean():+.3f} {unit}, within 0.5 pp: {int(np.sum(np.abs(scale * diff) <= 0.5))}/{len(diff)}")
        pairs = list(zip(out["annotate"]["outputs"], out["denylist"]["outputs"]))
        gaps = [float(np.mean(np.abs(a - d))) for a, d in pairs]
        same = [float(np.mean(a.argmax(-1) == d.argmax(-1))) if a.ndim == 2 and a.shape[1] > 1 else None
                for a, d in pairs]
        top1 = "" if same[0] is None else (f", same top-1 class on {100 * np.mean(same):.2f} % of the samples "
                                           f"(min {100 * min(same):.2f} %)")
        print(f"  outputs denylist vs annotate: mean |difference| {np.mean(gaps):.5f} "
              f"(max over configurations {max(gaps):.5f}){top1}")
        for cfg, a, d, gap, agree in zip(configs, out["annotate"]["acc"], out["denylist"]["acc"], gaps, same):
            if args.show_all or abs(scale * (d - a)) > 0.5:
                print(f"    {len(cfg)} int8: annotate {scale * a:.2f}, denylist {scale * d:.2f}; mean |output difference| "
                      f"{gap:.5f}" + ("" if agree is None else f", same top-1 {100 * agree:.2f} %"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
