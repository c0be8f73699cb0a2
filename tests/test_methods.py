"""Methods beyond the paper: RigL growth, cosine η, ERK/uniform budgets, gradual magnitude pruning, RLx2 targets.

Property tests of the pure functions first (no SB3), then one training test per option on Pendulum-v1.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from hypothesis import given
from hypothesis import strategies as st

from sb3_dst import DSSAC, DSTD3, PrunedSAC, PrunedTD3, StaticTD3
from sb3_dst.common.masking import MASK_NAME, sparse_linears
from sb3_dst.common.topology import (
    EvolutionSchedule,
    OnlineMaskTarget,
    connection_budgets,
    drop_and_grow,
    er_connection_count,
    er_lambdas_for_sparsity,
    erk_densities,
    prune_smallest,
    pruning_connection_count,
    random_mask,
    scheduled_drop_fraction,
)
from sb3_dst.metrics import flops_breakdown, training_flops

# --- Growth criterion ------------------------------------------------------------------------------------------


@given(
    n_in=st.integers(2, 30),
    n_out=st.integers(2, 30),
    density=st.floats(0.05, 0.95),
    eta=st.floats(0.01, 0.9),
    seed=st.integers(0, 2**31 - 1),
)
def test_gradient_growth_picks_exactly_the_top_scored_absent_positions(n_in, n_out, density, eta, seed):
    gen = th.Generator().manual_seed(seed)
    numel = n_in * n_out
    k = max(1, min(numel - 1, round(density * numel)))
    mask = random_mask((n_out, n_in), k, generator=gen)
    weight = th.randn(n_out, n_in, generator=gen) * mask
    scores = th.randperm(numel, generator=gen).float().view(n_out, n_in)  # distinct: one right answer
    absent_before = mask == 0
    dropped, grown, _ = drop_and_grow(weight, mask, eta, grow_scores=scores)
    c = int(grown.sum())
    assert int(mask.sum()) == k  # the count never changes
    assert c == int(dropped.sum()) == math.floor(eta * k + 0.5)
    if c == 0:
        return
    pool = absent_before if int(absent_before.sum()) >= c else absent_before | dropped
    expected = th.zeros(numel, dtype=th.bool)
    candidates = th.where(pool.view(-1), scores.view(-1), th.full((numel,), -1.0))
    expected[th.topk(candidates, c).indices] = True
    assert th.equal(grown.view(-1), expected)
    assert th.all(weight[grown] == 0) and th.all(mask[grown] == 1)


def test_gradient_growth_drops_like_random_growth():
    """Only the growth differs between SET and RigL: the dropped connections are the paper's in both."""
    gen = th.Generator().manual_seed(3)
    mask = random_mask((20, 30), 200, generator=gen)
    weight = th.randn(20, 30, generator=gen) * mask
    w2, m2 = weight.clone(), mask.clone()
    dropped_random, _, _ = drop_and_grow(weight, mask, 0.3, generator=th.Generator().manual_seed(0))
    dropped_gradient, _, _ = drop_and_grow(w2, m2, 0.3, grow_scores=th.rand(20, 30, generator=gen))
    assert th.equal(dropped_random, dropped_gradient)


def test_grow_scores_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="grow_scores"):
        drop_and_grow(th.ones(3, 4), th.ones(3, 4), 0.5, grow_scores=th.ones(4, 3))


# --- Schedules --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eta", [0.05, 0.3, 0.5])
def test_cosine_drop_fraction_at_zero_half_and_end(eta):
    horizon = 10_000
    assert scheduled_drop_fraction(eta, "cosine", 0, horizon) == pytest.approx(eta, abs=1e-12)
    assert scheduled_drop_fraction(eta, "cosine", horizon // 2, horizon) == pytest.approx(eta / 2, abs=1e-12)
    assert scheduled_drop_fraction(eta, "cosine", horizon, horizon) == pytest.approx(0.0, abs=1e-12)
    assert scheduled_drop_fraction(eta, "cosine", 2 * horizon, horizon) == pytest.approx(0.0, abs=1e-12)
    values = [scheduled_drop_fraction(eta, "cosine", t, horizon) for t in range(0, horizon + 1, 500)]
    assert all(a >= b for a, b in itertools.pairwise(values))  # decays monotonically
    assert scheduled_drop_fraction(eta, "constant", 7_777, horizon) == eta


def test_cosine_needs_a_horizon():
    with pytest.raises(ValueError, match="horizon"):
        scheduled_drop_fraction(0.1, "cosine", 10, None)
    with pytest.raises(ValueError, match="drop_fraction_schedule"):
        scheduled_drop_fraction(0.1, "linear", 10, 100)


@given(interval=st.integers(1, 50), end=st.integers(1, 400), delay=st.integers(1, 4))
def test_evolution_schedule_fires_once_per_multiple_inside_the_window(interval, end, delay):
    schedule = EvolutionSchedule(interval, end=end)
    fired = [t for t in range(delay, 500, delay) if schedule.due(t, delay)]
    # Exactly one call per multiple of e up to `end` (the first call at or after it).
    multiples = [m for m in range(interval, 500 - delay + 1, interval) if m <= end]
    expected = sorted({math.ceil(m / delay) * delay for m in multiples if math.ceil(m / delay) * delay < 500})
    assert fired == expected


@given(
    numel=st.integers(2, 5000),
    final_fraction=st.floats(0.0, 1.0),
    start=st.integers(0, 1000),
    length=st.integers(1, 2000),
)
def test_cubic_pruning_schedule_reaches_exactly_the_target_and_never_goes_below(numel, final_fraction, start, length):
    final = max(1, round(final_fraction * numel))
    end = start + length
    counts = [pruning_connection_count(numel, final, t, start, end) for t in range(0, end + 300, 37)]
    assert pruning_connection_count(numel, final, start, start, end) == numel  # dense at the start
    assert pruning_connection_count(numel, final, end, start, end) == final  # exactly the target at t_end
    assert pruning_connection_count(numel, final, end + 10_000, start, end) == final  # then held
    assert all(c >= final for c in counts)
    assert all(a >= b for a, b in itertools.pairwise(counts))  # never grows back
    # The cubic law itself, mid-way: s_t = s (1 - (1 - p)^3)
    t = start + length // 2
    p = (t - start) / length
    expected = numel - math.floor((numel - final) * (1 - (1 - p) ** 3) + 0.5)
    assert pruning_connection_count(numel, final, t, start, end) == max(expected, final)


def test_pruning_schedule_rejects_an_empty_window():
    with pytest.raises(ValueError, match="pruning_end"):
        pruning_connection_count(100, 10, 5, 10, 10)


# --- Budgets ----------------------------------------------------------------------------------------------------

layer_shapes = st.lists(st.tuples(st.integers(1, 300), st.integers(1, 300)), min_size=1, max_size=4)


@given(shapes=layer_shapes, sparsity=st.floats(0.0, 0.99))
def test_uniform_budget_gives_every_layer_the_same_density(shapes, sparsity):
    counts = connection_budgets(shapes, sparsity, "uniform")
    for (n_in, n_out), k in zip(shapes, counts, strict=True):
        assert k == min(max(math.floor((1 - sparsity) * n_in * n_out + 0.5), 1), n_in * n_out)


@given(shapes=layer_shapes, sparsity=st.floats(0.0, 0.99), power=st.floats(0.0, 2.0))
def test_erk_budget_meets_the_global_sparsity_and_follows_the_scores(shapes, sparsity, power):
    densities = erk_densities(shapes, sparsity, power)
    sizes = [a * b for a, b in shapes]
    assert all(0 < d <= 1 for d in densities)
    kept = sum(d * s for d, s in zip(densities, sizes, strict=True))
    assert kept == pytest.approx((1 - sparsity) * sum(sizes), rel=1e-9, abs=1e-6)
    # Every layer that is not made dense has density ε p_l with one shared ε.
    scores = [((a + b) / (a * b)) ** power for a, b in shapes]
    ratios = {round(d / p, 9) for d, p in zip(densities, scores, strict=True) if d < 1}
    assert len(ratios) <= 1
    # and a dense layer's score is the largest (it would have been above 1).
    if ratios:
        epsilon = ratios.pop()
        assert all(epsilon * p >= 1 - 1e-9 for d, p in zip(densities, scores, strict=True) if d == 1)


def test_erk_power_one_is_the_papers_erdos_renyi_and_power_zero_is_uniform():
    shapes = [(17, 256), (256, 256)]
    lambdas = er_lambdas_for_sparsity(shapes, 0.9)
    assert connection_budgets(shapes, 0.9, "erk", 1.0) == [
        er_connection_count(a, b, lam) for (a, b), lam in zip(shapes, lambdas, strict=True)
    ]
    assert connection_budgets(shapes, 0.9, "erk", 0.0) == connection_budgets(shapes, 0.9, "uniform")
    # ERK keeps the small first layer denser than the wide second one; uniform does not.
    erk = connection_budgets(shapes, 0.9)
    assert erk[0] / (17 * 256) > erk[1] / (256 * 256)


# --- Criteria ---------------------------------------------------------------------------------------------------


@given(n=st.integers(1, 400), keep_fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_magnitude_pruning_keeps_the_largest_connections(n, keep_fraction, seed):
    gen = th.Generator().manual_seed(seed)
    mask = random_mask((1, n), max(1, n // 2), generator=gen)
    weight = th.randperm(n, generator=gen).float().add_(1.0).view(1, n) * mask  # distinct magnitudes
    k = int(mask.sum())
    n_keep = round(keep_fraction * k)
    survivors = set(th.topk(weight.abs().view(-1), min(n_keep, k)).indices.tolist()) if n_keep else set()
    removed = prune_smallest(weight, mask, n_keep)
    assert int(mask.sum()) == min(n_keep, k)
    assert set(mask.view(-1).nonzero().view(-1).tolist()) == survivors
    assert th.all(weight[removed] == 0)
    assert th.equal(weight != 0, mask > 0)


def test_online_mask_target_is_the_target_times_the_mask():
    gen = th.Generator().manual_seed(0)
    mask = random_mask((8, 9), 30, generator=gen)
    target = th.randn(8, 9, generator=gen)
    keeper = OnlineMaskTarget(target, mask)
    expected = target.clone() * mask
    keeper.maintain()
    assert th.equal(target, expected)
    assert keeper.k == 30


# --- Training, one test per option (Pendulum-v1, tiny networks) ---------------------------------------------------


class _Small(Mapping):
    """Keywords of a tiny model; a fresh ``policy_kwargs`` at each use (SB3's SAC writes into it)."""

    def _fresh(self) -> dict:
        return {"policy_kwargs": dict(net_arch=[32, 32]), "learning_starts": 50, "batch_size": 32, "seed": 0}

    def __getitem__(self, key):
        return self._fresh()[key]

    def __iter__(self):
        return iter(self._fresh())

    def __len__(self) -> int:
        return len(self._fresh())


SMALL = _Small()


def _counts(model, network: str) -> list[int]:
    return [int(getattr(layer, MASK_NAME).sum()) for layer in model._sparse_layers[network]]


def _target_nonzeros(model) -> list[int]:
    return [int((layer.weight != 0).sum()) for layer in sparse_linears(model.critic_target)]


@pytest.mark.parametrize("algo", [DSTD3, DSSAC])
def test_gradient_growth_uses_the_dense_gradient_of_the_batch(algo, monkeypatch):
    """At an evolution, the growth scores are |∂L/∂W| at absent positions too (a masked gradient would be 0)."""
    import sb3_dst.common.updaters as updaters

    seen: list[tuple[th.Tensor, th.Tensor, th.Tensor]] = []
    original = updaters.drop_and_grow

    def recording(weight, mask, eta, **kwargs):
        absent = mask == 0
        result = original(weight, mask, eta, **kwargs)
        seen.append((kwargs["grow_scores"].clone(), absent, result[1]))
        return result

    monkeypatch.setattr(updaters, "drop_and_grow", recording)
    model = algo("MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.8, growth="gradient", evolution_interval=25)
    before = {n: _counts(model, n) for n in model.networks}
    model.learn(200)
    assert seen, "no evolution happened"
    for scores, absent, grown in seen:
        if not absent.any():  # a layer that ERK made dense
            continue
        assert scores[absent].abs().sum() > 0  # the gradient was not masked
        # grown positions have scores at least as large as every absent position that was not grown
        not_grown = absent & ~grown
        if int(grown.sum()) and int(not_grown.sum()):
            assert scores[grown].min() >= scores[not_grown].max()
    assert {n: _counts(model, n) for n in model.networks} == before
    assert model._grow_scores == {}  # nothing kept between evolutions


def test_cosine_schedule_decays_eta_to_zero_over_the_run_and_is_logged(tmp_path):
    from stable_baselines3.common.logger import configure

    model = DSTD3(
        "MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.8, drop_fraction=0.4, drop_fraction_schedule="cosine",
        evolution_interval=50,
    )  # fmt: skip
    model.set_logger(configure(str(tmp_path), ["csv"]))
    fractions = []
    original = model._evolve_topology

    def spy(network):
        result = original(network)
        if network == "critic":
            fractions.append((model._n_updates, model.current_drop_fraction, model.last_changed_fraction["critic"]))
        return result

    model._evolve_topology = spy
    model.learn(1050)
    horizon = model.planned_gradient_steps
    assert horizon == 1000  # 1050 steps, 50 random ones
    for t, eta, _ in fractions:
        assert eta == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * t / horizon)))
    assert fractions[-1][0] == 1000 and fractions[-1][1] == pytest.approx(0.0)
    assert fractions[-1][2] == 0.0  # η = 0 moves nothing
    assert fractions[0][2] > 0.2  # early evolutions move about η of the connections
    logged = (tmp_path / "progress.csv").read_text()
    assert "dst/drop_fraction" in logged


def test_evolution_end_freezes_the_topology():
    model = DSTD3("MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.8, evolution_interval=20, evolution_end=100)
    model.learn(150)  # 100 gradient steps: evolutions at 20..100
    assert model.num_evolutions == 5
    masks = [getattr(layer, MASK_NAME).clone() for n in model.networks for layer in model._sparse_layers[n]]
    model.learn(300, reset_num_timesteps=False)
    assert model.num_evolutions == 5
    after = [getattr(layer, MASK_NAME) for n in model.networks for layer in model._sparse_layers[n]]
    assert all(th.equal(a, b) for a, b in zip(masks, after, strict=True))


@pytest.mark.parametrize("algo", [PrunedTD3, PrunedSAC])
def test_gradual_pruning_goes_from_dense_to_the_budget_and_targets_follow(algo, tmp_path):
    model = algo(
        "MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.9, evolution_interval=10, pruning_start=20, pruning_end=200,
    )  # fmt: skip
    budgets = {n: [layer.connection_budget for layer in model._sparse_layers[n]] for n in model.networks}
    dense = {n: [layer.weight.numel() for layer in model._sparse_layers[n]] for n in model.networks}
    assert {n: _counts(model, n) for n in model.networks} == dense  # starts dense
    history = []

    def watch(model):
        original = model._evolve_topology

        def spy(network):
            result = original(network)
            history.append((model._n_updates, network, _counts(model, network)))
            return result

        model._evolve_topology = spy

    watch(model)
    model.learn(150)  # 100 gradient steps: half-way through the window
    mid = {n: _counts(model, n) for n in model.networks}
    for n in model.networks:
        assert all(b < m < d for b, m, d in zip(budgets[n], mid[n], dense[n], strict=True)), (n, mid[n])
        expected = [pruning_connection_count(d, b, 100, 20, 200) for d, b in zip(dense[n], budgets[n], strict=True)]
        assert mid[n] == expected
    # Absent weights are exactly zero at a step that prunes nothing (not right after a prune).
    model.learn(5, reset_num_timesteps=False)
    for n in model.networks:
        for layer in model._sparse_layers[n]:
            assert th.all(layer.weight[getattr(layer, MASK_NAME) == 0] == 0)
    path = tmp_path / "pruned"
    del model._evolve_topology  # SB3 would save the spy with the model
    model.save(path)
    model = algo.load(path, env=gym.make("Pendulum-v1"))
    watch(model)
    model.learn(300, reset_num_timesteps=False)  # past pruning_end
    for n in model.networks:
        assert _counts(model, n) == budgets[n]
    assert _target_nonzeros(model) == _counts(model, "critic")
    for n in model.networks:  # counts never increase
        seq = [c for _, net, c in history if net == n]
        assert all(all(x >= y for x, y in zip(a, b, strict=True)) for a, b in itertools.pairwise(seq))


def test_pruning_flops_count_the_dense_phase():
    pruned = PrunedTD3(
        "MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.9, evolution_interval=10, pruning_start=100, pruning_end=200
    )
    static = StaticTD3("MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.9)
    jumps = []
    original = pruned._evolve_topology

    def spy(network):
        before = training_flops(pruned)
        result = original(network)
        jumps.append((before, training_flops(pruned), _counts(pruned, network)))
        return result

    pruned._evolve_topology = spy
    pruned.learn(250)  # 200 gradient steps, all before or during pruning
    static.learn(250)
    assert [layer.connection_budget for layer in pruned._sparse_layers["critic"]] == _counts(static, "critic")
    # The first 100 gradient steps run dense: at least their dense cost is counted, and more than the static model's.
    dense = DSTD3("MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.0)
    per_step_dense = flops_breakdown(dense).per_gradient_step
    assert training_flops(pruned) > 100 * per_step_dense > training_flops(static)
    # FLOPs are continuous across a prune (counts shrink, what was spent stays spent).
    event = flops_breakdown(pruned).evolution  # the pruning step itself: one operation per matrix entry
    assert len(jumps) > 5 and all(after - before in (0.0, event) for before, after, _ in jumps)
    assert jumps[0][2] != jumps[-1][2]


def test_gradient_growth_flops_add_the_dense_gradient_at_evolutions():
    random_growth = DSTD3("MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.8, evolution_interval=25)
    gradient_growth = DSTD3("MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.8, evolution_interval=25, growth="gradient")
    random_growth.learn(150)
    gradient_growth.learn(150)
    assert random_growth.num_evolutions == gradient_growth.num_evolutions == 4
    absent = sum(
        layer.weight.numel() - int(getattr(layer, MASK_NAME).sum())
        for n in gradient_growth.networks
        for layer in gradient_growth._sparse_layers[n]
    )
    extra = training_flops(gradient_growth) - training_flops(random_growth)
    assert extra == pytest.approx(4 * 32 * absent)


@pytest.mark.parametrize("algo", [DSTD3, DSSAC])
def test_online_mask_targets_equal_the_polyak_update_times_the_mask(algo):
    extra = dict(policy_delay=1) if algo is DSTD3 else {}
    model = algo(
        "MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.8, target_pruning="online_mask", evolution_interval=7,
        tau=0.3, **extra,
    )  # fmt: skip
    model.learn(60)
    for _ in range(20):  # steps with and without evolutions (every 7)
        targets = sparse_linears(model.critic_target)
        old = [t.weight.detach().clone() for t in targets]
        model.train(gradient_steps=1, batch_size=32)
        for layer, target, before in zip(model._sparse_layers["critic"], targets, old, strict=True):
            expected = before.mul(1 - 0.3).add_(layer.weight.detach(), alpha=0.3) * getattr(layer, MASK_NAME)
            assert th.equal(target.weight.detach(), expected)
    # Magnitude pruning (Algorithm 3) would keep k target weights; masking keeps only the online topology.
    for layer, target in zip(model._sparse_layers["critic"], sparse_linears(model.critic_target), strict=True):
        assert th.all(target.weight[getattr(layer, MASK_NAME) == 0] == 0)


def test_actor_and_critic_sparsity_and_uniform_distribution():
    model = DSTD3(
        "MlpPolicy", "Pendulum-v1", **SMALL, actor_sparsity=0.5, critic_sparsity=0.9, sparsity_distribution="uniform"
    )
    for layer in model._sparse_layers["actor"]:
        assert int(layer.weight_mask.sum()) == math.floor(0.5 * layer.weight.numel() + 0.5)
    for layer in model._sparse_layers["critic"]:
        assert int(layer.weight_mask.sum()) == math.floor(0.1 * layer.weight.numel() + 0.5)
    erk = DSTD3("MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.9, erk_power_scale=0.5)
    assert _counts(erk, "critic") != _counts(model, "critic")


@pytest.mark.parametrize(
    ("algo", "kwargs", "error", "message"),
    [
        (DSTD3, dict(growth="rigl"), ValueError, "growth"),
        (DSTD3, dict(drop_fraction_schedule="linear"), ValueError, "drop_fraction_schedule"),
        (DSTD3, dict(evolution_end=0), ValueError, "evolution_end"),
        (DSTD3, dict(sparsity=0.9, sparsity_distribution="normal"), ValueError, "sparsity_distribution"),
        (DSTD3, dict(sparsity=0.9, erk_power_scale=-1.0), ValueError, "erk_power_scale"),
        (DSTD3, dict(sparsity_distribution="uniform"), ValueError, "sparsity_distribution"),
        (DSTD3, dict(actor_sparsity=1.0), ValueError, "actor_sparsity"),
        (DSTD3, dict(critic_sparsity=-0.1), ValueError, "critic_sparsity"),
        (DSTD3, dict(target_pruning="prune"), ValueError, "target_pruning"),
        (DSTD3, dict(pruning_start=10), TypeError, "pruning_start"),
        (PrunedTD3, dict(growth="gradient"), TypeError, "growth"),
        (PrunedTD3, dict(drop_fraction=0.1), TypeError, "drop_fraction"),
        (PrunedTD3, dict(pruning_start=100, pruning_end=100), ValueError, "pruning_end"),
        (PrunedSAC, dict(pruning_end=0), ValueError, "pruning_end"),
        (StaticTD3, dict(growth="gradient"), TypeError, "growth"),
    ],
)
def test_bad_method_keywords_are_named(algo, kwargs, error, message):
    with pytest.raises(error, match=message):
        algo("MlpPolicy", "Pendulum-v1", **SMALL, **kwargs)


def test_static_with_full_density_still_matches_after_the_refactor():
    """sparsity=0 through the new budget path builds full masks without touching the random stream."""
    a = StaticTD3("MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.0, sparsity_distribution="uniform")
    b = StaticTD3("MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.0)
    for la, lb in zip(a._sparse_layers["critic"], b._sparse_layers["critic"], strict=True):
        assert th.equal(la.weight, lb.weight) and bool(la.weight_mask.all())
    assert np.isfinite(training_flops(a))


def test_pruning_that_cannot_finish_within_the_run_warns():
    model = PrunedTD3("MlpPolicy", "Pendulum-v1", **SMALL, sparsity=0.9, evolution_interval=1000)
    with pytest.warns(UserWarning, match="final sparsity"):
        model.learn(300)  # 250 gradient steps, pruning every 1000
