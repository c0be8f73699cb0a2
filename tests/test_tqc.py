"""The TQC family (DSTQC, StaticTQC, PrunedTQC, on sb3-contrib's TQC): quantile critics, and the target update
counted inside each train() call as sb3-contrib's TQC does."""

from __future__ import annotations

import pytest
from sb3_contrib import TQC

from sb3_dst import DSTQC
from sb3_dst.metrics import flops_breakdown, network_size


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
