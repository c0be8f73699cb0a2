"""The DDPG family (DSDDPG, StaticDDPG, PrunedDDPG, on SB3's DDPG): TD3's machinery with one critic, an actor update
at every step and none of TD3's own hyperparameters."""

from __future__ import annotations

import pytest
from stable_baselines3 import DDPG

from sb3_dst import DSDDPG
from sb3_dst.common.dst import UnknownKeywordError
from sb3_dst.metrics import flops_breakdown, network_size


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


def test_ddpg_takes_ddpgs_arguments_not_td3s(small_kwargs):
    with pytest.raises(UnknownKeywordError, match=r"'policy_delay'.* goes to SB3's DDPG"):
        DSDDPG("MlpPolicy", "Pendulum-v1", policy_delay=2, **small_kwargs)
    model = DSDDPG("MlpPolicy", "Pendulum-v1", **small_kwargs)  # DDPG's settings of its TD3
    assert (model.policy_delay, model.target_noise_clip, model.critic.n_critics) == (1, 0.0, 1)
    small_kwargs["policy_kwargs"]["n_critics"] = 2  # as DDPG, an explicit n_critics is kept
    assert DSDDPG("MlpPolicy", "Pendulum-v1", **small_kwargs).critic.n_critics == 2
