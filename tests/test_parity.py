"""Parity with Stable-Baselines3: callbacks, image observations, and the other options of SB3's TD3/SAC (action
dtypes, vectorized envs, replay buffers, architectures, loading, TensorBoard), on the paper's two families. What every
family does (standalone policies, Dict observations with HER, targets after loading...) is in tests/test_families.py,
gSDE in tests/test_sac.py."""

from __future__ import annotations

import copy
import importlib.util

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from sparse_checks import assert_sparse_and_targets_match
from stable_baselines3.common.buffers import NStepReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack, VecNormalize

from sb3_dst import DSSAC, DSTD3, PrunedSAC, PrunedTD3, StaticSAC, StaticTD3
from sb3_dst.common.masking import MASK_NAME, sparse_layers, sparse_linears

ALGOS = [DSTD3, DSSAC]


# --- 1. callbacks given as functions --------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("as_list", [False, True])
def test_function_callbacks_are_converted_like_sb3(algo, as_list, small_kwargs):
    calls = []

    def stop_after_30(locals_: dict, globals_: dict) -> bool:
        calls.append(locals_["self"].num_timesteps)
        return len(calls) < 30  # False stops training, as with SB3's ConvertCallback

    class Counter(BaseCallback):
        def _on_step(self) -> bool:
            return True

    counter = Counter()
    model = algo("MlpPolicy", "Pendulum-v1", seed=0, **small_kwargs)
    model.learn(100, callback=[stop_after_30, counter] if as_list else stop_after_30)
    assert len(calls) == 30 and model.num_timesteps == 30
    assert model.dst_callback is not None
    if as_list:
        assert counter.n_calls == 30


# --- 2. image observations --------------------------------------------------------------------------------------


class TinyImageEnv(gym.Env):
    """Random 36x36 RGB frames (the smallest NatureCNN takes), one continuous action, episodes of 10 steps."""

    observation_space = spaces.Box(0, 255, (36, 36, 3), np.uint8)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self._frame(), -float(abs(action[0])), False, self.t >= 10, {}

    def _frame(self) -> np.ndarray:
        return self.np_random.integers(0, 256, self.observation_space.shape, dtype=np.uint8)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("share", [False, True])
def test_cnn_policy_keeps_the_extractor_dense_and_the_mlp_sparse(algo, share, small_kwargs, tmp_path):
    small_kwargs["policy_kwargs"].update(
        share_features_extractor=share, features_extractor_kwargs=dict(features_dim=64)
    )
    model = algo("CnnPolicy", TinyImageEnv(), buffer_size=200, seed=3, evolution_interval=10, **small_kwargs)
    assert isinstance(model.actor.features_extractor, NatureCNN)
    assert (model.critic.features_extractor is model.actor.features_extractor) == share
    for net in (model.actor, model.critic):
        assert not sparse_layers(net.features_extractor)  # dense extractor, convolutions included
    # the first sparse layer of each network reads the 64 features: ER count round(λ1 (64 + 32)) = 96
    assert [int(getattr(x, MASK_NAME).sum()) for x in sparse_linears(model.actor)] == [96, 512]
    before = {k: v.clone() for k, v in model.actor.state_dict().items() if k.endswith(MASK_NAME)}
    model.learn(80)
    assert model.num_evolutions == 3
    assert any(not th.equal(v, model.actor.state_dict()[k]) for k, v in before.items())
    assert_sparse_and_targets_match(model)
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip")
    obs = TinyImageEnv().reset(seed=0)[0]
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


# --- 3. sparse feature extractors -------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
def test_sparse_features_extractor_option_evolves_the_extractors_layers(algo, small_kwargs, tmp_path):
    # NatureCNN's three convolutions (round(λ (c_in + c_out + k_h + k_w)) each), its 64x64, then 64x32 and 32x32
    small_kwargs["er_lambda"] = [10.0, 10.0, 10.0, 1.0, 1.0, 8.0]
    small_kwargs["policy_kwargs"].update(
        sparse_features_extractor=True, features_extractor_kwargs=dict(features_dim=64)
    )
    model = algo("CnnPolicy", TinyImageEnv(), buffer_size=200, seed=8, evolution_interval=10, **small_kwargs)
    counts = [int(getattr(x, MASK_NAME).sum()) for x in sparse_layers(model.actor)]
    assert counts == [510, 1040, 1340, 128, 96, 512]
    critic_counts = [510, 1040, 1340, 128, 97, 512, 97, 512]
    assert [int(getattr(x, MASK_NAME).sum()) for x in sparse_layers(model.critic)] == critic_counts
    extractor = sparse_layers(model.actor.features_extractor)
    before = [getattr(x, MASK_NAME).clone() for x in extractor]
    model.learn(80)
    for layer, mask in zip(extractor, before, strict=True):
        assert not th.equal(getattr(layer, MASK_NAME), mask)  # evolved with the actor
    assert [int(getattr(x, MASK_NAME).sum()) for x in sparse_layers(model.actor)] == counts
    assert_sparse_and_targets_match(model)
    model.save(tmp_path / "model.zip")
    model.actor.save(tmp_path / "actor")
    obs = TinyImageEnv().reset(seed=0)[0]
    action = model.predict(obs, deterministic=True)[0]
    assert np.array_equal(action, algo.load(tmp_path / "model.zip").predict(obs, deterministic=True)[0])
    assert np.array_equal(action, type(model.actor).load(tmp_path / "actor").predict(obs, deterministic=True)[0])


@pytest.mark.parametrize(
    ("policy", "env", "extra", "message"),
    [
        ("MlpPolicy", lambda: gym.make("Pendulum-v1"), {}, "FlattenExtractor has no nn.Linear layer"),
    ],
)
def test_sparse_features_extractor_refuses_what_it_cannot_do(policy, env, extra, message, small_kwargs):
    small_kwargs["policy_kwargs"].update(sparse_features_extractor=True, **extra)
    with pytest.raises(ValueError, match=message):
        DSTD3(policy, env(), buffer_size=100, **small_kwargs)


# --- 4. everything else SB3's TD3/SAC accept -------------------------------------------------------------------


class Float64Actions(gym.Wrapper):
    """Pendulum with a float64 action space (SB3 casts actions to the space's dtype)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.action_space = spaces.Box(-2.0, 2.0, (1,), np.float64)


def frame_stacked_dict_env() -> VecFrameStack:
    return VecFrameStack(DummyVecEnv([lambda: SimpleMultiObsEnv(random_start=False, discrete_actions=False)]), 2)


def option_kwargs(option: str, small_kwargs: dict) -> tuple[str, object, dict]:
    """(policy, env, keywords) of a TD3/SAC option on a tiny problem."""
    policy, env, extra = "MlpPolicy", "Pendulum-v1", {}
    if option == "float64_actions":
        env = Float64Actions(gym.make("Pendulum-v1"))
    elif option == "vec_normalize":
        env = VecNormalize(make_vec_env("Pendulum-v1", 1))
    elif option == "frame_stacked_dict":
        policy, env = "MultiInputPolicy", frame_stacked_dict_env()
    elif option == "n_step":
        extra = dict(replay_buffer_class=NStepReplayBuffer, replay_buffer_kwargs=dict(n_steps=3))
    elif option == "optimize_memory_usage":
        extra = dict(optimize_memory_usage=True, replay_buffer_kwargs=dict(handle_timeout_termination=False))
    elif option == "net_arch_dict":
        small_kwargs["policy_kwargs"]["net_arch"] = dict(pi=[32, 32], qf=[16, 16])
    elif option == "activation_fn":
        small_kwargs["policy_kwargs"]["activation_fn"] = th.nn.Tanh
    elif option.startswith("n_critics"):
        small_kwargs["policy_kwargs"]["n_critics"] = int(option[-1])
    return policy, env, {**extra, **small_kwargs}


OPTIONS = [
    "float64_actions",
    "vec_normalize",
    "frame_stacked_dict",
    "n_step",
    "optimize_memory_usage",
    "net_arch_dict",
    "activation_fn",
    "n_critics_1",
    "n_critics_3",
]


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("option", OPTIONS)
def test_sb3_options_train_evolve_and_keep_the_sparsity(algo, option, small_kwargs):
    policy, env, kwargs = option_kwargs(option, small_kwargs)
    model = algo(policy, env, buffer_size=500, seed=9, evolution_interval=10, **kwargs)
    model.learn(90)
    assert model._n_updates == 40 and model.num_evolutions == 4
    assert_sparse_and_targets_match(model)
    if option == "net_arch_dict":
        assert [tuple(x.weight.shape) for x in sparse_linears(model.actor)] == [(32, 3), (32, 32)]
        assert [tuple(x.weight.shape) for x in sparse_linears(model.critic)] == [(16, 4), (16, 16)] * 2
    if option == "activation_fn":
        assert any(isinstance(m, th.nn.Tanh) for m in model.actor.modules())
        assert any(isinstance(m, th.nn.Tanh) for m in model.critic.modules())
    if option.startswith("n_critics"):
        n_critics = int(option[-1])
        assert len(model.critic.q_networks) == len(model.critic_target.q_networks) == n_critics
        assert len(sparse_linears(model.critic)) == 2 * n_critics


@pytest.mark.parametrize("algo", [StaticTD3, StaticSAC, PrunedTD3, PrunedSAC])
@pytest.mark.parametrize("option", ["vec_normalize", "n_step", "n_critics_3"])
def test_sb3_options_with_the_static_and_pruned_baselines(algo, option, small_kwargs):
    policy, env, kwargs = option_kwargs(option, small_kwargs)
    extra = dict(evolution_interval=10) if algo.topology_mode == "prune" else {}
    model = algo(policy, env, buffer_size=500, seed=9, **extra, **kwargs)
    model.learn(90)
    assert_sparse_and_targets_match(model)


@pytest.mark.parametrize("algo", ALGOS)
def test_subprocess_vec_env(algo, small_kwargs):
    env = make_vec_env("Pendulum-v1", 2, vec_env_cls=SubprocVecEnv)
    try:
        model = algo("MlpPolicy", env, buffer_size=500, seed=10, evolution_interval=10, **small_kwargs)
        model.learn(130)  # 2 envs: one gradient step per 2 transitions after learning_starts
        assert model.num_timesteps == 130 and model.num_evolutions >= 3
        assert_sparse_and_targets_match(model)
    finally:
        env.close()


SIX_ALGOS = [DSTD3, DSSAC, StaticTD3, StaticSAC, PrunedTD3, PrunedSAC]


def evolution_kwargs(algo) -> dict:
    """An evolution (or pruning step) every 10 gradient steps, for the algorithms that change their topology."""
    return {} if algo.topology_mode == "static" else dict(evolution_interval=10)


@pytest.mark.parametrize("algo", SIX_ALGOS)
def test_load_with_env_and_custom_objects_then_set_env(algo, small_kwargs, tmp_path):
    model = algo("MlpPolicy", "Pendulum-v1", seed=11, **evolution_kwargs(algo), **small_kwargs)
    model.learn(80)
    model.save(tmp_path / "model.zip")
    masks = [getattr(x, MASK_NAME).clone() for x in sparse_linears(model.policy)]
    loaded = algo.load(
        tmp_path / "model.zip", env=gym.make("Pendulum-v1"), custom_objects=dict(learning_rate=1e-4, gamma=0.9)
    )
    assert loaded.learning_rate == 1e-4 and loaded.gamma == 0.9
    assert all(th.equal(getattr(x, MASK_NAME), m) for x, m in zip(sparse_linears(loaded.policy), masks, strict=True))
    loaded.learn(40, reset_num_timesteps=False)
    assert_sparse_and_targets_match(loaded)
    loaded.set_env(make_vec_env("Pendulum-v1", 1))
    loaded.learn(40, reset_num_timesteps=False)
    assert loaded._n_updates == 110
    if algo.dynamic:
        assert loaded.num_evolutions == 11
    assert_sparse_and_targets_match(loaded)


@pytest.mark.parametrize("algo", SIX_ALGOS)
def test_get_and_set_parameters_carry_the_masks(algo, small_kwargs):
    model = algo("MlpPolicy", "Pendulum-v1", seed=12, **evolution_kwargs(algo), **small_kwargs)
    model.learn(80)
    params = model.get_parameters()
    assert any(k.endswith(MASK_NAME) for k in params["policy"])
    other = algo("MlpPolicy", "Pendulum-v1", seed=13, **small_kwargs)
    other.set_parameters(params)
    for a, b in zip(sparse_linears(model.policy), sparse_linears(other.policy), strict=True):
        assert th.equal(getattr(a, MASK_NAME), getattr(b, MASK_NAME)) and th.equal(a.weight, b.weight)
    assert_sparse_and_targets_match(other)
    other.learn(60)
    assert_sparse_and_targets_match(other)


@pytest.mark.parametrize("algo", SIX_ALGOS)
def test_set_parameters_without_masks_keeps_the_models_masks(algo, small_kwargs):
    """Dense weights (no ``weight_mask`` entries, ``exact_match=False``): the model's masks stay and absent
    weights are zeroed, in the online networks and their targets."""
    dense = algo("MlpPolicy", "Pendulum-v1", seed=14, **small_kwargs).get_parameters()
    for key, value in dense["policy"].items():
        if key.endswith(".weight"):
            value.copy_(th.randn_like(value))  # dense weights, non-zero everywhere
    weights_only = {"policy": {k: v for k, v in dense["policy"].items() if not k.endswith(MASK_NAME)}}
    model = algo("MlpPolicy", "Pendulum-v1", seed=15, **small_kwargs)
    masks = [getattr(x, MASK_NAME).clone() for x in sparse_linears(model.actor) + sparse_linears(model.critic)]
    model.set_parameters(weights_only, exact_match=False)
    layers = sparse_linears(model.actor) + sparse_linears(model.critic)
    assert all(th.equal(getattr(x, MASK_NAME), m) for x, m in zip(layers, masks, strict=True))
    assert_sparse_and_targets_match(model)
    model.learn(60)
    assert_sparse_and_targets_match(model)


# --- 5. TensorBoard run names ------------------------------------------------------------------------------------


def logged_run_names(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ``tb_log_name`` each ``learn()`` hands to SB3's logger set-up (recorded, logging to stdout only)."""
    from stable_baselines3.common import base_class

    names: list[str] = []
    configure = base_class.utils.configure_logger

    def record(verbose, tensorboard_log, tb_log_name, reset_num_timesteps=True):
        names.append(tb_log_name)
        return configure(verbose, None, tb_log_name, reset_num_timesteps)

    monkeypatch.setattr(base_class.utils, "configure_logger", record)
    return names


@pytest.mark.parametrize("algo", [DSTD3, StaticSAC, PrunedTD3])
def test_tensorboard_runs_are_named_after_the_algorithm(algo, small_kwargs, monkeypatch, tmp_path):
    names = logged_run_names(monkeypatch)
    model = algo("MlpPolicy", "Pendulum-v1", tensorboard_log=str(tmp_path), **small_kwargs)
    model.learn(10)
    model.learn(10, tb_log_name="mine")
    assert names == [algo.__name__, "mine"]


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_run_folders_are_named_after_the_algorithm(small_kwargs, tmp_path):
    # Each model gets its own copy: SB3 writes use_sde into the policy_kwargs dict it is given (SAC's True or False),
    # which TD3's policy does not take.
    def kwargs() -> dict:
        return copy.deepcopy(small_kwargs)

    for _ in range(2):
        StaticSAC("MlpPolicy", "Pendulum-v1", tensorboard_log=str(tmp_path), **kwargs()).learn(10)
    DSTD3("MlpPolicy", "Pendulum-v1", tensorboard_log=str(tmp_path), **kwargs()).learn(10, tb_log_name="TD3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["StaticSAC_1", "StaticSAC_2", "TD3_1"]
