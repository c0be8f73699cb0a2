"""Metrics of sb3_dst.metrics against hand-computed values, SB3's dense models and the paper's Table 3."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC, TD3
from torch import nn

from sb3_dst.metrics import (
    count_connections,
    flops_breakdown,
    learning_curve_area,
    network_size,
    training_flops,
)

th.set_num_threads(1)


def _add_mask(layer: nn.Linear, n_connections: int, seed: int = 0) -> None:
    """Hand-made sparse layer: exactly ``n_connections`` random connections in a ``weight_mask`` buffer."""
    gen = th.Generator().manual_seed(seed)
    flat = th.zeros(layer.weight.numel())
    flat[th.randperm(layer.weight.numel(), generator=gen)[:n_connections]] = 1.0
    layer.register_buffer("weight_mask", flat.view_as(layer.weight))
    with th.no_grad():
        layer.weight.mul_(layer.weight_mask)


def _hidden_layers(net: nn.Module) -> list[nn.Linear]:
    """All linear layers of a 2-hidden-layer MLP but the output one."""
    return [m for m in net.modules() if isinstance(m, nn.Linear)][:-1]


def _mask_td3(model: TD3, lambdas: tuple[float, float]) -> None:
    """Erdős–Rényi masks on the hidden layers of actor and critics: λ_l (n^(l-1) + n^l) connections each."""
    policy = model.policy
    networks = [policy.actor.mu, *policy.critic.q_networks]
    for net in networks:
        for lam, layer in zip(lambdas, _hidden_layers(net), strict=True):
            _add_mask(layer, round(lam * (layer.in_features + layer.out_features)))
    for target_net, net in zip([policy.actor_target.mu, *policy.critic_target.q_networks], networks, strict=True):
        for target_layer, layer in zip(_hidden_layers(target_net), _hidden_layers(net), strict=True):
            target_layer.register_buffer("weight_mask", layer.weight_mask.clone())


def _mask_all(modules: list[nn.Module], density: float) -> None:
    for module in modules:
        for layer in [m for m in module.modules() if isinstance(m, nn.Linear)]:
            _add_mask(layer, round(density * layer.weight.numel()))


@pytest.fixture(scope="module")
def half_cheetah(tmp_path_factory: pytest.TempPathFactory) -> gym.Env:
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("mujoco"))  # MuJoCo writes its deprecation warnings to ./MUJOCO_LOG.TXT
    try:
        env = gym.make("HalfCheetah-v5")
    finally:
        os.chdir(cwd)
    yield env
    env.close()


def _paper_td3(env: gym.Env) -> TD3:
    return TD3("MlpPolicy", env, policy_kwargs={"net_arch": [256, 256]}, batch_size=100, buffer_size=1, seed=0)


def test_count_connections_hand_made() -> None:
    dense = nn.Linear(4, 3)
    assert count_connections(dense) == 12
    sparse = nn.Linear(4, 3)
    _add_mask(sparse, 5)
    assert count_connections(sparse) == 5
    assert count_connections(nn.Sequential(dense, nn.ReLU(), sparse)) == 17


def test_network_size_table3_dense(half_cheetah: gym.Env) -> None:
    model = _paper_td3(half_cheetah)
    # actor 17·256 + 256·256 + 256·6, each critic 23·256 + 256·256 + 256·1 (weights only)
    assert network_size(model) == 71_424 + 2 * 71_680 == 214_784
    assert network_size(model.policy) == 214_784


def test_network_size_table3_sparse(half_cheetah: gym.Env) -> None:
    model = _paper_td3(half_cheetah)
    _mask_td3(model, (7, 64))
    assert network_size(model) == 106_169


def test_flops_table3_paper_convention(half_cheetah: gym.Env) -> None:
    dense = _paper_td3(half_cheetah)
    per_step = flops_breakdown(dense, "paper").per_gradient_step
    assert per_step * 1_000_000 == pytest.approx(1.074176e14)
    assert f"{per_step * 1e6:.2e}" == "1.07e+14"
    dense._n_updates = 1_000_000
    assert training_flops(dense, "paper") == pytest.approx(1.074176e14)

    sparse = _paper_td3(half_cheetah)
    _mask_td3(sparse, (7, 64))
    ratio = flops_breakdown(sparse, "paper").per_gradient_step / per_step
    assert round(ratio, 2) == 0.49


def _tiny(algo: type, batch_size: int = 10, **kwargs: object) -> TD3 | SAC:
    return algo(
        "MlpPolicy",
        "Pendulum-v1",
        policy_kwargs={"net_arch": [8, 8]},
        batch_size=batch_size,
        learning_starts=50,
        buffer_size=1000,
        seed=0,
        **kwargs,
    )


def test_td3_breakdown_hand_computed() -> None:
    model = _tiny(TD3)
    # Pendulum: obs 3, act 1. Actor 3·8 + 8·8 + 8·1 = 96; each critic 4·8 + 8·8 + 8·1 = 104.
    parts = flops_breakdown(model)
    assert parts.critic_update == 10 * (96 + 2 * 104 + 3 * 2 * 104)
    assert parts.actor_update == 10 * (3 * 96 + 3 * 104)
    assert parts.actor_update_interval == 2
    # Polyak: 2 per target parameter; critics 208 weights + 2·17 biases, actor 96 weights + 17 biases.
    assert parts.target_update == 2 * (208 + 34 + 96 + 17)
    assert parts.target_updates_per_step == 0.5
    assert parts.action_selection == 96
    assert parts.evolution == 0
    assert parts.per_gradient_step == 9280 + 6000 / 2 + 710 / 2

    model._n_updates, model.num_timesteps = 10, 60
    assert training_flops(model) == 10 * 9280 + 5 * 6000 + 5 * 710 + (60 - 50) * 96
    assert training_flops(model, "paper") == 10 * (9280 + 6000)


def test_sac_breakdown_hand_computed() -> None:
    model = _tiny(SAC, ent_coef=0.2)
    # SAC actor: 3·8 + 8·8 + two heads 8·1 each = 104; critics 104 each.
    parts = flops_breakdown(model)
    assert parts.critic_update == 10 * (104 + 2 * 104 + 3 * 2 * 104)
    assert parts.actor_update == 10 * (3 * 104 + 3 * 2 * 104)
    assert parts.target_updates_per_step == 1.0
    assert parts.action_selection == 104
    # SB3 SAC counts target_update_interval inside one train() call: with one gradient step per call the
    # target is updated every step whatever the interval.
    assert flops_breakdown(_tiny(SAC, target_update_interval=1000)).target_updates_per_step == 1.0
    assert flops_breakdown(_tiny(SAC, target_update_interval=2, gradient_steps=4)).target_updates_per_step == 0.5


@pytest.mark.parametrize("algo", [TD3, SAC])
def test_full_density_sparse_equals_dense_and_scales(algo: type) -> None:
    dense = flops_breakdown(_tiny(algo))
    full = _tiny(algo)
    half = _tiny(algo)
    nets = ["actor", "critic", "critic_target"] + (["actor_target"] if algo is TD3 else [])
    _mask_all([getattr(full.policy, n) for n in nets], 1.0)
    _mask_all([getattr(half.policy, n) for n in nets], 0.5)  # every layer of the Pendulum nets has an even size
    full_parts, half_parts = flops_breakdown(full), flops_breakdown(half)
    for name in ("critic_update", "actor_update", "action_selection"):
        assert getattr(full_parts, name) == getattr(dense, name)
        assert getattr(half_parts, name) == getattr(dense, name) / 2
    assert network_size(half) == network_size(full) / 2 == network_size(_tiny(algo)) / 2


class _PassCounter:
    """Counts multiply-adds the networks really run: forward hooks on every linear layer, and 2 × forward for
    each weight gradient computed (batch_size rows, as all backward passes are on training batches)."""

    def __init__(self, model: TD3 | SAC) -> None:
        self.total = 0
        policy = model.policy
        nets = [policy.actor, policy.critic, policy.critic_target, getattr(policy, "actor_target", None)]
        for net in [n for n in nets if n is not None]:
            for layer in [m for m in net.modules() if isinstance(m, nn.Linear)]:
                size = count_connections(layer)
                layer.register_forward_hook(self._forward(size))
                layer.weight.register_hook(self._backward(2 * size * model.batch_size))

    def _forward(self, size: int):
        def hook(module: nn.Module, inputs: tuple[th.Tensor, ...], output: th.Tensor) -> None:
            self.total += size * inputs[0].shape[0]

        return hook

    def _backward(self, cost: int):
        def hook(grad: th.Tensor) -> None:
            self.total += cost

        return hook


@pytest.mark.parametrize("algo", [TD3, SAC])
def test_executed_convention_matches_real_passes(algo: type) -> None:
    model = _tiny(algo, batch_size=16)
    _mask_all([model.policy.actor, model.policy.critic], 0.5)
    counter = _PassCounter(model)
    model.learn(total_timesteps=160)
    parts = flops_breakdown(model)
    assert model._n_updates > 50
    n_target = model._n_updates // 2 if algo is TD3 else model._n_updates
    assert counter.total == training_flops(model) - n_target * parts.target_update


def _uncached_training_flops(model: TD3 | SAC) -> float:
    from sb3_dst import metrics

    metrics._CACHE.clear()
    return training_flops(model)


def test_training_flops_follows_mask_changes() -> None:
    model = _tiny(TD3)
    model._n_updates, model.num_timesteps = 10, 60
    dense = training_flops(model)  # now cached
    _mask_all([model.policy.actor, model.policy.critic, model.policy.critic_target, model.policy.actor_target], 0.5)
    half = training_flops(model)
    assert half < dense
    assert half == _uncached_training_flops(model)
    model.policy.actor.mu[0].weight_mask.zero_()  # in place, as an evolution or a load does
    assert training_flops(model) < half
    assert training_flops(model) == _uncached_training_flops(model)


def test_learning_curve_area_hand_computed() -> None:
    assert learning_curve_area([1.0, 2.0, 3.0], total_timesteps=30) == pytest.approx(0.2)
    assert learning_curve_area([1.0, 2.0, 3.0], eval_freq=10) == pytest.approx(0.2)
    # Table 1's scale: 200 evaluations every 5000 steps over 1M steps, mean return 9004 -> LCA 1.8008
    assert learning_curve_area(np.full(200, 9004.0), total_timesteps=1_000_000) == pytest.approx(1.8008)
    assert learning_curve_area(np.full(20, 9004.0), eval_freq=5000) == pytest.approx(1.8008)
    with pytest.raises(ValueError):
        learning_curve_area([1.0])
    with pytest.raises(ValueError):
        learning_curve_area([], eval_freq=10)


def test_flops_convention_checked() -> None:
    with pytest.raises(ValueError):
        flops_breakdown(_tiny(TD3), "dense")  # type: ignore[arg-type]


def test_dstd3_table3_sizes(half_cheetah: gym.Env) -> None:
    sb3_dst = pytest.importorskip("sb3_dst")
    if not hasattr(sb3_dst, "DSTD3"):
        pytest.skip("DSTD3 not available yet")
    model = sb3_dst.DSTD3("MlpPolicy", half_cheetah, er_lambda=[7, 64], batch_size=100, buffer_size=1, seed=0)
    assert network_size(model) == 106_169
    dense = _paper_td3(half_cheetah)
    ratio = flops_breakdown(model, "paper").per_gradient_step / flops_breakdown(dense, "paper").per_gradient_step
    assert round(ratio, 2) == 0.49
    static = sb3_dst.StaticTD3("MlpPolicy", half_cheetah, er_lambda=[7, 64], batch_size=100, buffer_size=1)
    assert network_size(static) == 106_169


@pytest.mark.parametrize("algo", ["PrunedTD3", "PrunedSAC", "PrunedTQC"])
def test_pruned_targets_are_counted_at_their_online_layers_counts_whenever_the_model_was_saved(algo: str) -> None:
    """A target layer's mask buffer reports its non-zero pattern only once ``state_dict()`` has run (a save): the
    FLOPs must not depend on that. Under gradual pruning the counts shrink, so a stale (dense) target mask would
    count the dense start for the whole run."""
    import sb3_dst
    from sb3_dst.common.masking import MASK_NAME, weight_layers

    kwargs = dict(learning_starts=20, batch_size=16, sparsity=0.8, evolution_interval=10, pruning_start=5)
    model = getattr(sb3_dst, algo)("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16]), seed=0, **kwargs)
    model.learn(120)
    policy = model.policy
    before = (training_flops(model), flops_breakdown(model))
    policy.state_dict()  # refreshes the target masks to the targets' non-zero patterns
    assert (training_flops(model), flops_breakdown(model)) == before
    for online, target in (
        (policy.critic, policy.critic_target),
        (policy.actor, getattr(policy, "actor_target", None)),
    ):
        if target is None:
            continue
        for layer, target_layer in zip(weight_layers(online), weight_layers(target), strict=True):
            if hasattr(layer, MASK_NAME):  # pruned below the start: the target followed
                assert int(getattr(layer, MASK_NAME).sum()) < layer.weight.numel()
                assert int(getattr(target_layer, MASK_NAME).sum()) == int(getattr(layer, MASK_NAME).sum())
