"""DSTD3, DSSAC, StaticTD3, StaticSAC as users run them: counts, masking, evolution, targets, save/load, errors."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure

from sb3_dst import DSSAC, DSTD3, DSTCallback, StaticSAC, StaticTD3
from sb3_dst.common.masking import MASK_NAME, add_mask, masked_step, sparse_linears
from sb3_dst.metrics import training_flops

ALGOS = [DSTD3, DSSAC]
ALL_ALGOS = [DSTD3, DSSAC, StaticTD3, StaticSAC]


def masks(model) -> dict[str, th.Tensor]:
    return {k: v.clone() for k, v in model.policy.state_dict().items() if k.endswith(MASK_NAME)}


def online_layers(model) -> list[th.nn.Linear]:
    return sparse_linears(model.actor) + sparse_linears(model.critic)


def target_pairs(model):
    pairs = list(zip(sparse_linears(model.critic), sparse_linears(model.critic_target), strict=True))
    if hasattr(model, "actor_target"):
        pairs += list(zip(sparse_linears(model.actor), sparse_linears(model.actor_target), strict=True))
    return pairs


def connection_counts(model) -> list[int]:
    return [int(getattr(layer, MASK_NAME).sum()) for layer in online_layers(model)]


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


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_exact_connection_counts_and_dense_outputs(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=1, **small_kwargs)
    # actor: 3->32 (λ=1: 35), 32->32 (λ=8: 512); each critic: 4->32 (36), 32->32 (512)
    assert connection_counts(model) == [35, 512, 36, 512, 36, 512]
    for layer in online_layers(model):
        assert bool((layer.weight[getattr(layer, MASK_NAME) == 0] == 0).all())
    # output layers and biases stay dense
    sparse_ids = {id(m) for m in online_layers(model)}
    outputs = [m for m in model.critic.modules() if isinstance(m, th.nn.Linear) and m.out_features == 1]
    assert outputs and all(id(m) not in sparse_ids for m in outputs)
    # targets start as exact copies, masks included (Algorithm 1, L5)
    for online, target in target_pairs(model):
        assert th.equal(online.weight, target.weight)
        assert th.equal(getattr(online, MASK_NAME), getattr(target, MASK_NAME))


def test_sparsity_keyword_reaches_the_target_fraction():
    model = DSTD3("MlpPolicy", "Pendulum-v1", sparsity=0.5, policy_kwargs=dict(net_arch=[32, 32]))
    layers = sparse_linears(model.actor)
    n = sum(getattr(m, MASK_NAME).numel() for m in layers)
    assert abs(sum(int(getattr(m, MASK_NAME).sum()) for m in layers) - 0.5 * n) <= 1


def test_sparse_output_layer_sparsifies_the_heads():
    model = DSSAC(
        "MlpPolicy",
        "Pendulum-v1",
        sparse_output_layer=True,
        er_lambda=[1, 8, 0.5],
        policy_kwargs=dict(net_arch=[32, 32]),
    )
    assert len(sparse_linears(model.actor)) == 4  # two hidden layers, mu and log_std
    assert len(sparse_linears(model.critic)) == 6


@pytest.mark.parametrize(("dense_algo", "static_algo"), [(TD3, StaticTD3), (SAC, StaticSAC)])
def test_full_density_static_variant_reproduces_sb3_exactly(dense_algo, static_algo):
    """With sparsity 0 the masked train() must be the same algorithm as SB3's, to the last bit."""
    kwargs = dict(policy_kwargs=dict(net_arch=[16, 16]), learning_starts=30, batch_size=16, seed=7)
    dense = dense_algo("MlpPolicy", "Pendulum-v1", **kwargs).learn(120)
    # bit for bit on the masked path (the sparse kernels sum in another order: equal within rounding)
    static = static_algo("MlpPolicy", "Pendulum-v1", sparsity=0.0, sparse_backend="masked", **kwargs).learn(120)
    for (name, a), (_, b) in zip(dense.policy.state_dict().items(), _without_masks(static), strict=True):
        assert th.equal(a, b), name


def _without_masks(model):
    return [(k, v) for k, v in model.policy.state_dict().items() if not k.endswith(MASK_NAME)]


# --- training -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
def test_evolution_moves_connections_but_never_their_number(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=2, evolution_interval=20, drop_fraction=0.2, **small_kwargs)
    counts, before = connection_counts(model), masks(model)
    model.learn(450)
    assert model._n_updates == 400
    assert model.num_evolutions == 400 // 20
    assert connection_counts(model) == counts
    after = masks(model)
    moved = [
        k for k in before if not k.startswith(("actor_target", "critic_target")) and not th.equal(before[k], after[k])
    ]
    assert len(moved) == len(online_layers(model))  # every online sparse layer evolved
    for layer in online_layers(model):
        assert bool((layer.weight[getattr(layer, MASK_NAME) == 0] == 0).all())
    for online, target in target_pairs(model):  # Algorithm 3: targets never exceed the online budget
        assert int(th.count_nonzero(target.weight)) <= int(getattr(online, MASK_NAME).sum())


@pytest.mark.parametrize("algo", ALGOS)
def test_target_masks_in_the_state_dict_are_the_targets_nonzero_patterns(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=2, evolution_interval=20, drop_fraction=0.2, **small_kwargs)
    model.learn(250)
    state = model.policy.state_dict()
    prefixes = {id(m): name for name, m in model.policy.named_modules()}
    for online, target in target_pairs(model):
        mask = state[f"{prefixes[id(target)]}.{MASK_NAME}"]
        assert th.equal(mask, (target.weight != 0).float())
        assert int(mask.sum()) <= int(getattr(online, MASK_NAME).sum())


@pytest.mark.parametrize("algo", [StaticTD3, StaticSAC])
def test_static_variants_never_change_topology(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=3, **small_kwargs)
    before = masks(model)
    model.learn(300)
    after = masks(model)
    assert all(th.equal(before[k], after[k]) for k in before)
    assert model.num_evolutions == 0


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


def test_dssac_hard_target_update_counts_total_gradient_steps(small_kwargs):
    model = StaticSAC("MlpPolicy", "Pendulum-v1", seed=8, tau=1.0, target_update_interval=40, **small_kwargs)
    model.learn(50 + 39)  # 39 gradient steps: no target update yet
    assert not th.equal(model.critic.qf0[0].weight, model.critic_target.qf0[0].weight)
    model.learn(1, reset_num_timesteps=False)  # 40th step: hard copy
    assert th.equal(model.critic.qf0[0].weight, model.critic_target.qf0[0].weight)


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


def test_dst_metrics_are_logged(small_kwargs, tmp_path):
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


# --- save / load ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_save_load_round_trips_masks_weights_and_schedule(algo, small_kwargs, tmp_path):
    extra = {} if algo in (StaticTD3, StaticSAC) else dict(evolution_interval=30)
    model = algo("MlpPolicy", "Pendulum-v1", seed=12, **extra, **small_kwargs)
    model.learn(200)
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = algo.load(tmp_path / "model.zip", env=gym.make("Pendulum-v1"))
    a, b = model.policy.state_dict(), loaded.policy.state_dict()
    assert a.keys() == b.keys() and any(k.endswith(MASK_NAME) for k in a)
    assert all(th.equal(a[k], b[k]) for k in a)
    assert (loaded._n_updates, loaded.num_evolutions) == (model._n_updates, model.num_evolutions)
    assert loaded.er_lambda == model.er_lambda
    if algo in (DSTD3, DSSAC):
        assert (loaded.evolution_interval, loaded.drop_fraction) == (30, model.drop_fraction)
    # resume: the schedule continues from the saved gradient-step counter
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded._n_updates == model._n_updates + 100
    if algo in (DSTD3, DSSAC):
        assert loaded.num_evolutions == loaded._n_updates // 30
    assert connection_counts(loaded) == connection_counts(model)
    obs = np.zeros((1, 3), dtype=np.float32)
    assert np.allclose(
        model.predict(obs, deterministic=True)[0], algo.load(tmp_path / "model.zip").predict(obs, deterministic=True)[0]
    )


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(er_lambda=[7, 8]), r"er_lambda=7 gives actor layer 0 \(3x32\)"),
        (dict(er_lambda=[1, 8, 3]), r"er_lambda has 3 values but the actor has 2 sparse"),
        (dict(er_lambda=-1), "positive"),
        (dict(er_lambda=[1, float("nan")]), "positive"),
        (dict(er_lambda="7,64"), "positive"),
        (dict(drop_fraction=0.0), r"drop_fraction \(η\) must be in \(0, 1\)"),
        (dict(drop_fraction=1.0), r"drop_fraction \(η\)"),
        (dict(evolution_interval=0), r"evolution_interval \(e\) must be an integer >= 1"),
        (dict(evolution_interval=2.5), r"evolution_interval \(e\)"),
        (dict(er_lambda=None, sparsity=-0.1), r"sparsity must be a number in \[0, 1\)"),
        (dict(er_lambda=None, sparsity=1.0), r"sparsity must be a number in \[0, 1\)"),
        (dict(sparsity=0.5), "either er_lambda or sparsity"),
    ],
)
@pytest.mark.parametrize("algo", ALGOS)
def test_bad_input_is_a_clear_value_error(algo, kwargs, message, small_kwargs):
    with pytest.raises(ValueError, match=message):
        algo("MlpPolicy", "Pendulum-v1", **{**small_kwargs, **kwargs})


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


@pytest.mark.parametrize("algo", [StaticTD3, StaticSAC])
def test_static_variants_refuse_evolution_settings(algo, small_kwargs):
    with pytest.raises(TypeError, match="fixed topology"):
        algo("MlpPolicy", "Pendulum-v1", drop_fraction=0.1, **small_kwargs)


@pytest.mark.parametrize("interval", [0, 2.5, True])
def test_dssac_rejects_a_bad_target_update_interval(interval, small_kwargs):
    with pytest.raises(ValueError, match="target_update_interval must be an integer >= 1"):
        DSSAC("MlpPolicy", "Pendulum-v1", target_update_interval=interval, **small_kwargs)
