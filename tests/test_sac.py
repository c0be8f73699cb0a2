"""The SAC family (DSSAC, StaticSAC, PrunedSAC): sparse output heads, the paper's hard target update counted over all
gradient steps, and gSDE."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from sparse_checks import assert_sparse_and_targets_match

from sb3_dst import DSSAC, StaticSAC
from sb3_dst.common.masking import MASK_NAME, sparse_linears


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


def test_dssac_hard_target_update_counts_total_gradient_steps(small_kwargs):
    model = StaticSAC("MlpPolicy", "Pendulum-v1", seed=8, tau=1.0, target_update_interval=40, **small_kwargs)
    model.learn(50 + 39)  # 39 gradient steps: no target update yet
    assert not th.equal(model.critic.qf0[0].weight, model.critic_target.qf0[0].weight)
    model.learn(1, reset_num_timesteps=False)  # 40th step: hard copy
    assert th.equal(model.critic.qf0[0].weight, model.critic_target.qf0[0].weight)


@pytest.mark.parametrize("sparse_output_layer", [False, True])
def test_dssac_with_gsde_trains_evolves_and_keeps_its_masks(sparse_output_layer, small_kwargs, tmp_path):
    if sparse_output_layer:
        small_kwargs["er_lambda"] = [1.0, 8.0, 0.5]  # the mean head (32x1) is sparse too; log_std is a parameter
    model = DSSAC(
        "MlpPolicy",
        "Pendulum-v1",
        use_sde=True,
        sde_sample_freq=4,
        evolution_interval=10,
        sparse_output_layer=sparse_output_layer,
        seed=5,
        **small_kwargs,
    )
    names = [name for name, m in model.actor.named_modules() if hasattr(m, MASK_NAME)]
    assert names == ["latent_pi.0", "latent_pi.2"] + (["mu.0"] if sparse_output_layer else [])
    before = {k: v.clone() for k, v in model.actor.state_dict().items() if k.endswith(MASK_NAME)}
    model.learn(100)
    model.train(gradient_steps=5, batch_size=32)  # steps 51-55: no evolution (e = 10)
    assert model.num_evolutions == 5
    assert all(not th.equal(v, model.actor.state_dict()[k]) for k, v in before.items())
    assert [int(v.sum()) for v in before.values()] == [
        int(getattr(m, MASK_NAME).sum()) for m in sparse_linears(model.actor)
    ]
    assert_sparse_and_targets_match(model)
    model.save(tmp_path / "model.zip")
    loaded = DSSAC.load(tmp_path / "model.zip")
    obs = np.zeros((2, 3), dtype=np.float32)
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
