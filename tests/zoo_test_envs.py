"""Environments for the rl-zoo3 tests, registered on import (``--gym-packages zoo_test_envs``).

``NaNRewardPendulum-v0`` is Pendulum-v1 with NaN rewards: training on it diverges, the way a trial with bad
hyperparameters does, so the Optuna tests can check that such a trial is pruned with a reason.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym


class NaNReward(gym.Wrapper):
    """Replace every reward with NaN."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, _, terminated, truncated, info = self.env.step(action)
        return observation, float("nan"), terminated, truncated, info


def make_nan_pendulum(**kwargs: Any) -> gym.Env:
    return NaNReward(gym.make("Pendulum-v1", **kwargs))


if "NaNRewardPendulum-v0" not in gym.envs.registry:
    gym.register("NaNRewardPendulum-v0", entry_point=make_nan_pendulum, max_episode_steps=200)
