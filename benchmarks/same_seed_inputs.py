"""The models, data and confs that `same_seed.py` and `versus.py` run: the pretrained zoo's
(`pretrained_zoo.py`) and the small zoo's cases (`zoo.py`, with `compare.py`'s latency settings)."""
from __future__ import annotations


def case(name: str, seed: int):
    """(model, calibration inputs, evaluation data, conf with `seed`) of a zoo model."""
    import pretrained_zoo
    if name in pretrained_zoo.CASES:
        model, calib, held = pretrained_zoo.inputs(name)
        conf = pretrained_zoo.CASES[name][1]
    else:
        import compare
        import zoo
        small = zoo.load_cases(names=[name], log=lambda *a: None)[0]
        model, calib, held = small.model, small.calib_x, (small.eval_x, small.eval_y)
        conf = zoo._merge(small.conf, {"evaluation": {"performance": dict(compare.PERF)}, "tuning": {}})
    return model, calib, held, {**conf, "tuning": {**conf.get("tuning", {}), "random_seed": seed}}


def float_model(name: str) -> bytes:
    """The float model latency is measured against: the shipped file, or the converted one."""
    from tf_tpe_tuner.run_setup import model_graph
    graph = model_graph(case(name, 0)[0])
    return graph.reference_model or graph.float_model
