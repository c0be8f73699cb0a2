"""What SB3's own save/load tests ask of a model, on the sparse models (``.ci/sb3_tests`` runs SB3's test files
themselves with DS-TD3 and DS-SAC in place of TD3 and SAC).

- Whatever ``set_parameters`` or ``policy.load_state_dict`` accepts reads back, saves and loads exactly. Masks set
  from outside are made 0/1 first (an entry >= 0.5 is a connection), weights outside them are zero, and each sparse
  target layer keeps as many connections as its online layer (Algorithm 3).
- ``load(path, policy_kwargs=...)`` takes the user's own ``policy_kwargs``, as SB3 does: the DST keywords are the
  model's attributes, not part of ``policy_kwargs``.
"""

from __future__ import annotations

from collections import OrderedDict
from copy import deepcopy
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.envs import FakeImageEnv, IdentityEnvBox

from sb3_dst import DSSAC, DSTD3, PrunedSAC
from sb3_dst.common.masking import MASK_NAME, sparse_layers

SMALL = dict(policy_kwargs=dict(net_arch=[16, 16]), learning_starts=20, batch_size=8, buffer_size=500, seed=0)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert th.equal(a[key].cpu(), b[key].cpu()), key


def assert_consistent(model) -> None:
    """Masks 0/1, online weights zero outside them, each sparse target layer with its online layer's count."""
    for name, (online_attr, target_attr) in model.networks.items():
        online = sparse_layers(getattr(model, online_attr))
        for layer in online:
            mask = getattr(layer, MASK_NAME)
            assert th.equal(mask, (mask > 0).to(mask.dtype)), name
            assert not th.any(layer.weight[mask == 0]), name
        if target_attr is not None:
            for layer, target in zip(online, sparse_layers(getattr(model, target_attr)), strict=True):
                assert int((target.weight != 0).sum()) <= int(getattr(layer, MASK_NAME).sum()), name


def random_like(state: dict) -> OrderedDict:
    return OrderedDict((key, th.rand_like(value)) for key, value in state.items())


@pytest.mark.parametrize("algo", [DSTD3, DSSAC, PrunedSAC])
def test_set_parameters_with_random_masks_round_trips(algo, tmp_path: Path) -> None:
    model = algo("MlpPolicy", IdentityEnvBox(-10, 10), sparsity=0.5, evolution_interval=10, **deepcopy(SMALL))
    model.learn(40)
    before = deepcopy(model.get_parameters())
    given = {name: random_like(state) for name, state in before.items() if "optim" not in name}
    model.set_parameters(given, exact_match=False)
    after = model.get_parameters()["policy"]

    # Masks binarised at 0.5, weights kept where the mask is 1 and zero elsewhere
    for key, value in given["policy"].items():
        if key.endswith(MASK_NAME) and not key.split(".")[0].endswith("_target"):
            assert th.equal(after[key], (value >= 0.5).to(value.dtype)), key
            weight_key = key.replace(MASK_NAME, "weight")
            assert th.equal(after[weight_key], given["policy"][weight_key] * after[key]), weight_key
        assert not th.allclose(before["policy"][key], after[key]), key  # SB3's test: every entry changed
    assert_consistent(model)

    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", env=IdentityEnvBox(-10, 10), device="cpu")
    assert_same_state(after, loaded.get_parameters()["policy"])
    assert_same_state(after, model.get_parameters()["policy"])  # reading them changed nothing either
    loaded.learn(40)
    assert_consistent(loaded)


def test_set_parameters_with_0_1_masks_takes_them_as_given(tmp_path: Path) -> None:
    model = DSTD3("MlpPolicy", "Pendulum-v1", sparsity=0.5, **deepcopy(SMALL))
    state = model.get_parameters()["policy"]
    given = OrderedDict(state)
    for key in state:
        if key.startswith("actor.") and key.endswith(MASK_NAME):
            mask = (th.rand_like(state[key]) < 0.3).to(state[key].dtype)
            given[key] = mask
            given[key.replace(MASK_NAME, "weight")] = th.randn_like(mask) * mask
    model.set_parameters({"policy": given}, exact_match=False)
    after = model.get_parameters()["policy"]
    for key in given:
        if key.startswith("actor."):
            assert th.equal(after[key], given[key]), key


@pytest.mark.parametrize("algo", [DSTD3, DSSAC])
@pytest.mark.parametrize("policy", ["MlpPolicy", "CnnPolicy"])
def test_policy_load_state_dict_with_random_values_round_trips(algo, policy: str, tmp_path: Path) -> None:
    if policy == "CnnPolicy":
        env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=False)
        kwargs = dict(policy_kwargs=dict(net_arch=[16], features_extractor_kwargs=dict(features_dim=16)))
    else:
        env, kwargs = IdentityEnvBox(-10, 10), dict(policy_kwargs=dict(net_arch=[16]))
    model = algo(policy, env, sparsity=0.5, buffer_size=200, learning_starts=10, batch_size=4, seed=0, **kwargs)
    before = deepcopy(model.policy.state_dict())
    model.policy.load_state_dict(random_like(before))
    after = deepcopy(model.policy.state_dict())
    for key in before:
        assert not th.allclose(before[key], after[key]), key
    assert_consistent(model)
    obs = np.stack([env.observation_space.sample() for _ in range(4)])
    actions, _ = model.predict(obs, deterministic=True)

    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", env=env, device="cpu")
    assert_same_state(after, loaded.policy.state_dict())
    assert np.allclose(actions, loaded.predict(obs, deterministic=True)[0], atol=1e-5)


def test_load_with_the_users_policy_kwargs(tmp_path: Path) -> None:
    policy_kwargs = dict(net_arch=[32])
    model = DSTD3("MlpPolicy", "Pendulum-v1", er_lambda=[2], policy_kwargs=policy_kwargs, buffer_size=100)
    assert model.policy_kwargs == {"net_arch": [32]}  # the DST keywords are the model's attributes
    model.save(tmp_path / "model.zip")
    env = gym.make("Pendulum-v1")
    loaded = DSTD3.load(tmp_path / "model.zip", env=env, policy_kwargs=dict(net_arch=[32]), device="cpu")
    assert loaded.er_lambda == [2] and loaded.policy.er_lambda == [2]
    for a, b in zip(sparse_layers(model.policy), sparse_layers(loaded.policy), strict=True):
        assert th.equal(getattr(a, MASK_NAME), getattr(b, MASK_NAME))
    with pytest.raises(ValueError, match="The specified policy kwargs do not equal the stored policy kwargs"):
        DSTD3.load(tmp_path / "model.zip", policy_kwargs=dict(net_arch=[64]), device="cpu")
    loaded.learn(10)  # learning keeps the topology keywords out of policy_kwargs
    assert loaded.policy_kwargs == {"net_arch": [32]}


def test_copying_the_policy_does_not_copy_the_model() -> None:
    model = DSTD3("MlpPolicy", "Pendulum-v1", er_lambda=[1, 8], policy_kwargs=dict(net_arch=[16, 16]))
    copy = deepcopy(model.policy)
    copy.load_state_dict(random_like(model.policy.state_dict()))  # the model's hook ignores a policy not its own
    assert_consistent(model)
    assert not any(
        th.equal(a.weight, b.weight) for a, b in zip(sparse_layers(model.policy), sparse_layers(copy), strict=True)
    )
