"""DS-/Static-/Pruned- TQC, CrossQ and DDPG (issue #13): counts, masking, evolution, targets, save/load, parity
with the dense algorithms, metrics and bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import assert_same_outputs
from sb3_contrib import TQC, CrossQ
from sb3_contrib.common.torch_layers import BatchRenorm1d
from stable_baselines3 import DDPG
from stable_baselines3.common.logger import configure

from sb3_dst import (
    DSDDPG,
    DSTQC,
    DSCrossQ,
    PrunedCrossQ,
    PrunedDDPG,
    PrunedTQC,
    StaticCrossQ,
    StaticDDPG,
    StaticTQC,
)
from sb3_dst.benchmark.specs import DENSE_BASELINE, family
from sb3_dst.common.dst import UnknownKeywordError
from sb3_dst.common.masking import MASK_NAME, sparse_linears
from sb3_dst.metrics import flops_breakdown, network_size, training_flops

DYNAMIC = [DSTQC, DSCrossQ, DSDDPG]
STATIC = [StaticTQC, StaticCrossQ, StaticDDPG]
PRUNED = [PrunedTQC, PrunedCrossQ, PrunedDDPG]
ALL = DYNAMIC + STATIC + PRUNED
DENSE = {StaticTQC: TQC, StaticCrossQ: CrossQ, StaticDDPG: DDPG}
#: Critics per algorithm with the default policy_kwargs (DDPG has one).
N_CRITICS = {"TQC": 2, "CrossQ": 2, "DDPG": 1}


def kind(algo) -> str:
    return next(name for name in N_CRITICS if name in algo.__name__)


def topology_kwargs(algo) -> dict:
    if algo.topology_mode == "evolve":
        return dict(evolution_interval=20)
    if algo.topology_mode == "prune":
        return dict(evolution_interval=10, pruning_start=10, pruning_end=60)
    return {}


def connection_counts(model) -> list[int]:
    return [int(getattr(x, MASK_NAME).sum()) for x in sparse_linears(model.actor) + sparse_linears(model.critic)]


def target_pairs(model) -> list[tuple[th.nn.Linear, th.nn.Linear]]:
    pairs = []
    for online, target in (("critic", "critic_target"), ("actor", "actor_target")):
        if getattr(model, target, None) is not None:
            pairs += list(
                zip(sparse_linears(getattr(model, online)), sparse_linears(getattr(model, target)), strict=True)
            )
    return pairs


def masks(model) -> dict[str, th.Tensor]:
    return {k: v.clone() for k, v in model.policy.state_dict().items() if k.endswith(MASK_NAME)}


def assert_absent_weights_zero(model) -> None:
    for layer in sparse_linears(model.actor) + sparse_linears(model.critic):
        assert bool((layer.weight[getattr(layer, MASK_NAME) == 0] == 0).all())


def assert_targets_hold_k(model) -> None:
    """Algorithm 3: each sparse target layer has exactly as many non-zeros as its online layer has connections."""
    for online, target in target_pairs(model):
        assert int(th.count_nonzero(target.weight)) == int(getattr(online, MASK_NAME).sum())


# --- initialisation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALL)
def test_exact_connection_counts_dense_outputs_and_target_copies(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=1, **topology_kwargs(algo), **small_kwargs)
    # actor: 3->32 (λ=1: 35), 32->32 (λ=8: 512); each critic: 4->32 (36), 32->32 (512)
    expected = [35, 512] + [36, 512] * N_CRITICS[kind(algo)]
    layers = sparse_linears(model.actor) + sparse_linears(model.critic)
    if algo in PRUNED:  # dense at the start, each layer knowing its final budget
        assert [x.connection_budget for x in layers] == expected
        assert connection_counts(model) == [x.weight.numel() for x in layers]
    else:
        assert connection_counts(model) == expected
    assert_absent_weights_zero(model)
    sparse_ids = {id(x) for x in layers}
    outputs = [m for m in model.critic.modules() if isinstance(m, th.nn.Linear) and m.in_features == 32]
    outputs = [m for m in outputs if m.out_features != 32]  # the critics' output layers (25 quantiles for TQC)
    assert len(outputs) == N_CRITICS[kind(algo)] and all(id(m) not in sparse_ids for m in outputs)
    if kind(algo) == "TQC":
        assert all(m.out_features == 25 for m in outputs)
    for online, target in target_pairs(model):  # targets start as copies, masks included
        assert th.equal(online.weight, target.weight)
        assert th.equal(getattr(online, MASK_NAME), getattr(target, MASK_NAME))
    assert (len(target_pairs(model)) > 0) == (kind(algo) != "CrossQ")  # CrossQ has no target networks


def test_crossq_keeps_batch_renorm_dense_and_the_wide_default_critic_takes_sparsity():
    model = DSCrossQ("MlpPolicy", "Pendulum-v1", sparsity=0.9, learning_starts=50, batch_size=32, seed=0)
    # CrossQ's own default: actor 256-256, critics 1024-1024 (not the paper's 256-256)
    assert [x.weight.shape[0] for x in sparse_linears(model.critic.qf0)] == [1024, 1024]
    for network, shapes in (("actor", [(3, 256), (256, 256)]), ("critic", [(4, 1024), (1024, 1024)] * 2)):
        layers = sparse_linears(getattr(model, network))
        assert [(x.in_features, x.out_features) for x in layers] == shapes
        per_net = len(shapes) // (2 if network == "critic" else 1)
        for i in range(0, len(layers), per_net):
            group = layers[i : i + per_net]
            kept = sum(int(getattr(x, MASK_NAME).sum()) for x in group)
            total = sum(x.weight.numel() for x in group)
            assert abs(kept - round(0.1 * total)) <= per_net  # the budget is met (to rounding)
            assert all(0 < int(getattr(x, MASK_NAME).sum()) <= x.weight.numel() for x in group)
    renorms = [m for m in model.policy.modules() if isinstance(m, BatchRenorm1d)]
    assert renorms and not any(hasattr(m, MASK_NAME) for m in renorms)
    model.evolution_interval = 10
    model.learn(80)  # 30 gradient steps, 3 evolutions of the 1024-1024 critics
    assert model.num_evolutions == 3
    assert all(int(m.steps) > 0 and float(m.ra_mean.abs().sum()) > 0 for m in renorms)  # running statistics
    assert all(bool((m.scale != 1).any()) for m in renorms)  # scale trained, dense
    assert_absent_weights_zero(model)


# --- training -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", DYNAMIC)
def test_many_evolutions_move_connections_but_never_their_number(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=2, evolution_interval=10, drop_fraction=0.3, **small_kwargs)
    counts, before = connection_counts(model), masks(model)
    model.learn(350)
    assert model._n_updates == 300 and model.num_evolutions == 30
    assert connection_counts(model) == counts
    after = masks(model)
    online = [k for k in before if not k.startswith(("actor_target", "critic_target"))]
    assert all(not th.equal(before[k], after[k]) for k in online)  # every online sparse layer evolved
    assert_absent_weights_zero(model)
    assert_targets_hold_k(model)


@pytest.mark.parametrize("algo", DYNAMIC + STATIC + PRUNED)
def test_absent_weights_are_zero_at_steps_that_are_not_evolutions(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=6, **topology_kwargs(algo), **small_kwargs)
    model.learn(110)  # 60 gradient steps: an evolution (or the last pruning step) at step 60
    assert model._n_updates == 60
    networks = {"actor": model.actor, "critic": model.critic}
    networks.update({name: getattr(model, name) for name in ("actor_target", "critic_target") if hasattr(model, name)})
    before = {name: [x.weight.detach().clone() for x in sparse_linears(net)] for name, net in networks.items()}
    topology = masks(model)
    for step in range(61, 67):  # six steps, none of them an evolution; CrossQ's actor moves at 63 and 66
        model.train(gradient_steps=1, batch_size=32)
        assert model._n_updates == step
        current = masks(model)
        assert all(th.equal(current[k], v) for k, v in topology.items() if "_target" not in k)  # no evolution
        assert_absent_weights_zero(model)
        assert_targets_hold_k(model)
    for name, net in networks.items():  # the steps did move every network
        assert all(not th.equal(x.weight, w) for x, w in zip(sparse_linears(net), before[name], strict=True)), name


# Not the Static variants: with a fixed topology, Polyak averaging alone keeps the targets' zeros, so the check
# could not fail without Algorithm 3. The dynamic and pruned topologies change, and only Algorithm 3 follows them.
@pytest.mark.parametrize("algo", [DSTQC, PrunedTQC, DSDDPG, PrunedDDPG])
def test_targets_hold_exactly_k_after_every_polyak_update(algo, small_kwargs, monkeypatch):
    model = algo("MlpPolicy", "Pendulum-v1", seed=4, **topology_kwargs(algo), **small_kwargs)
    updates = []
    original = model._update_target

    def checked(network: str) -> None:
        original(network)
        pairs = [p for p in target_pairs(model) if p[0] in sparse_linears(getattr(model, network))]
        assert pairs
        for online, target in pairs:
            assert int(th.count_nonzero(target.weight)) == int(getattr(online, MASK_NAME).sum())
        updates.append(network)

    monkeypatch.setattr(model, "_update_target", checked)
    model.learn(150)
    per_step = {"TQC": ["critic"], "DDPG": ["critic", "actor"]}[kind(algo)]
    assert updates == per_step * 100  # TQC: critic target only; DDPG: both, every step (d = 1)


def test_tqc_updates_its_target_on_tqcs_own_schedule(small_kwargs, monkeypatch):
    """As sb3-contrib's TQC: the index inside each train() call, so gradient_steps=1 updates at every step."""
    model = DSTQC("MlpPolicy", "Pendulum-v1", seed=5, target_update_interval=3, **small_kwargs)
    calls = []
    original = model._update_target
    monkeypatch.setattr(model, "_update_target", lambda network: (calls.append(model._n_updates), original(network)))
    model.learn(60)
    assert calls == list(range(1, 11))
    calls.clear()
    model.train(gradient_steps=7, batch_size=32)  # indices 0, 3, 6 of this call
    assert calls == [11, 14, 17]
    model.gradient_steps = 7
    assert flops_breakdown(model).target_updates_per_step == pytest.approx(3 / 7)  # with the model's setting
    model.gradient_steps = 1
    assert flops_breakdown(model).target_updates_per_step == 1.0


@pytest.mark.parametrize("algo", STATIC)
def test_static_variants_never_change_topology(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=3, **small_kwargs)
    before = masks(model)
    model.learn(250)
    after = masks(model)
    assert all(th.equal(before[k], after[k]) for k in before if "_target" not in k)
    assert model.num_evolutions == 0
    assert_targets_hold_k(model)


@pytest.mark.parametrize("algo", PRUNED)
def test_gradual_pruning_reaches_the_budget(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=8, **topology_kwargs(algo), **small_kwargs)
    model.learn(130)
    assert connection_counts(model) == [35, 512] + [36, 512] * N_CRITICS[kind(algo)]
    assert_absent_weights_zero(model)
    assert_targets_hold_k(model)


@pytest.mark.parametrize("algo", DYNAMIC + STATIC)
def test_dst_metrics_are_logged(algo, small_kwargs, tmp_path):
    model = algo("MlpPolicy", "Pendulum-v1", seed=10, **topology_kwargs(algo), **small_kwargs)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(100)
    values = model.logger.name_to_value
    assert 0 < values["dst/actor_sparsity"] < 1 and 0 < values["dst/critic_sparsity"] < 1
    assert values["dst/connections"] == network_size(model)
    assert values["dst/flops"] == training_flops(model) > 0
    if algo in DYNAMIC:
        assert values["dst/evolutions"] == model.num_evolutions == 2


# --- parity with the dense algorithms ---------------------------------------------------------------------------


@pytest.mark.parametrize("static_algo", STATIC)
def test_full_density_static_variant_reproduces_the_dense_algorithm_exactly(static_algo):
    kwargs = dict(policy_kwargs=dict(net_arch=[16, 16]), learning_starts=30, batch_size=16, seed=7)
    dense = DENSE[static_algo]("MlpPolicy", "Pendulum-v1", **kwargs).learn(120)
    kwargs["policy_kwargs"] = dict(net_arch=[16, 16])  # SB3 writes into the dict it was given
    # bit for bit on the masked path (the sparse kernels sum in another order: equal within rounding)
    static = static_algo("MlpPolicy", "Pendulum-v1", sparsity=0.0, sparse_backend="masked", **kwargs).learn(120)
    a = dense.policy.state_dict()
    b = {k: v for k, v in static.policy.state_dict().items() if not k.endswith(MASK_NAME)}
    assert list(a) == list(b)
    for name in a:
        assert th.equal(a[name], b[name]), name
    assert dense._n_updates == static._n_updates == 90


# --- save / load / resume ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALL)
def test_save_load_and_resume(algo, small_kwargs, tmp_path):
    model = algo("MlpPolicy", "Pendulum-v1", seed=12, **topology_kwargs(algo), **small_kwargs)
    model.learn(150)
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    th.manual_seed(99)  # the masks must come from the file, not from the random generator
    loaded = algo.load(tmp_path / "model.zip", env=gym.make("Pendulum-v1"))
    a, b = model.policy.state_dict(), loaded.policy.state_dict()
    assert a.keys() == b.keys() and any(k.endswith(MASK_NAME) for k in a)
    assert all(th.equal(a[k], b[k]) for k in a)  # weights, masks, BatchRenorm statistics
    for part in ("actor", "critic"):
        sa, sb = (getattr(m, part).optimizer.state_dict()["state"] for m in (model, loaded))
        assert all(th.equal(sa[i][key], sb[i][key]) for i in sa for key in sa[i])
    assert (loaded._n_updates, loaded.num_evolutions, loaded.er_lambda) == (100, model.num_evolutions, [1.0, 8.0])
    assert type(loaded.policy) is type(model.policy)
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    loaded.learn(50, reset_num_timesteps=False)  # resume: the schedule continues from the saved counter
    assert loaded._n_updates == 150
    if algo in DYNAMIC:
        assert loaded.evolution_interval == 20 and loaded.num_evolutions == 150 // 20
    assert connection_counts(loaded) == connection_counts(model)
    assert_absent_weights_zero(loaded)
    assert_targets_hold_k(loaded)
    obs = np.zeros((1, 3), dtype=np.float32)
    again = algo.load(tmp_path / "model.zip")
    assert np.array_equal(model.predict(obs, deterministic=True)[0], again.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize("algo", DYNAMIC)
def test_policy_actor_and_critic_save_and_load_on_their_own(algo, small_kwargs, tmp_path):
    model = algo("MlpPolicy", "Pendulum-v1", seed=1, evolution_interval=20, **small_kwargs)
    model.learn(100)  # evolved: the masks differ from freshly drawn ones
    obs, actions = th.linspace(-1, 1, 48).reshape(16, 3), th.zeros(16, 1)
    for part in ("policy", "actor", "critic"):
        module = getattr(model, part)
        module.save(tmp_path / part)
        th.manual_seed(123)
        loaded = type(module).load(tmp_path / part)
        a, b = module.state_dict(), loaded.state_dict()
        assert a.keys() == b.keys() and any(k.endswith(MASK_NAME) for k in a)
        assert all(th.equal(a[k], b[k]) for k in a), part
        module.set_training_mode(False)
        loaded.set_training_mode(False)
        with th.no_grad():
            if part == "critic":
                assert_same_outputs(module(obs, actions), loaded(obs, actions), model)
            else:
                assert_same_outputs(
                    module._predict(obs, deterministic=True), loaded._predict(obs, deterministic=True), model
                )


def non_default_args(module: th.nn.Module) -> dict:
    """The non-default constructor arguments of :data:`NON_DEFAULT` as the built module shows them."""
    renorms = [m for m in module.modules() if isinstance(m, BatchRenorm1d)]
    return dict(
        n_critics=len(getattr(module, "q_networks", [])),
        n_quantiles=getattr(module, "n_quantiles", None),
        tanh=any(isinstance(m, th.nn.Tanh) for m in module.modules()),
        batch_renorm={(m.momentum, m.warmup_steps) for m in renorms},
    )


#: Per module: the algorithm, its non-default policy_kwargs (besides ``activation_fn=nn.Tanh``) and what the
#: built module must show of them.
NON_DEFAULT = {
    "SparseContinuousCritic": (DSDDPG, "critic", dict(n_critics=3), dict(n_critics=3)),
    "SparseQuantileCritic": (DSTQC, "critic", dict(n_critics=3, n_quantiles=7), dict(n_critics=3, n_quantiles=7)),
    "SparseCrossQCritic": (
        DSCrossQ,
        "critic",
        dict(n_critics=3, batch_norm_momentum=0.05, renorm_warmup_steps=30),
        dict(n_critics=3, batch_renorm={(0.05, 30)}),
    ),
    "SparseActor (CrossQ)": (
        DSCrossQ,
        "actor",
        dict(batch_norm_momentum=0.05, renorm_warmup_steps=30),
        dict(batch_renorm={(0.05, 30)}),
    ),
}


@pytest.mark.parametrize("name", list(NON_DEFAULT))
def test_standalone_save_and_load_keeps_non_default_constructor_arguments(name, small_kwargs, tmp_path):
    """SparseMasksMixin records every constructor argument of the wrapped critic (or CrossQ actor), so ``Class.load``
    rebuilds the same module: a non-default argument left unrecorded would come back as its default."""
    algo, part, policy_kwargs, expected = NON_DEFAULT[name]
    expected = {**expected, "tanh": True}
    small_kwargs["policy_kwargs"].update(policy_kwargs, activation_fn=th.nn.Tanh)
    model = algo("MlpPolicy", "Pendulum-v1", seed=3, evolution_interval=20, **small_kwargs).learn(80)
    module = getattr(model, part)
    assert type(module).__name__ == name.split()[0]
    assert non_default_args(module).items() >= expected.items()
    module.save(tmp_path / part)
    th.manual_seed(123)  # the masks must come from the file
    loaded = type(module).load(tmp_path / part)
    assert type(loaded) is type(module)
    assert non_default_args(loaded) == non_default_args(module)
    assert non_default_args(loaded).items() >= expected.items()  # the argument was recorded, not defaulted
    a, b = module._get_constructor_parameters(), loaded._get_constructor_parameters()
    assert a.keys() == b.keys() and a["activation_fn"] is b["activation_fn"] is th.nn.Tanh
    for key in a.keys() - {"features_extractor"}:
        assert a[key] == b[key], key
    assert type(a["features_extractor"]) is type(b["features_extractor"])
    sa, sb = module.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys() and any(k.endswith(MASK_NAME) for k in sa)
    assert all(th.equal(sa[k], sb[k]) for k in sa), name  # weights, masks, BatchRenorm statistics


@pytest.mark.parametrize("algo", [DSTQC, DSDDPG])
def test_multi_input_policy_with_her(algo):
    from stable_baselines3 import HerReplayBuffer
    from stable_baselines3.common.envs import BitFlippingEnv

    env = BitFlippingEnv(n_bits=4, continuous=True, max_steps=4)
    model = algo(
        "MultiInputPolicy",
        env,
        replay_buffer_class=HerReplayBuffer,
        er_lambda=1.0,
        policy_kwargs=dict(net_arch=[32, 32]),
        learning_starts=20,
        batch_size=16,
        evolution_interval=10,
        seed=0,
    ).learn(120)
    assert model.num_evolutions == 10
    assert_absent_weights_zero(model)
    assert_targets_hold_k(model)


# --- metrics, by hand ---------------------------------------------------------------------------------------------


def test_tqc_size_and_flops_by_hand():
    """n_critics quantile networks of n_quantiles outputs: 3 critics of 5 quantiles on Pendulum (obs 3, act 1)."""
    policy_kwargs = dict(net_arch=[32, 32], n_quantiles=5, n_critics=3)
    dense = TQC("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs, batch_size=32)
    actor = 3 * 32 + 32 * 32 + 32 + 32  # latent_pi, mu, log_std = 1184
    critic = 4 * 32 + 32 * 32 + 32 * 5  # per quantile network = 1312
    assert network_size(dense) == actor + 3 * critic == 5120
    sparse = DSTQC("MlpPolicy", "Pendulum-v1", er_lambda=[1, 8], policy_kwargs=dict(policy_kwargs), batch_size=32)
    actor, critic = 35 + 512 + 32 + 32, 36 + 512 + 160  # 611, 708
    assert network_size(sparse) == actor + 3 * critic == 2735
    parts = flops_breakdown(sparse)
    # actor on s' + target critics + critics fwd/bwd on (s, a); actor fwd/bwd + critics fwd/bwd on (s, ã)
    assert parts.critic_update == 32 * (actor + 3 * critic + 3 * 3 * critic) == 291_424
    assert parts.actor_update == 32 * (3 * actor + 3 * 3 * critic) == 262_560
    biases = 3 * (32 + 32 + 5)
    assert parts.target_update == 2 * (3 * critic + biases) + 3 * (4 * 32 + 32 * 32) == 8_118
    assert parts.target_updates_per_step == 1.0 and parts.actor_update_interval == 1
    assert parts.evolution == (3 * 32 + 32 * 32) + 3 * (4 * 32 + 32 * 32)


def test_crossq_size_and_flops_by_hand():
    """CrossQ: no target networks, the critics run on the joint batch of (s, a) and (s', a'), i.e. 2B samples."""
    dense = CrossQ("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32]), batch_size=32)
    assert network_size(dense) == (3 * 32 + 32 * 32 + 2 * 32) + 2 * (4 * 32 + 32 * 32 + 32) == 3552
    model = DSCrossQ(
        "MlpPolicy", "Pendulum-v1", er_lambda=[1, 8], policy_kwargs=dict(net_arch=[32, 32]), batch_size=32, seed=0
    )
    actor, critics = 35 + 512 + 64, 2 * (36 + 512 + 32)  # 611, 1160
    assert network_size(model) == actor + critics == 1771
    parts = flops_breakdown(model)
    assert parts.critic_update == 32 * actor + (2 * 32) * 3 * critics == 242_272
    assert parts.actor_update == 32 * (3 * actor + 3 * critics) == 170_016
    assert parts.actor_update_interval == 3  # policy_delay
    assert parts.target_update == 0 and parts.target_updates_per_step == 0
    model._n_updates, model.num_timesteps, model.learning_starts, model.num_evolutions = 10, 40, 30, 2
    evolution = (3 * 32 + 32 * 32) + 2 * (4 * 32 + 32 * 32)
    assert training_flops(model) == 10 * 242_272 + 3 * 170_016 + 10 * actor + 2 * evolution


def test_ddpg_size_and_flops_by_hand():
    """DDPG: TD3 with one critic, an actor update at every step and no target-policy smoothing."""
    dense = DDPG("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32]), batch_size=32)
    assert network_size(dense) == (3 * 32 + 32 * 32 + 32) + (4 * 32 + 32 * 32 + 32) == 2336
    model = DSDDPG("MlpPolicy", "Pendulum-v1", er_lambda=[1, 8], policy_kwargs=dict(net_arch=[32, 32]), batch_size=32)
    actor, critic = 35 + 512 + 32, 36 + 512 + 32  # 579, 580
    assert network_size(model) == 1159 and model.policy_delay == 1 and model.critic.n_critics == 1
    parts = flops_breakdown(model)
    assert parts.critic_update == 32 * (actor + critic + 3 * critic) == 92_768
    assert parts.actor_update == 32 * (3 * actor + 3 * critic) == 111_264
    assert parts.actor_update_interval == 1 and parts.target_updates_per_step == 1.0
    assert parts.target_update == 2 * (actor + 65) + 1120 + 2 * (critic + 65) + 1152 == 4_850


def test_benchmark_families_use_their_dense_baseline():
    for name in ("TQC", "CrossQ", "DDPG"):
        for variant in (name, f"Static-{name}", f"DS-{name}", f"Pruned-{name}", f"DS-{name}:drop_fraction=0.2"):
            assert DENSE_BASELINE[family(variant)] == name
    assert DENSE_BASELINE[family("DS-SAC")] == "SAC" and DENSE_BASELINE[family("Pruned-TD3")] == "TD3"


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(er_lambda=[7, 8]), ValueError, r"er_lambda=7 gives actor layer 0 \(3x32\)"),
        (dict(er_lambda=[1, 8, 3]), ValueError, r"er_lambda has 3 values but the actor has 2 sparse"),
        (dict(er_lambda=None, sparsity=1.0), ValueError, r"sparsity must be a number in \[0, 1\)"),
        (dict(sparsity=0.5), ValueError, "either er_lambda or sparsity"),
        (dict(drop_fraction=0.0), ValueError, r"drop_fraction \(η\) must be in \(0, 1\)"),
        (dict(evolution_interval=0), ValueError, r"evolution_interval \(e\) must be an integer >= 1"),
        (dict(growth="best"), ValueError, "growth must be one of"),
        (dict(target_pruning="none"), ValueError, "target_pruning must be one of"),
        (dict(pruning_start=10), TypeError, "belongs to gradual magnitude pruning"),
    ],
)
@pytest.mark.parametrize("algo", DYNAMIC)
def test_bad_input_is_a_clear_error(algo, kwargs, error, message, small_kwargs):
    with pytest.raises(error, match=message):
        algo("MlpPolicy", "Pendulum-v1", **{**small_kwargs, **kwargs})


@pytest.mark.parametrize("algo", STATIC)
def test_static_variants_refuse_evolution_settings(algo, small_kwargs):
    with pytest.raises(TypeError, match="fixed topology"):
        algo("MlpPolicy", "Pendulum-v1", drop_fraction=0.1, **small_kwargs)


@pytest.mark.parametrize("interval", [0, 2.5, True])
def test_tqc_rejects_a_bad_target_update_interval(interval, small_kwargs):
    with pytest.raises(ValueError, match="target_update_interval must be an integer >= 1"):
        DSTQC("MlpPolicy", "Pendulum-v1", target_update_interval=interval, **small_kwargs)


def test_crossq_refuses_target_pruning_it_has_no_targets_for(small_kwargs):
    with pytest.raises(ValueError, match="no target networks"):
        StaticCrossQ("MlpPolicy", "Pendulum-v1", target_pruning="online_mask", **small_kwargs)


@pytest.mark.parametrize("algo", ALL)
def test_each_is_its_dense_algorithm_and_a_typo_names_it(algo, small_kwargs):
    base = {"TQC": TQC, "CrossQ": CrossQ, "DDPG": DDPG}[kind(algo)]
    assert issubclass(algo, base)
    owner = "SB3" if base is DDPG else "sb3-contrib"
    typo = rf"^{algo.__name__} got an unexpected keyword argument 'learning_rat' \(did you mean 'learning_rate'"
    where = rf"every other keyword goes to {owner}'s {base.__name__}\.$"
    with pytest.raises(UnknownKeywordError, match=rf"{typo}.*{where}"):
        algo("MlpPolicy", "Pendulum-v1", learning_rat=1e-3, **small_kwargs)


def test_ddpg_takes_ddpgs_arguments_not_td3s(small_kwargs):
    with pytest.raises(UnknownKeywordError, match=r"'policy_delay'.* goes to SB3's DDPG"):
        DSDDPG("MlpPolicy", "Pendulum-v1", policy_delay=2, **small_kwargs)
    model = DSDDPG("MlpPolicy", "Pendulum-v1", **small_kwargs)  # DDPG's settings of its TD3
    assert (model.policy_delay, model.target_noise_clip, model.critic.n_critics) == (1, 0.0, 1)
    small_kwargs["policy_kwargs"]["n_critics"] = 2  # as DDPG, an explicit n_critics is kept
    assert DSDDPG("MlpPolicy", "Pendulum-v1", **small_kwargs).critic.n_critics == 2
