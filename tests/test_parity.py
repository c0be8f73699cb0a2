"""Parity with Stable-Baselines3 (issue #12): callbacks, standalone policies, observation types, gSDE."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from sb3_dst import DSSAC, DSTD3, StaticSAC, StaticTD3
from sb3_dst.common.masking import MASK_NAME, sparse_linears

ALGOS = [DSTD3, DSSAC]
ALL_ALGOS = [DSTD3, DSSAC, StaticTD3, StaticSAC]


def target_pairs(model) -> list[tuple[th.nn.Linear, th.nn.Linear]]:
    """(online, target) sparse layers of every network that has a target."""
    pairs = list(zip(sparse_linears(model.critic), sparse_linears(model.critic_target), strict=True))
    if hasattr(model, "actor_target"):
        pairs += list(zip(sparse_linears(model.actor), sparse_linears(model.actor_target), strict=True))
    return pairs


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


# --- 2. policies and actors saved and loaded on their own -----------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
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
    obs = th.as_tensor(np.random.default_rng(0).uniform(-1, 1, (16, 3)), dtype=th.float32)
    with th.no_grad():
        if part == "critic":
            actions = th.zeros(16, 1)
            assert all(th.equal(x, y) for x, y in zip(module(obs, actions), loaded(obs, actions), strict=True))
        else:
            assert np.array_equal(
                module.predict(obs.numpy(), deterministic=True)[0], loaded.predict(obs.numpy(), deterministic=True)[0]
            )
