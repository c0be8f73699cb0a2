"""The family table, and what every sparse algorithm of it does: counts, masked steps, frozen topologies, targets,
save/load and bad input, run once over the table (the families' own behaviour: tests/test_<family>.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import assert_same_outputs
from sb3_contrib.common.torch_layers import BatchRenorm1d
from sparse_checks import (
    ALL,
    DYNAMIC,
    PRUNED,
    STATIC,
    assert_absent_weights_zero,
    assert_sparse_and_targets_match,
    assert_targets_hold_k,
    connection_counts,
    family_of,
    masks,
    target_pairs,
    topology_kwargs,
    with_targets,
)
from stable_baselines3 import HerReplayBuffer
from stable_baselines3.common.envs import BitFlippingEnv
from stable_baselines3.common.logger import configure
from stable_baselines3.common.torch_layers import CombinedExtractor

import sb3_dst
from sb3_dst.benchmark.specs import ALGORITHMS, DENSE_BASELINE, family
from sb3_dst.common.dst import UnknownKeywordError
from sb3_dst.common.masking import MASK_NAME, sparse_linears
from sb3_dst.families import FAMILIES, VARIANTS, by_harness_name, by_zoo_name
from sb3_dst.hyperparams import ALGOS_WITH_FILES, hyperparams_file
from sb3_dst.metrics import network_size, training_flops
from sb3_dst.zoo.registry import DYNAMIC_ALGOS, PRUNING_ALGOS, STATIC_ALGOS, ZOO_ALGOS, algorithm_classes
from sb3_dst.zoo.samplers import SAMPLERS

TOPOLOGY_MODES = {"ds": "evolve", "static": "static", "pruned": "prune"}
#: The DS algorithms whose targets follow ``target_update_interval`` (SAC, TQC).
INTERVAL_ALGOS = [row.cls("ds") for row in FAMILIES if row.target_update.interval == "target_update_interval"]


# --- the table ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", FAMILIES, ids=lambda row: row.name)
def test_each_row_names_its_classes_files_and_names(row):
    dense = row.cls()
    for variant in VARIANTS:
        algo = row.cls(variant)
        assert algo.__name__ == row.class_name(variant) and issubclass(algo, dense)
        assert algo.topology_mode == TOPOLOGY_MODES[variant]
        assert getattr(sb3_dst, algo.__name__) is algo  # exported by the package
        assert algorithm_classes()[row.zoo_name(variant)] is algo
        assert ALGORITHMS[row.harness_name(variant)] == (row.class_path(variant), row.zoo_name(variant))
        assert by_zoo_name(row.zoo_name(variant)) is by_harness_name(row.harness_name(variant)) is row
        assert family(f"{row.harness_name(variant)}:drop_fraction=0.2") == row.name
    assert ALGORITHMS[row.name] == (row.dense, row.stem) and DENSE_BASELINE[family(row.name)] == row.name
    for stem in row.hyperparams_files:
        assert hyperparams_file(stem).is_file()


def test_every_list_of_algorithms_is_the_tables():
    names = {variant: {row.zoo_name(variant) for row in FAMILIES} for variant in VARIANTS}
    assert set(ZOO_ALGOS) == set(SAMPLERS) == names["ds"] | names["static"] | names["pruned"]
    assert (DYNAMIC_ALGOS, STATIC_ALGOS, PRUNING_ALGOS) == (names["ds"], names["static"], names["pruned"])
    assert set(ALGOS_WITH_FILES) == set(ZOO_ALGOS) | {row.stem for row in FAMILIES}
    assert list(ALGORITHMS) == [
        row.harness_name(variant) for row in FAMILIES for variant in (None, "static", "ds", "pruned")
    ]
    assert sorted(ALL, key=lambda algo: algo.__name__) == sorted(algorithm_classes().values(), key=lambda a: a.__name__)


@pytest.mark.parametrize("row", FAMILIES, ids=lambda row: row.name)
def test_the_default_network_is_the_tables(row):
    """What the samplers take for the network when the hyperparameter file gives none (λ bounds of the search)."""
    model = row.cls("static")("MlpPolicy", "Pendulum-v1", sparsity=0.5, learning_starts=10)
    critic = [layer.out_features for layer in sparse_linears(model.critic)]  # the hidden layers of each Q-network
    qf = critic[: len(critic) // row.critics]
    assert critic == qf * row.critics  # the table's number of Q-networks, alike
    hidden = {"pi": [layer.out_features for layer in sparse_linears(model.actor)], "qf": qf}
    arch = row.default_net_arch
    expected = {key: list(arch[key] if isinstance(arch, dict) else arch) for key in ("pi", "qf")}
    assert hidden == expected


@pytest.mark.parametrize("row", FAMILIES, ids=lambda row: row.name)
def test_the_target_schedule_is_what_the_algorithm_does(row, small_kwargs, monkeypatch):
    """The table's target update: which networks have targets, in which order they are updated and how often.
    Two train() calls of 3 gradient steps with an interval of 2 tell a global count (steps 2, 4, 6) from one inside
    each call (indices 0 and 2 of each call: steps 1, 3, 4, 6)."""
    model = row.cls("ds")("MlpPolicy", "Pendulum-v1", seed=0, **small_kwargs)
    assert {name for name in ("actor", "critic") if getattr(model, f"{name}_target", None) is not None} == set(
        row.target_update.networks
    )
    if row.target_update.interval is not None:
        setattr(model, row.target_update.interval, 2)
    model.learn(50)  # fills the buffer to learning_starts
    updates = []
    original = model._update_target
    monkeypatch.setattr(model, "_update_target", lambda network: (updates.append(network), original(network)))
    for _ in range(2):
        model.train(gradient_steps=3, batch_size=32)
    assert updates == row.target_update.updates(6, 2, gradient_steps=3)
    if row.has_targets:
        assert updates


@pytest.mark.skipif(
    bool(os.environ.get("SB3_DST_TEST_BACKEND")), reason="nothing backend-specific: the default pass runs it"
)
def test_a_family_is_one_row_and_its_files(tmp_path):
    """A family added through the table (here a TD3 under a new name, "Dummy": its package and its YAML files)
    reaches the rl-zoo3 registry, the samplers, the harness and the hyperparameter files, without another edit."""
    (tmp_path / "dummy_family.py").write_text(
        textwrap.dedent(
            """
            from sb3_dst import DSTD3, PrunedTD3, StaticTD3

            class DSDummy(DSTD3):
                pass

            class StaticDummy(StaticTD3):
                pass

            class PrunedDummy(PrunedTD3):
                pass
            """
        )
    )
    files = tmp_path / "hyperparams"
    files.mkdir()
    for stem in ALGOS_WITH_FILES:
        (files / f"{stem}.yml").write_text(hyperparams_file(stem).read_text())
    entry = "default:\n  n_timesteps: 1000\n  policy: MlpPolicy\n  learning_starts: 20\n  sparsity: 0.5\n"
    for stem in ("dummy", "ds_dummy", "static_dummy", "pruned_dummy"):
        (files / f"{stem}.yml").write_text(entry + ("  drop_fraction: 0.1\n" if stem == "ds_dummy" else ""))
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})

        # The new family: one row of the table (before anything reads it) ...
        from sb3_dst.families import FAMILIES, Family, TargetUpdate

        FAMILIES.append(
            Family(
                "Dummy", "stable_baselines3:TD3", "dummy_family", "dummy", "deterministic",
                TargetUpdate(("critic", "actor"), "policy_delay"), policy_smoothing=True,
            )
        )
        # ... and its YAML files (a folder of this test in place of the repository's hyperparams/)
        import sb3_dst.hyperparams
        from pathlib import Path

        sb3_dst.hyperparams.hyperparams_dir = lambda: Path({str(files)!r})

        import optuna
        from dummy_family import DSDummy, PrunedDummy, StaticDummy

        from sb3_dst.benchmark.specs import ALGORITHMS, DENSE_BASELINE, default_hyperparams, family
        from sb3_dst.benchmark.worker import algorithm_class
        from sb3_dst.hyperparams import ALGOS_WITH_FILES
        from sb3_dst.zoo import DYNAMIC_ALGOS, SAMPLERS, TD3_ALGOS, ZOO_ALGOS, algorithm_classes, default_config

        # rl-zoo3: the algorithms, their samplers and their default files
        classes = algorithm_classes()
        assert (classes["ds_dummy"], classes["static_dummy"], classes["pruned_dummy"]) == (
            DSDummy, StaticDummy, PrunedDummy
        )
        assert "ds_dummy" in DYNAMIC_ALGOS and "pruned_dummy" in TD3_ALGOS
        assert default_config("static_dummy") == str(Path({str(files)!r}) / "static_dummy.yml")
        assert {{"dummy", "ds_dummy", "static_dummy", "pruned_dummy"}} <= set(ALGOS_WITH_FILES)
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
        sampled = SAMPLERS["ds_dummy"](trial, 1, 1, {{}})
        assert {{"drop_fraction", "evolution_interval", "policy_delay", "action_noise"}} <= set(sampled), sampled
        from sb3_dst.zoo import register

        register()  # what the start-up hook does when rl-zoo3 is imported
        from rl_zoo3 import ALGOS
        from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

        assert ALGOS["ds_dummy"] is DSDummy and HYPERPARAMS_SAMPLER["ds_dummy"] is SAMPLERS["ds_dummy"]

        # the harness: names, dense baseline, settings from the family's files, and a run's class
        assert list(ALGORITHMS)[-4:] == ["Dummy", "Static-Dummy", "DS-Dummy", "Pruned-Dummy"]
        assert DENSE_BASELINE[family("DS-Dummy:drop_fraction=0.2")] == "Dummy"
        params = default_hyperparams("DS-Dummy", "Pendulum-v1")
        assert params == {{"policy": "MlpPolicy", "learning_starts": 20, "sparsity": 0.5, "drop_fraction": 0.1}}
        model = algorithm_class("DS-Dummy")(env="Pendulum-v1", evolution_interval=5, batch_size=16, seed=0, **params)
        model.learn(40)
        assert type(model) is DSDummy and model.num_evolutions == 4
        print("the family is in")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "the family is in" in result.stdout


# --- initialisation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALL)
def test_exact_connection_counts_dense_outputs_and_target_copies(algo, small_kwargs):
    row = family_of(algo)
    model = algo("MlpPolicy", "Pendulum-v1", seed=1, **topology_kwargs(algo), **small_kwargs)
    # actor: 3->32 (λ=1: 35), 32->32 (λ=8: 512); each critic: 4->32 (36), 32->32 (512)
    expected = [35, 512] + [36, 512] * row.critics
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
    assert len(outputs) == row.critics and all(id(m) not in sparse_ids for m in outputs)
    assert all(m.out_features == (25 if row.quantile_critics else 1) for m in outputs)
    for online, target in target_pairs(model):  # targets start as exact copies, masks included (Algorithm 1, L5)
        assert th.equal(online.weight, target.weight)
        assert th.equal(getattr(online, MASK_NAME), getattr(target, MASK_NAME))
    assert (len(target_pairs(model)) > 0) == row.has_targets  # CrossQ has no target networks


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
    assert len(online) == len(connection_counts(model))
    assert all(not th.equal(before[k], after[k]) for k in online)  # every online sparse layer evolved
    assert_absent_weights_zero(model)
    assert_targets_hold_k(model)  # Algorithm 3: the targets follow the online budget


@pytest.mark.parametrize("algo", with_targets(DYNAMIC))
def test_target_masks_in_the_state_dict_are_the_targets_nonzero_patterns(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=2, evolution_interval=20, drop_fraction=0.2, **small_kwargs)
    model.learn(250)
    state = model.policy.state_dict()
    prefixes = {id(m): name for name, m in model.policy.named_modules()}
    pairs = target_pairs(model)
    assert pairs
    for online, target in pairs:
        mask = state[f"{prefixes[id(target)]}.{MASK_NAME}"]
        assert th.equal(mask, (target.weight != 0).float())
        assert int(mask.sum()) <= int(getattr(online, MASK_NAME).sum())


@pytest.mark.parametrize("algo", ALL)
def test_absent_weights_are_zero_at_steps_that_are_not_evolutions(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=6, **topology_kwargs(algo), **small_kwargs)
    model.learn(110)  # 60 gradient steps: an evolution (or the last pruning step) at step 60
    assert model._n_updates == 60
    if algo.topology_mode != "prune":  # (a pruned model counts its pruning steps)
        assert model.num_evolutions == (3 if algo.dynamic else 0)
    networks = {"actor": model.actor, "critic": model.critic}
    networks.update({name: getattr(model, name) for name in ("actor_target", "critic_target") if hasattr(model, name)})
    before = {name: [x.weight.detach().clone() for x in sparse_linears(net)] for name, net in networks.items()}
    topology = masks(model)
    for step in range(61, 67):  # six steps, none an evolution; TD3's actor moves at 62, 64, 66, CrossQ's at 63, 66
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
@pytest.mark.parametrize("algo", with_targets(DYNAMIC + PRUNED))
def test_targets_hold_exactly_k_after_every_target_update(algo, small_kwargs, monkeypatch):
    row = family_of(algo)
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
    model.learn(150)  # 100 gradient steps, one per train() call
    assert updates == row.target_update.updates(100, getattr(model, row.target_update.interval))


@pytest.mark.parametrize("algo", STATIC)
def test_static_variants_never_change_topology(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=3, **small_kwargs)
    before = masks(model)
    model.learn(250)
    after = masks(model)
    assert before.keys() == after.keys()
    assert all(th.equal(before[k], after[k]) for k in before)  # the targets' masks too
    assert model.num_evolutions == 0
    assert_targets_hold_k(model)


@pytest.mark.parametrize("algo", PRUNED)
def test_gradual_pruning_reaches_the_budget(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=8, **topology_kwargs(algo), **small_kwargs)
    model.learn(130)
    assert connection_counts(model) == [35, 512] + [36, 512] * family_of(algo).critics
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


@pytest.mark.parametrize("algo", [algo for algo in DYNAMIC + STATIC if "MultiInputPolicy" in algo.policy_aliases])
def test_multi_input_policy_with_her_trains_saves_and_resumes(algo, small_kwargs, tmp_path):
    row = family_of(algo)
    env = BitFlippingEnv(n_bits=4, continuous=True, max_steps=4)
    extra = dict(evolution_interval=20) if algo.dynamic else {}
    model = algo(
        "MultiInputPolicy",
        env,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs=dict(n_sampled_goal=2, goal_selection_strategy="future"),
        buffer_size=1000,
        seed=2,
        **extra,
        **small_kwargs,
    )
    assert isinstance(model.actor.features_extractor, CombinedExtractor)
    connections = [int(getattr(x, MASK_NAME).sum()) for x in sparse_linears(model.policy)]
    # two sparse layers in each of: actor, the Q-networks, and their targets if any
    copies = {name: 2 if name in row.target_update.networks else 1 for name in ("actor", "critic")}
    assert len(connections) == 2 * copies["actor"] + 2 * row.critics * copies["critic"]
    model.learn(150)
    assert model._n_updates == 100 and model.num_evolutions == (5 if algo.dynamic else 0)
    assert_sparse_and_targets_match(model)
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = algo.load(tmp_path / "model.zip", env=BitFlippingEnv(n_bits=4, continuous=True, max_steps=4))
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert loaded.replay_buffer.size() == model.replay_buffer.size()
    obs = env.reset(seed=0)[0]
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(60, reset_num_timesteps=False)
    assert loaded._n_updates == 160
    assert_sparse_and_targets_match(loaded)
    assert [int(getattr(x, MASK_NAME).sum()) for x in sparse_linears(loaded.policy)] == connections


# --- parity with the dense algorithms ---------------------------------------------------------------------------


@pytest.mark.parametrize("static_algo", STATIC)
def test_full_density_static_variant_reproduces_the_dense_algorithm_exactly(static_algo):
    """With sparsity 0 the masked train() must be the same algorithm as the dense one, to the last bit."""
    kwargs = dict(policy_kwargs=dict(net_arch=[16, 16]), learning_starts=30, batch_size=16, seed=7)
    dense = family_of(static_algo).cls()("MlpPolicy", "Pendulum-v1", **kwargs).learn(120)
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
    if algo in DYNAMIC:
        assert (loaded.evolution_interval, loaded.drop_fraction) == (20, model.drop_fraction)
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    loaded.learn(50, reset_num_timesteps=False)  # resume: the schedule continues from the saved counter
    assert loaded._n_updates == 150
    if algo in DYNAMIC:
        assert loaded.num_evolutions == 150 // 20
    assert connection_counts(loaded) == connection_counts(model)
    assert_absent_weights_zero(loaded)
    assert_targets_hold_k(loaded)
    obs = np.zeros((1, 3), dtype=np.float32)
    again = algo.load(tmp_path / "model.zip")
    assert np.array_equal(model.predict(obs, deterministic=True)[0], again.predict(obs, deterministic=True)[0])


# The Pruned versions' targets after loading: test_save_load_and_resume; CrossQ has no targets.
@pytest.mark.parametrize("algo", with_targets(DYNAMIC + STATIC))
def test_targets_keep_the_online_connection_counts_after_load_and_resume(algo, small_kwargs, tmp_path):
    extra = dict(evolution_interval=15) if algo.dynamic else {}
    model = algo("MlpPolicy", "Pendulum-v1", seed=7, **extra, **small_kwargs)
    model.learn(100)
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = algo.load(tmp_path / "model.zip", env=gym.make("Pendulum-v1"))
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert_sparse_and_targets_match(loaded)
    for _ in range(4):  # resume across evolutions (steps 60 and 75) and check after every chunk
        loaded.learn(10, reset_num_timesteps=False)
        assert_sparse_and_targets_match(loaded)
    assert loaded._n_updates == 90
    assert loaded.num_evolutions == (6 if algo.dynamic else 0)


@pytest.mark.parametrize("algo", DYNAMIC)
@pytest.mark.parametrize("part", ["policy", "actor", "critic"])
def test_policy_actor_and_critic_save_and_load_on_their_own(algo, part, small_kwargs, tmp_path):
    model = algo("MlpPolicy", "Pendulum-v1", seed=1, evolution_interval=20, **small_kwargs)
    model.learn(120)  # evolved: the masks differ from any freshly drawn ones
    module = getattr(model, part)
    module.save(tmp_path / part)
    th.manual_seed(123)  # the rebuilt masks must come from the file, not from the random generator
    loaded = type(module).load(tmp_path / part)
    a, b = module.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and any(k.endswith(MASK_NAME) for k in a)
    assert all(th.equal(a[k], b[k]) for k in a)
    assert [int(getattr(x, MASK_NAME).sum()) for x in sparse_linears(loaded)] == [
        int(getattr(x, MASK_NAME).sum()) for x in sparse_linears(module)
    ]
    module.set_training_mode(False)  # CrossQ's batch renormalisation: running statistics, not the batch's
    loaded.set_training_mode(False)
    obs = th.as_tensor(np.random.default_rng(0).uniform(-1, 1, (16, 3)), dtype=th.float32)
    with th.no_grad():
        if part == "critic":
            actions = th.zeros(16, 1)
            assert_same_outputs(module(obs, actions), loaded(obs, actions), model)
        else:
            predictions = (m.predict(obs.numpy(), deterministic=True)[0] for m in (module, loaded))
            assert_same_outputs(*map(th.as_tensor, predictions), model)


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
    "SparseContinuousCritic": (sb3_dst.DSDDPG, "critic", dict(n_critics=3), dict(n_critics=3)),
    "SparseQuantileCritic": (
        sb3_dst.DSTQC,
        "critic",
        dict(n_critics=3, n_quantiles=7),
        dict(n_critics=3, n_quantiles=7),
    ),
    "SparseCrossQCritic": (
        sb3_dst.DSCrossQ,
        "critic",
        dict(n_critics=3, batch_norm_momentum=0.05, renorm_warmup_steps=30),
        dict(n_critics=3, batch_renorm={(0.05, 30)}),
    ),
    "SparseActor (CrossQ)": (
        sb3_dst.DSCrossQ,
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


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(er_lambda=[7, 8]), ValueError, r"er_lambda=7 gives actor layer 0 \(3x32\)"),
        (dict(er_lambda=[1, 8, 3]), ValueError, r"er_lambda has 3 values but the actor has 2 sparse"),
        (dict(er_lambda=-1), ValueError, "positive"),
        (dict(er_lambda=[1, float("nan")]), ValueError, "positive"),
        (dict(er_lambda="7,64"), ValueError, "positive"),
        (dict(er_lambda=None, sparsity=-0.1), ValueError, r"sparsity must be a number in \[0, 1\)"),
        (dict(er_lambda=None, sparsity=1.0), ValueError, r"sparsity must be a number in \[0, 1\)"),
        (dict(sparsity=0.5), ValueError, "either er_lambda or sparsity"),
        (dict(drop_fraction=0.0), ValueError, r"drop_fraction \(η\) must be in \(0, 1\)"),
        (dict(drop_fraction=1.0), ValueError, r"drop_fraction \(η\)"),
        (dict(evolution_interval=0), ValueError, r"evolution_interval \(e\) must be an integer >= 1"),
        (dict(evolution_interval=2.5), ValueError, r"evolution_interval \(e\)"),
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
@pytest.mark.parametrize("algo", INTERVAL_ALGOS)
def test_a_bad_target_update_interval_is_refused(algo, interval, small_kwargs):
    with pytest.raises(ValueError, match="target_update_interval must be an integer >= 1"):
        algo("MlpPolicy", "Pendulum-v1", target_update_interval=interval, **small_kwargs)


@pytest.mark.parametrize("algo", ALL)
def test_each_is_its_dense_algorithm_and_a_typo_names_it(algo, small_kwargs):
    base = family_of(algo).cls()
    assert issubclass(algo, base)
    owner = "SB3" if base.__module__.startswith("stable_baselines3") else "sb3-contrib"
    typo = rf"^{algo.__name__} got an unexpected keyword argument 'learning_rat' \(did you mean 'learning_rate'"
    where = rf"every other keyword goes to {owner}'s {base.__name__}\.$"
    with pytest.raises(UnknownKeywordError, match=rf"{typo}.*{where}"):
        algo("MlpPolicy", "Pendulum-v1", learning_rat=1e-3, **small_kwargs)
