"""The TD3 family (DSTD3, StaticTD3, PrunedTD3), the paper's first algorithm: its sizes, its delayed actor, and the
DST machinery shown on it (masked optimizer steps, Adam moments, the evolution schedule, callbacks, metrics, the
keywords a sweep script passes). What every family does is in tests/test_families.py."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sparse_checks import connection_counts
from stable_baselines3 import TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure

from sb3_dst import DSTD3, DSTCallback, StaticTD3
from sb3_dst.common.masking import MASK_NAME, add_mask, masked_step, sparse_linears
from sb3_dst.metrics import training_flops

# --- initialisation -------------------------------------------------------------------------------------------


def test_halfcheetah_sizes_match_the_paper():
    """Table 3: actor + two critics hold 106,169 weights with λ = (7, 64), versus 214,784 dense."""
    env = gym.make("HalfCheetah-v5")
    model = DSTD3("MlpPolicy", env, seed=0)

    def weights(net):
        return sum(
            int(getattr(m, MASK_NAME).sum()) if hasattr(m, MASK_NAME) else m.weight.numel()
            for m in net.modules()
            if isinstance(m, th.nn.Linear)
        )

    assert weights(model.actor) + weights(model.critic) == 106_169
    dense = TD3("MlpPolicy", env, policy_kwargs=dict(net_arch=[256, 256]))
    assert weights(dense.actor) + weights(dense.critic) == 214_784
    assert [m.out_features for m in model.actor.mu if isinstance(m, th.nn.Linear)] == [256, 256, 6]


def test_sparsity_keyword_reaches_the_target_fraction():
    model = DSTD3("MlpPolicy", "Pendulum-v1", sparsity=0.5, policy_kwargs=dict(net_arch=[32, 32]))
    layers = sparse_linears(model.actor)
    n = sum(getattr(m, MASK_NAME).numel() for m in layers)
    assert abs(sum(int(getattr(m, MASK_NAME).sum()) for m in layers) - 0.5 * n) <= 1


# --- training -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adam_wd", "adamw"])
def test_absent_weights_stay_exactly_zero_through_optimizer_steps(optimizer, small_kwargs):
    policy_kwargs = dict(net_arch=[32, 32], optimizer_kwargs=dict(weight_decay=0.1))
    if optimizer == "adamw":
        policy_kwargs["optimizer_class"] = th.optim.AdamW
    small_kwargs["policy_kwargs"] = policy_kwargs
    model = DSTD3("MlpPolicy", "Pendulum-v1", seed=4, evolution_interval=25, **small_kwargs)
    model.learn(200)
    for net in (model.actor, model.critic):
        for layer in sparse_linears(net):
            absent = getattr(layer, MASK_NAME) == 0
            assert bool((layer.weight[absent] == 0).all())
            assert bool((layer.weight[~absent] != 0).any())


@pytest.mark.parametrize("optimizer_class", [th.optim.Adam, th.optim.AdamW, th.optim.RMSprop, th.optim.SGD])
def test_masked_step_moves_existing_weights_only(optimizer_class):
    """Absent weights stay exactly zero (Adam/AdamW without a second pass), existing ones get the full update."""
    th.manual_seed(0)
    layer = th.nn.Linear(8, 6)
    add_mask(layer, 20)
    reference = copy.deepcopy(layer)  # the same optimizer on masked gradients, weights masked after each step
    kwargs = dict(lr=0.01, weight_decay=0.01) | (dict(momentum=0.9) if optimizer_class is th.optim.SGD else {})
    opts = [optimizer_class(m.parameters(), **kwargs) for m in (layer, reference)]
    for _ in range(30):
        grad_w, grad_b = th.randn(6, 8), th.randn(6)
        layer.weight.grad, layer.bias.grad = grad_w.clone(), grad_b.clone()
        reference.weight.grad, reference.bias.grad = grad_w * reference.weight_mask, grad_b.clone()
        masked_step(opts[0], [layer])
        opts[1].step()
        with th.no_grad():
            reference.weight.mul_(reference.weight_mask)
    assert th.equal(layer.weight, reference.weight) and th.equal(layer.bias, reference.bias)
    assert int((layer.weight != 0).sum()) == 20


def test_absent_connections_keep_zero_first_and_unit_second_moments(small_kwargs):
    """What lets masked_step skip re-masking (first moment zero) and keeps Adam's sqrt fast (second moment > 0)."""
    model = StaticTD3("MlpPolicy", "Pendulum-v1", seed=5, **small_kwargs)
    model.learn(150)
    for network in (model.actor, model.critic):
        for layer in sparse_linears(network):
            state, absent = network.optimizer.state[layer.weight], getattr(layer, MASK_NAME) == 0
            assert bool((state["exp_avg"][absent] == 0).all())
            assert bool((state["exp_avg_sq"][absent] > 0.5).all())  # set to 1 at the first step, 100 steps ago


def test_evolution_resets_adam_moments_of_changed_connections(small_kwargs):
    model = DSTD3("MlpPolicy", "Pendulum-v1", seed=5, evolution_interval=1000, **small_kwargs)
    model.learn(150)
    layer = sparse_linears(model.critic)[1]
    before = getattr(layer, MASK_NAME).clone()
    model._evolve_topology("critic")
    after = getattr(layer, MASK_NAME)
    grown, dropped = (after == 1) & (before == 0), (after == 0) & (before == 1)
    assert grown.any() and dropped.any()
    state = model.critic.optimizer.state[layer.weight]
    for key in ("exp_avg", "exp_avg_sq"):  # grown connections start with fresh moments (Algorithm 2's reset)
        assert bool((state[key][grown] == 0).all())
        assert bool((state[key][(after == 1) & ~grown] != 0).any())
    # dropped (now absent) ones: zero first moment, unit second moment (see settle_absent_state)
    assert bool((state["exp_avg"][dropped] == 0).all()) and bool((state["exp_avg_sq"][dropped] == 1).all())
    assert bool((layer.weight[grown | dropped] == 0).all())


def test_schedule_is_exact_for_any_train_freq(small_kwargs):
    """Evolution counts gradient steps, not environment steps or train() calls."""
    model = DSTD3(
        "MlpPolicy",
        "Pendulum-v1",
        seed=6,
        evolution_interval=7,
        train_freq=(40, "step"),
        gradient_steps=25,
        **small_kwargs,
    )
    model.learn(290)
    assert model._n_updates > 0 and model.num_evolutions == model._n_updates // 7


def test_actor_evolves_when_interval_is_not_a_multiple_of_policy_delay(small_kwargs):
    model = DSTD3("MlpPolicy", "Pendulum-v1", seed=6, evolution_interval=5, **small_kwargs)
    calls = []
    original = model._evolve_topology
    model._evolve_topology = lambda network: calls.append((network, model._n_updates)) or original(network)
    model.learn(111)  # 61 gradient steps
    actor_steps = [t for n, t in calls if n == "actor"]
    assert [t for n, t in calls if n == "critic"] == list(range(5, 62, 5))
    assert actor_steps == [6, 10, 16, 20, 26, 30, 36, 40, 46, 50, 56, 60]  # first actor update at or after 5k


def test_user_callbacks_still_run_and_a_given_dst_callback_is_used(small_kwargs):
    class Count(BaseCallback):
        calls = 0

        def _on_step(self) -> bool:
            Count.calls += 1
            return True

    model = DSTD3("MlpPolicy", "Pendulum-v1", seed=9, evolution_interval=10, **small_kwargs)
    mine = DSTCallback(verbose=0)
    model.learn(100, callback=[Count(), mine])
    assert Count.calls == 100
    assert model.dst_callback is mine
    assert model.num_evolutions == 5
    model.learn(100, callback=Count())  # a single callback: DSTCallback added next to it
    assert isinstance(model.dst_callback, DSTCallback) and model.dst_callback is not mine


def test_dst_metrics_are_logged_and_follow_a_changed_setting(small_kwargs, tmp_path):
    model = DSTD3("MlpPolicy", "Pendulum-v1", seed=10, evolution_interval=20, **small_kwargs)
    logger = configure(str(tmp_path), ["csv"])
    model.set_logger(logger)
    model.learn(200)
    values = model.logger.name_to_value
    assert values["dst/evolutions"] == model.num_evolutions > 0
    assert 0 < values["dst/actor_sparsity"] < 1 and 0 < values["dst/critic_sparsity"] < 1
    total = 35 + 512 + 32 + 2 * (36 + 512 + 32)  # sparse layers + dense output layers
    assert values["dst/connections"] == total
    assert abs(values["dst/critic_changed_fraction"] - 0.05) < 0.01
    assert values["dst/flops"] == training_flops(model) > 0  # the cached breakdown is the metric's
    model.batch_size *= 2  # a changed setting is seen at the next train()
    model.learn(10, reset_num_timesteps=False)
    assert model.logger.name_to_value["dst/flops"] == training_flops(model)


def test_same_seed_same_run(small_kwargs):
    runs = [
        DSTD3("MlpPolicy", "Pendulum-v1", seed=11, evolution_interval=30, **small_kwargs).learn(200) for _ in range(2)
    ]
    a, b = (r.policy.state_dict() for r in runs)
    assert all(th.equal(a[k], b[k]) for k in a)


# --- bad input ------------------------------------------------------------------------------------------------


def test_numpy_values_are_accepted_as_from_a_sweep_script(small_kwargs):
    small_kwargs["er_lambda"] = np.array([1.0, 8.0])
    model = DSTD3(
        "MlpPolicy", "Pendulum-v1", drop_fraction=np.float32(0.1), evolution_interval=np.int64(20), **small_kwargs
    )
    assert (
        model.er_lambda == [1.0, 8.0] and model.evolution_interval == 20 and isinstance(model.evolution_interval, int)
    )
    assert connection_counts(model)[:2] == [35, 512]


def test_default_lambda_on_a_small_env_explains_itself():
    # The default λ makes the layer it would overfill dense (tests/test_errors.py); a λ given explicitly is refused.
    with pytest.raises(ValueError, match=r"actor layer 0 \(3x256\).*pass `sparsity=`"):
        DSTD3("MlpPolicy", "Pendulum-v1", er_lambda=[7, 64])


def test_topology_keys_inside_policy_kwargs_are_refused(small_kwargs):
    small_kwargs["policy_kwargs"]["er_lambda"] = [1, 8]
    with pytest.raises(ValueError, match="directly, not inside policy_kwargs"):
        DSTD3("MlpPolicy", "Pendulum-v1", **small_kwargs)
