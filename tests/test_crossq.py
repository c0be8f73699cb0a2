"""The CrossQ family (DSCrossQ, StaticCrossQ, PrunedCrossQ, on sb3-contrib's CrossQ): batch renormalisation kept
dense, wide critics, no target networks."""

from __future__ import annotations

import copy

import pytest
import torch as th
from sb3_contrib import CrossQ
from sb3_contrib.common.torch_layers import BatchRenorm1d
from sparse_checks import assert_absent_weights_zero

from sb3_dst import DSCrossQ, StaticCrossQ
from sb3_dst.common.masking import MASK_NAME, sparse_linears
from sb3_dst.metrics import flops_breakdown, network_size, training_flops


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


def test_crossq_refuses_target_pruning_it_has_no_targets_for(small_kwargs):
    with pytest.raises(ValueError, match="no target networks"):
        StaticCrossQ("MlpPolicy", "Pendulum-v1", target_pruning="online_mask", **small_kwargs)


@pytest.mark.parametrize("warmed_up", [False, True])
@pytest.mark.parametrize("feature_major", [False, True])
def test_batch_renorm_fast_statistics_match_sb3_contrib_and_stay_exact_without_kernels(warmed_up, feature_major):
    """The BatchRenorm that the non-masked backends use computes sb3-contrib's within rounding (outputs, running
    averages, gradients), before and after the warm-up, on a row-major batch (statistics by matrix-vector products)
    and on a feature-major one as a layer on the kernels leaves it (the row kernels, here with an odd batch that
    leaves a tail of every vector loop); in a network with no layer on the kernels it is sb3-contrib's computation
    bit for bit."""
    from sb3_dst.common.sparse_backend import set_backend
    from sb3_dst.dscrossq.batch_renorm import FastStatsBatchRenorm1d, set_batch_stats

    th.manual_seed(0)
    reference = BatchRenorm1d(64, warmup_steps=1)
    fast = copy.deepcopy(reference)
    layer = th.nn.Linear(64, 64)
    layer.register_buffer("weight_mask", (th.rand(64, 64) < 0.5).float())
    set_backend(layer, "sparse")
    set_batch_stats(fast, True, [layer])
    assert type(fast) is FastStatsBatchRenorm1d
    for module in (reference, fast):
        module.steps += 2 if warmed_up else 0
        module.ra_mean.fill_(0.5)
    batch = 37 if feature_major else 256
    x = th.randn(batch, 64) * 3 + 2
    if feature_major:
        x = x.t().contiguous().t()
    x.requires_grad_()
    loss_weights = th.randn(batch, 64)
    outputs, grads = [], []
    for module in (reference, fast):
        y = module(x)
        (y * loss_weights).sum().backward()
        outputs.append(y.detach())
        grads.append((x.grad.clone(), module.scale.grad.clone(), module.bias.grad.clone()))
        x.grad = None
    th.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    for got, expected in zip(grads[1], grads[0], strict=True):
        th.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    th.testing.assert_close(fast.ra_var, reference.ra_var, rtol=1e-5, atol=1e-6)
    th.testing.assert_close(fast.ra_mean, reference.ra_mean, rtol=1e-5, atol=1e-6)
    assert int(fast.steps) == int(reference.steps)
    set_backend(layer, "masked")  # no layer on the kernels: sb3-contrib's own computation
    fast.load_state_dict(reference.state_dict())
    x = th.randn(256, 64)
    assert th.equal(fast(x), reference(x))
    set_batch_stats(fast, False)
    assert type(fast) is BatchRenorm1d
