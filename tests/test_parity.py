"""Parity with Stable-Baselines3 (issue #12): callbacks, standalone policies, observation types, gSDE."""

from __future__ import annotations

import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from sb3_dst import DSSAC, DSTD3, StaticSAC, StaticTD3
from sb3_dst.common.masking import sparse_linears

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
