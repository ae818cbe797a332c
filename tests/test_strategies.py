"""The random and basic strategies, TPE's sensitivity-guided start and its graph-free suggestion."""
import functools

import numpy as np
import pytest

from conftest import fast_conf
from tf_tpe_tuner import Conf, tune, walk
from tf_tpe_tuner._tf import keras
from tf_tpe_tuner.data import ArrayData
from tf_tpe_tuner.sensitivity import growing_fallbacks, unit_sensitivity
from tf_tpe_tuner.strategy import STRATEGIES, BasicTuneStrategy, RandomTuneStrategy, TpeTuneStrategy
from tf_tpe_tuner.samplers.tpe import TpeSampler
from tf_tpe_tuner.samplers.tpe_suggest import BinarySpace, suggest_values


@pytest.fixture(scope="module")
def outlier_cnn(cnn):
    """The CNN with 4 of conv2's 32 channels scaled x300 after its BN (and conv3's matching input
    weights / 300): the same float function, but per-tensor int8 activations of conv2's output
    lose every other channel, so all-int8 misses a 1 % criterion and the answer is a mix."""
    model = keras.models.clone_model(cnn)
    model.set_weights(cnn.get_weights())
    bn, conv3 = model.get_layer("bn2"), model.get_layer("conv3")
    gamma, beta, mean, var = bn.get_weights()
    kernel, bias = conv3.get_weights()
    for c in range(4):
        gamma[c] *= 300.0
        beta[c] *= 300.0
        kernel[:, :, c, :] /= 300.0
    bn.set_weights([gamma, beta, mean, var])
    conv3.set_weights([kernel, bias])
    return model


def make(cls, model, digits, tmp_path, **tuning):
    (x, _), (xt, yt) = digits
    tuning.setdefault("workspace", {"path": str(tmp_path)})
    return cls(model, Conf(fast_conf(**tuning)), x[:64], eval_dataloader=(xt, yt))


def fp32_set(record):
    return {u for u, d in record.config.items() if d == "fp32"}


def test_registered_and_selectable(cnn, digits, tmp_path):
    assert {"tpe", "random", "basic"} <= set(STRATEGIES)
    (x, _), (xt, yt) = digits
    conf = fast_conf(strategy={"name": "random"}, exit_policy={"max_trials": 2, "timeout": 3600})
    result = tune(cnn, conf, x[:64], eval_data=(xt, yt), output_dir=str(tmp_path))
    assert result.strategy == "random" and result.trials == 2


def test_random_first_all_int8_then_seeded_uniform(cnn, digits, tmp_path):
    runs = []
    for i, seed in enumerate([3, 3, 4]):
        s = make(RandomTuneStrategy, cnn, digits, tmp_path / str(i), random_seed=seed,
                 exit_policy={"max_trials": 6, "timeout": 3600})
        runs.append([r.config for r in s.traverse().history])
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert set(runs[0][0].values()) == {"int8"}
    keys = [frozenset(u for u, d in c.items() if d == "int8") for c in runs[0]]
    assert len(set(keys)) == len(keys) == 6


def test_outlier_model_needs_a_mix(outlier_cnn, digits):
    (x, _), (xt, yt) = digits
    from tf_tpe_tuner.realize_denylist import DenylistRealizer
    from tf_tpe_tuner.evaluate import TFLiteModel
    realizer = DenylistRealizer(walk(outlier_cnn), ArrayData([x[:64]]))

    def acc(units):
        return float(np.mean(TFLiteModel(realizer.realize(units).tflite_model).predict(
            ArrayData([xt]), 256).argmax(-1) == yt))
    assert acc(realizer.graph.unit_names) < 0.97 * acc([])


def test_basic_ranks_by_fallback_then_falls_back_cumulatively(outlier_cnn, digits, tmp_path):
    s = make(BasicTuneStrategy, outlier_cnn, digits, tmp_path, exit_policy={"max_trials": 30, "timeout": 3600})
    history = s.traverse().history
    units = s.search_units
    assert fp32_set(history[0]) == set() and not history[0].met_criterion
    ranking = history[1:1 + len(units)]
    assert [fp32_set(r) for r in ranking] == [{u} for u in units]  # one fallback each, in order
    cumulative = history[1 + len(units):]
    assert [fp32_set(r) for r in cumulative] == [set(s.order[:k]) for k in range(2, 2 + len(cumulative))]
    met = [r for r in history[1:] if r.met_criterion]
    assert met, "the cumulative fallback reaches the criterion (all fp32 at worst)"
    # it stops at the first cumulative configuration that meets the criterion
    assert cumulative == [] or (cumulative[-1].met_criterion and not any(r.met_criterion for r in cumulative[:-1]))
    # the most sensitive unit is the one whose fallback recovered the most accuracy
    best_ranked = max(ranking, key=lambda r: (r.accuracy, -ranking.index(r)))
    assert fp32_set(best_ranked) == {s.order[0]}


def test_basic_quantize_one_ranking_does_not_stop_on_near_float_trials(outlier_cnn, digits, tmp_path):
    s = make(BasicTuneStrategy, outlier_cnn, digits, tmp_path, strategy={"basic": {"ranking": "quantize_one"}},
             exit_policy={"max_trials": 30, "timeout": 0})
    history = s.traverse().history
    units = s.search_units
    ranking = history[1:1 + len(units)]
    assert [set(units) - fp32_set(r) for r in ranking] == [{u} for u in units]  # one int8 each
    assert any(r.met_criterion for r in ranking)  # near-float: they meet it ...
    assert len(history) > 1 + len(units)  # ... and the search still goes on to the fallback
    assert history[-1].met_criterion and fp32_set(history[-1]) == set(s.order[:len(fp32_set(history[-1]))])


def test_sensitivity_ranks_the_outlier_units_first(outlier_cnn, digits):
    (x, _), _ = digits
    graph = walk(outlier_cnn)
    sens = unit_sensitivity(graph, ArrayData([x[:64]]))
    assert set(sens.scores) == set(graph.unit_names)
    assert all(np.isfinite(v) and v >= 0 for v in sens.scores.values())
    assert set(sens.ranked()[:2]) & {"conv2", "conv3"}
    prior = sens.fp32_prior()
    assert prior[sens.ranked()[0]] == pytest.approx(0.5) and min(prior.values()) == pytest.approx(0.05)
    assert [len(f) for f in growing_fallbacks(list("abcdefghijklmnopqrst"))] == [1, 2, 3, 4, 6, 9, 13, 19]


def test_tpe_without_latency_starts_from_the_growing_fallbacks(outlier_cnn, digits, tmp_path):
    s = make(TpeTuneStrategy, outlier_cnn, digits, tmp_path, strategy={"latency_weight": 0.0},
             exit_policy={"max_trials": 8, "timeout": 0})
    history = s.traverse().history
    ranked = s.sensitivity.ranked()
    assert s.surrogate is None and not s.sensitivity.latency
    assert fp32_set(history[0]) == set() and not history[0].met_criterion
    guided = [fp32_set(r) for r in history[1:]]
    expected = [set(f) for f in growing_fallbacks(ranked)]
    # the most sensitive units fp32, in growing numbers, until one meets the criterion (accuracy
    # decides that, not timing; whether it also beats float, and what follows, is latency's)
    met = next(i for i, r in enumerate(history[1:]) if r.met_criterion)
    n = min(met + 1, len(expected))
    assert guided[:n] == expected[:n]
    prior = s.sampler._space.p_one  # fp32 more likely for the sensitive units
    assert prior == pytest.approx(s.sensitivity.fp32_prior()) and prior[ranked[0]] == pytest.approx(0.5)


def test_tpe_surrogate_keeps_the_sensitive_units_float_from_the_second_trial(outlier_cnn, digits, tmp_path):
    s = make(TpeTuneStrategy, outlier_cnn, digits, tmp_path, exit_policy={"max_trials": 2, "timeout": 3600})
    history = s.traverse().history
    assert not history[0].met_criterion and s.surrogate is not None
    assert {"conv2", "conv3"} <= fp32_set(history[1])  # the outlier channels' producer and reader
    assert history[1].met_criterion
    prior = s.sampler._space.p_one
    # savings within the latency model's tie margin do not count as slower (the rule in fp32_prior)
    model = s.surrogate.latency_model
    floor = model.tie if model is not None else 0.0
    slower = {u for u, beta in zip(s.search_units, s.surrogate.beta) if beta > floor}
    for unit, p in s.sensitivity.fp32_prior().items():
        assert prior[unit] == pytest.approx(max(p, 0.6) if unit in slower else p)


def test_tpe_without_sensitivity_draws_its_start_up_points(outlier_cnn, digits, tmp_path):
    s = make(TpeTuneStrategy, outlier_cnn, digits, tmp_path, strategy={"tpe": {"sensitivity": False}},
             exit_policy={"max_trials": 3, "timeout": 3600})
    s.traverse()
    assert s.sensitivity is None and not s.sampler._space.p_one


def test_tpe_proposals_equal_hyperopts_own(outlier_cnn, digits, tmp_path, monkeypatch):
    """The graph-free suggestion and hyperopt.tpe.suggest propose the same configurations
    (latency_weight 0: the losses, hence the proposals, do not depend on measured time)."""
    runs = []
    for graph in (False, True):
        monkeypatch.setattr(TpeSampler, "use_hyperopt_graph", graph)
        s = make(TpeTuneStrategy, outlier_cnn, digits, tmp_path / str(graph), random_seed=11,
                 strategy={"latency_weight": 0.0, "tpe": {"n_initial_points": 3}},
                 exit_policy={"max_trials": 9, "timeout": 3600})
        runs.append([r.config for r in s.traverse().history])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("n_labels,pchoice,params", [
    (5, False, (5, 0.3, 24, 1.0)),     # our defaults
    (64, False, (10, 0.3, 2, 0.5)),    # Neural Compressor's settings, MobileNetV2-sized
    (40, True, (3, 0.25, 24, 2.0)),    # a shaped prior (hp.pchoice)
])
def test_suggest_values_is_hyperopts_tpe_draw_for_draw(n_labels, pchoice, params):
    from hyperopt import STATUS_OK, Trials, hp, tpe
    from hyperopt.base import JOB_STATE_DONE, Domain
    n_startup, gamma, n_ei, prior_weight = params
    rs = np.random.RandomState(n_labels)
    labels = [f"unit_{i}" for i in range(n_labels)] + ["block/add", "conv"]
    p1 = {u: float(rs.uniform(0.05, 0.6)) for u in labels} if pchoice else None
    domain = Domain(lambda _: 0.0, {
        u: hp.pchoice(u, [(1 - p1[u], "int8"), (p1[u], "fp32")]) if pchoice else hp.choice(u, ("int8", "fp32"))
        for u in labels})
    space = BinarySpace(labels, p1)
    trials = Trials()
    suggest = functools.partial(tpe.suggest, n_startup_jobs=n_startup, gamma=gamma,
                                n_EI_candidates=n_ei, prior_weight=prior_weight, verbose=False)
    for k in range(30):
        doc = suggest(trials.new_trial_ids(1), domain, trials, 100 + k)[0]
        ours = suggest_values(space, trials.trials, 100 + k, n_startup, gamma, n_ei, prior_weight)
        assert ours == {u: doc["misc"]["vals"][u][0] for u in labels}, k
        doc["state"] = JOB_STATE_DONE
        doc["result"] = {"loss": float(rs.rand()), "status": STATUS_OK} if k % 7 else {"status": "fail"}
        trials.insert_trial_docs([doc])
        trials.refresh()


def test_sensitivity_measures_latency(cnn, digits):
    (x, _), _ = digits
    graph = walk(cnn)
    sens = unit_sensitivity(graph, ArrayData([x[:64]]), latency=(5, 50, 1))
    assert set(sens.latency) == set(graph.unit_names)
    assert all(0.1 < r < 10 for r in sens.latency.values())


def test_tpe_drops_a_slow_unit_once_the_criterion_holds(cnn, digits, tmp_path):
    from tf_tpe_tuner.samplers.surrogate_start import SensitivityStart
    from tf_tpe_tuner.sensitivity import Sensitivity
    s = make(TpeTuneStrategy, cnn, digits, tmp_path, exit_policy={"max_trials": 1, "timeout": 3600})
    s.traverse()  # all-int8, which meets 1 % on this CNN
    assert s.history[0].met_criterion
    s.study.latency_model = None  # the one-unit models' readings rank the units (no model measured)
    start = SensitivityStart(Sensitivity(
        {u: 1e-6 for u in s.search_units}, list(s.search_units),
        latency={u: (1.5 if u == "conv1" else 0.9) for u in s.search_units}), s.study, 5, s.study.edges)
    assert start.ask(s.study) == {**s.all_int8_config(), "conv1": "fp32"}
