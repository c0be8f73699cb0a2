"""Sparse convolutions: with ``sparse_features_extractor=True`` the convolutions of a features extractor
get masks on their 4-D kernels, budgets from the ERK score of a kernel, masked steps, evolution, target sparsity
(Algorithm 3) and compact saves, like the fully connected layers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.save_util import load_from_zip_file
from test_parity import TinyImageEnv
from torch import nn

from sb3_dst import DSDDPG, DSSAC, DSTD3, DSTQC, PrunedTD3
from sb3_dst.common import masking, updaters
from sb3_dst.common.compact import is_compact
from sb3_dst.common.fused_adam import fused_adam_step
from sb3_dst.common.masking import MASK_NAME, sparse_layers, sparse_linears
from sb3_dst.common.topology import connection_budgets, er_budget, erk_densities, prune_to_k, random_mask
from sb3_dst.metrics import flops_breakdown, network_size

ALGOS = [DSTD3, DSSAC]
#: NatureCNN on 36x36 RGB frames: three convolutions, then its 64x64 linear layer, then the 32-32 MLP.
CONV_SHAPES = [(3, 32, 8, 8), (32, 64, 4, 4), (64, 64, 3, 3)]
#: λ = 8 for the layer after the extractor: the critic's must connect its action input for the actor to learn.
ER_LAMBDA = [10.0, 10.0, 10.0, 1.0, 8.0, 8.0]
#: round(λ (c_in + c_out + k_h + k_w)) per convolution, round(λ (n_in + n_out)) per linear layer.
ACTOR_COUNTS = [10 * 51, 10 * 104, 10 * 134, 128, 768, 512]
CRITIC_COUNTS = [510, 1040, 1340, 128, 776, 512, 776, 512]  # the critic's first layers read 64 features + 1 action


def counts(module: nn.Module) -> list[int]:
    return [int(getattr(x, MASK_NAME).sum()) for x in sparse_layers(module)]


def conv_layers(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in sparse_layers(module) if isinstance(m, nn.Conv2d)]


def image_model(algo, small_kwargs, share=False, **kwargs):
    small_kwargs["er_lambda"] = ER_LAMBDA
    small_kwargs["policy_kwargs"].update(
        sparse_features_extractor=True,
        share_features_extractor=share,
        features_extractor_kwargs=dict(features_dim=64),
    )
    small_kwargs.update(kwargs)
    small_kwargs.setdefault("evolution_interval", 10)
    return algo("CnnPolicy", TinyImageEnv(), buffer_size=200, seed=8, **small_kwargs)


def target_pairs(model) -> list[tuple[nn.Module, nn.Module]]:
    pairs = list(zip(sparse_layers(model.critic), sparse_layers(model.critic_target), strict=True))
    if hasattr(model, "actor_target"):
        pairs += list(zip(sparse_layers(model.actor), sparse_layers(model.actor_target), strict=True))
    return pairs


# --- budgets ------------------------------------------------------------------------------------------------------


def test_er_budget_of_a_convolution_counts_channels_and_kernel_sides():
    assert [er_budget(shape, 10.0) for shape in CONV_SHAPES] == [510, 1040, 1340]
    assert er_budget((64, 32), 1.0) == 96  # a linear layer: λ (n_in + n_out), as er_connection_count
    with pytest.raises(ValueError, match=r"\(3x32x8x8\) 6630 connections, more than the 6144 possible"):
        er_budget((3, 32, 8, 8), 130.0)
    mask = random_mask((32, 3, 8, 8), 510)
    assert mask.shape == (32, 3, 8, 8) and int(mask.sum()) == 510


def test_sparsity_budgets_use_the_kernel_score():
    shapes = [(3, 32, 8, 8), (64, 64)]  # 6144 and 4096 entries, scores 51/6144 and 128/4096
    lam = 0.1 * (6144 + 4096) / (51 + 128)
    assert connection_budgets(shapes, 0.9) == [round(lam * 51), round(lam * 128)] == [292, 732]
    densities = erk_densities(shapes, 0.9, power_scale=1.0)
    assert densities[0] / densities[1] == pytest.approx((51 / 6144) / (128 / 4096))
    # the same kernel scored as a linear layer of its fan-in and fan-out would be another split
    assert connection_budgets([(3 * 8 * 8, 32), (64, 64)], 0.9) != [292, 732]


@pytest.mark.parametrize("algo", ALGOS)
def test_er_lambda_gives_each_convolution_its_kernel_budget(algo, small_kwargs):
    model = image_model(algo, small_kwargs)
    # (linear layers may have become SparseLinear, an nn.Linear subclass, under the "auto" or "sparse" backend)
    kinds = ["Conv2d" if isinstance(x, th.nn.Conv2d) else "Linear" for x in sparse_layers(model.actor)]
    assert kinds == ["Conv2d"] * 3 + ["Linear"] * 3
    assert counts(model.actor) == ACTOR_COUNTS
    assert counts(model.critic) == CRITIC_COUNTS
    for net in (model.actor, model.critic):
        for layer in conv_layers(net):
            mask = getattr(layer, MASK_NAME)
            assert mask.shape == layer.weight.shape and mask.dim() == 4
            assert bool((layer.weight[mask == 0] == 0).all())
    assert sparse_linears(model.actor)[0] is sparse_layers(model.actor)[3]  # sparse_linears still finds linears only


@pytest.mark.parametrize("algo", ALGOS)
def test_sparsity_spreads_the_budget_over_convolutions_with_the_kernel_score(algo, small_kwargs):
    model = image_model(algo, small_kwargs, er_lambda=None, sparsity=0.8)
    shapes = [*CONV_SHAPES, (64, 64), (64, 32), (32, 32)]
    assert counts(model.actor) == connection_budgets(shapes, 0.8)
    assert counts(model.actor) != connection_budgets([(3 * 64, 32), (32 * 16, 64), (64 * 9, 64), *shapes[3:]], 0.8)
    sizes = [math.prod(shape) for shape in shapes]
    assert sum(counts(model.actor)) == pytest.approx(0.2 * sum(sizes), abs=len(shapes))


def test_a_wrong_number_of_lambdas_names_the_extractor_layers(small_kwargs):
    with pytest.raises(ValueError, match=r"er_lambda has 3 values .*features extractor"):
        image_model(DSTD3, small_kwargs, er_lambda=[1.0, 1.0, 8.0])


# --- masked steps, evolution, targets -----------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("fused", [True, False])
def test_absent_conv_weights_stay_exactly_zero_between_evolutions(algo, fused, small_kwargs):
    model = image_model(algo, small_kwargs, evolution_interval=100)
    model.fused_adam = fused
    model.learn(60)  # 10 gradient steps, no evolution
    convs = {"actor": conv_layers(model.actor), "critic": conv_layers(model.critic)}
    before = {name: [x.weight.detach().clone() for x in layers] for name, layers in convs.items()}
    masks = {name: [getattr(x, MASK_NAME).clone() for x in layers] for name, layers in convs.items()}
    for _ in range(2):
        model.train(gradient_steps=1, batch_size=32)
        for name, layers in convs.items():
            for layer, mask in zip(layers, masks[name], strict=True):
                assert th.equal(getattr(layer, MASK_NAME), mask)
                assert bool((layer.weight[mask == 0] == 0).all()), f"{name}: an absent conv weight moved"
    assert model.num_evolutions == 0
    for name, layers in convs.items():  # the existing kernel entries did move
        assert all(not th.equal(x.weight, w) for x, w in zip(layers, before[name], strict=True))


def test_fused_adam_steps_the_4d_kernels_with_their_masks(small_kwargs, monkeypatch):
    stepped_dims: list[int] = []

    def recording_step(optimizer, masks, skip=frozenset()):
        stepped = fused_adam_step(optimizer, masks, skip)
        stepped_dims.extend(p.dim() for p in stepped if id(p) in masks)
        return stepped

    monkeypatch.setattr(masking, "fused_adam_step", recording_step)
    model = image_model(DSSAC, small_kwargs, evolution_interval=100)
    model.learn(52)  # 2 gradient steps of actor and critic
    assert stepped_dims.count(4) == 2 * 2 * 3  # the three kernels of each network, at each step, on the fused path


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("growth", ["random", "gradient"])
def test_evolution_moves_conv_connections_and_keeps_their_counts(algo, growth, small_kwargs):
    model = image_model(algo, small_kwargs, growth=growth)
    masks = {
        name: [getattr(x, MASK_NAME).clone() for x in conv_layers(net)] for name, net in model.policy.named_children()
    }
    model.learn(80)  # 30 gradient steps: evolutions at 10, 20 and 30
    assert model.num_evolutions == 3
    for name in ("actor", "critic"):
        net = getattr(model, name)
        for layer, before in zip(conv_layers(net), masks[name], strict=True):
            after = getattr(layer, MASK_NAME)
            assert int(after.sum()) == int(before.sum())
            assert not th.equal(after, before), f"{name}: a convolution did not evolve"
            assert bool((layer.weight[after == 0] == 0).all())
    assert counts(model.actor) == ACTOR_COUNTS
    assert counts(model.critic) == CRITIC_COUNTS


@pytest.mark.parametrize("algo", ALGOS)
def test_target_convolutions_hold_at_most_k_nonzeros_after_polyak_updates(algo, small_kwargs):
    model = image_model(algo, small_kwargs, evolution_interval=5)
    model.learn(60)  # 10 gradient steps, two evolutions
    conv_pairs = [(online, target) for online, target in target_pairs(model) if isinstance(online, nn.Conv2d)]
    assert len(conv_pairs) == (6 if algo is DSTD3 else 3)
    for _ in range(6):  # steps 11-16, evolution at 15: targets move off the online masks, then are pruned back
        model.train(gradient_steps=1, batch_size=32)
        for online, target in conv_pairs:
            k = int(getattr(online, MASK_NAME).sum())
            assert int((target.weight != 0).sum()) <= k
    # the Polyak update alone would leave more: the target's support is the union of old and new connections
    online, target = conv_pairs[0]
    mixed = 0.5 * target.weight.detach() + 0.5 * online.weight.detach()
    assert int((mixed != 0).sum()) > int(getattr(online, MASK_NAME).sum())
    pruned = mixed.clone()
    prune_to_k(pruned, int(getattr(online, MASK_NAME).sum()))
    assert int((pruned != 0).sum()) == int(getattr(online, MASK_NAME).sum())


def test_gradual_pruning_takes_convolutions_from_dense_to_their_budget(small_kwargs):
    kwargs = dict(evolution_interval=5, pruning_start=0, pruning_end=20)
    model = image_model(PrunedTD3, small_kwargs, **kwargs)
    entries = [math.prod(shape) for shape in CONV_SHAPES]
    assert counts(model.actor)[:3] == entries  # dense at the start
    model.learn(80)  # 30 gradient steps: the last pruning step (20) reaches the budgets
    assert counts(model.actor) == ACTOR_COUNTS
    assert counts(model.critic) == CRITIC_COUNTS
    for online, target in target_pairs(model):
        assert int((target.weight != 0).sum()) <= int(getattr(online, MASK_NAME).sum())


# --- saves --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
def test_compact_saves_of_sparse_convolutions_round_trip_bit_for_bit(algo, small_kwargs, tmp_path):
    model = image_model(algo, small_kwargs)
    model.learn(80)
    model.save(tmp_path / "model.zip")
    _, params, _ = load_from_zip_file(tmp_path / "model.zip", load_data=False)
    conv_key = "actor.features_extractor.cnn.2.weight"
    assert is_compact(params["policy"][conv_key])  # stored compactly
    assert any(
        isinstance(v, dict) and any(map(is_compact, v.values())) for v in params["actor.optimizer"]["state"].values()
    )
    loaded = algo.load(tmp_path / "model.zip")
    for name in ("policy", "actor.optimizer", "critic.optimizer"):
        original, restored = model.get_parameters()[name], loaded.get_parameters()[name]
        if name == "policy":
            assert original.keys() == restored.keys()
            for key in original:
                a, b = original[key], restored[key]
                assert a.dtype == b.dtype and a.shape == b.shape
                assert th.equal(
                    a.view(th.int32) if a.dtype == th.float32 else a, b.view(th.int32) if b.dtype == th.float32 else b
                ), key
        else:
            for index, state in original["state"].items():
                for key, value in state.items():
                    if isinstance(value, th.Tensor):
                        assert th.equal(value, restored["state"][index][key])
    obs = TinyImageEnv().reset(seed=0)[0]
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    assert counts(loaded.actor) == ACTOR_COUNTS
    loaded.set_env(TinyImageEnv())
    loaded.learn(20, reset_num_timesteps=False)  # resumes, still sparse
    assert counts(loaded.actor) == ACTOR_COUNTS
    for online, target in target_pairs(loaded):
        assert int((target.weight != 0).sum()) <= int(getattr(online, MASK_NAME).sum())


@pytest.mark.parametrize("algo", ALGOS)
def test_standalone_actor_with_sparse_convolutions_saves_and_loads(algo, small_kwargs, tmp_path):
    model = image_model(algo, small_kwargs)
    model.learn(60)
    model.actor.save(tmp_path / "actor")
    loaded = type(model.actor).load(tmp_path / "actor")
    assert counts(loaded) == ACTOR_COUNTS
    obs = TinyImageEnv().reset(seed=0)[0]
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


# --- metrics ------------------------------------------------------------------------------------------------------

#: Output positions of NatureCNN's convolutions on 36x36 frames: 8x8, 3x3 and 1x1.
POSITIONS = [64, 9, 1]


def test_network_size_and_flops_count_sparse_convolutions(small_kwargs):
    model = image_model(DSTD3, small_kwargs)
    actor = sum(ACTOR_COUNTS) + 32  # the output layer (32x1) stays dense
    critic = sum(CRITIC_COUNTS) + 2 * 32
    assert network_size(model) == actor + critic
    assert dict(model._size_records)["dst/connections"] == actor + critic
    actor_macs = sum(k * p for k, p in zip(ACTOR_COUNTS, [*POSITIONS, 1, 1, 1], strict=True)) + 32
    extractor_macs = sum(k * p for k, p in zip(CRITIC_COUNTS[:4], [*POSITIONS, 1], strict=True))
    critic_macs = extractor_macs + sum(CRITIC_COUNTS[4:]) + 2 * 32  # one extractor pass for both Q-networks
    parts = flops_breakdown(model)
    assert parts.action_selection == actor_macs
    # target actor + target critics + online critics forward and backward, on the batch of 32
    assert parts.critic_update == 32 * (actor_macs + critic_macs + 3 * critic_macs)
    q1_macs = extractor_macs + CRITIC_COUNTS[4] + CRITIC_COUNTS[5] + 32
    assert parts.actor_update == 32 * (3 * actor_macs + 3 * q1_macs)
    # Algorithm 2 ranks every kernel entry of the sparse convolutions too
    extractor_entries = sum(math.prod(shape) for shape in CONV_SHAPES) + 64 * 64
    actor_entries = extractor_entries + 64 * 32 + 32 * 32
    critic_entries = extractor_entries + 2 * (65 * 32 + 32 * 32)
    assert parts.evolution == actor_entries + critic_entries


@pytest.mark.parametrize("share", [False, True])
def test_dense_convolutions_count_all_their_kernel_entries(share, small_kwargs):
    small_kwargs["policy_kwargs"].update(
        share_features_extractor=share, features_extractor_kwargs=dict(features_dim=64)
    )
    model = DSTD3("CnnPolicy", TinyImageEnv(), buffer_size=200, seed=3, **small_kwargs)
    assert not any(isinstance(x, nn.Conv2d) for x in sparse_layers(model.policy))
    kernels = sum(math.prod(shape) for shape in CONV_SHAPES)
    linear = 64 * 64
    actor_mlp, critic_mlp = 96 + 512 + 32, 2 * (97 + 512 + 32)
    assert network_size(model) == (1 if share else 2) * (kernels + linear) + actor_mlp + critic_mlp  # shared: once
    assert dict(model._size_records)["dst/connections"] == network_size(model)
    dense_macs = sum(math.prod(shape) * p for shape, p in zip(CONV_SHAPES, POSITIONS, strict=True)) + linear
    assert flops_breakdown(model).action_selection == dense_macs + actor_mlp


# --- the other algorithms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", [DSTQC, DSDDPG])
def test_tqc_and_ddpg_evolve_sparse_convolutions_and_save_them(algo, small_kwargs, tmp_path):
    model = image_model(algo, small_kwargs)
    before = [getattr(x, MASK_NAME).clone() for x in conv_layers(model.critic)]
    model.learn(80)
    assert model.num_evolutions == 3
    assert counts(model.actor) == ACTOR_COUNTS
    for layer, mask in zip(conv_layers(model.critic), before, strict=True):
        assert not th.equal(getattr(layer, MASK_NAME), mask)
        assert int(getattr(layer, MASK_NAME).sum()) == int(mask.sum())
        assert bool((layer.weight[getattr(layer, MASK_NAME) == 0] == 0).all())
    for online, target in target_pairs(model):
        assert int((target.weight != 0).sum()) <= int(getattr(online, MASK_NAME).sum())
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip")
    for (key, a), b in zip(model.policy.state_dict().items(), loaded.policy.state_dict().values(), strict=True):
        assert th.equal(a, b), key


# --- a sparse features extractor shared by actor and critic ---------------------------------------------------------


def extractor_layers(module: nn.Module) -> list[nn.Module]:
    return sparse_layers(module.features_extractor)


def bits(tensor: th.Tensor) -> th.Tensor:
    return tensor.view(th.int32) if tensor.dtype == th.float32 else tensor


@pytest.mark.parametrize("algo", ALGOS)
def test_a_shared_sparse_extractor_is_the_actors_and_counted_once(algo, small_kwargs):
    model = image_model(algo, small_kwargs, share=True)
    shared = extractor_layers(model.actor)
    assert model.critic.features_extractor is model.actor.features_extractor
    assert counts(model.actor) == ACTOR_COUNTS
    assert counts(model.critic) == CRITIC_COUNTS  # the actor's extractor (its λs), then the Q-networks' own λs
    assert [id(x) for x in model._sparse_layers["actor"][:4]] == [id(x) for x in shared]
    assert len(model._sparse_layers["critic"]) == 4  # the Q-networks' layers only
    assert not {id(x) for x in shared} & {id(x) for x in model._sparse_layers["critic"]}
    # TD3's critic target reads the actor target's extractor (SB3 shares it), SAC's its own copy
    copies = extractor_layers(model.critic_target)
    assert not {id(x) for x in shared} & {id(x) for x in copies}
    if algo is DSTD3:
        assert model.critic_target.features_extractor is model.actor_target.features_extractor
    assert counts(model.critic_target.features_extractor) == ACTOR_COUNTS[:4]
    assert [getattr(x, "connection_budget") for x in copies] == ACTOR_COUNTS[:4]  # noqa: B009
    # S: the extractor once, the actor's MLP (dense output: mu, and SAC's log_std), the two Q-networks
    actor_mlp = 768 + 512 + (32 if algo is DSTD3 else 2 * 32)
    assert network_size(model) == sum(ACTOR_COUNTS[:4]) + actor_mlp + 2 * (776 + 512 + 32)
    assert dict(model._size_records)["dst/connections"] == network_size(model)
    # Algorithm 2 ranks the shared extractor's kernel entries once
    extractor_entries = sum(math.prod(shape) for shape in CONV_SHAPES) + 64 * 64
    assert flops_breakdown(model).evolution == extractor_entries + 64 * 32 + 32 * 32 + 2 * (65 * 32 + 32 * 32)


def test_the_critic_of_a_shared_extractor_takes_the_lambdas_after_the_extractors(small_kwargs):
    small_kwargs["policy_kwargs"]["net_arch"] = dict(pi=[32, 32], qf=[32])
    message = r"er_lambda has 2 values after the 4 of the shared features extractor but the critic qf0 has 1 sparse"
    with pytest.raises(ValueError, match=message):
        image_model(DSTD3, small_kwargs, share=True)


@pytest.mark.parametrize("algo", ALGOS)
def test_a_shared_extractor_is_left_out_of_the_critics_sparsity_budget(algo, small_kwargs):
    model = image_model(algo, small_kwargs, share=True, er_lambda=None, sparsity=0.9)
    extractor_shapes = [*CONV_SHAPES, (64, 64)]
    actor_budgets = connection_budgets([*extractor_shapes, (64, 32), (32, 32)], 0.9)
    assert counts(model.actor) == actor_budgets
    assert counts(model.critic) == actor_budgets[:4] + 2 * connection_budgets([(65, 32), (32, 32)], 0.9)


@pytest.mark.parametrize("algo", ALGOS)
def test_a_shared_sparse_extractor_is_stepped_and_evolved_once(algo, small_kwargs, monkeypatch):
    model = image_model(algo, small_kwargs, share=True)
    shared = extractor_layers(model.actor)
    evolved: list[int] = []
    drop_and_grow = updaters.drop_and_grow

    def recording(weight, mask, *args, **kwargs):
        evolved.append(id(weight))
        return drop_and_grow(weight, mask, *args, **kwargs)

    monkeypatch.setattr(updaters, "drop_and_grow", recording)
    masks = [getattr(x, MASK_NAME).clone() for x in shared]
    model.learn(80)  # 30 gradient steps, evolutions at 10, 20 and 30
    assert model.num_evolutions == 3
    for layer, before in zip(shared, masks, strict=True):
        assert evolved.count(id(layer.weight)) == 3  # once per evolution interval, with the actor
        assert not th.equal(getattr(layer, MASK_NAME), before)
        assert int(getattr(layer, MASK_NAME).sum()) == int(before.sum())
    assert len(evolved) == 3 * (len(model._sparse_layers["actor"]) + len(model._sparse_layers["critic"]))
    # only the actor's optimizer steps the extractor (the critic computes its features without gradient)
    assert all(x.weight in model.actor.optimizer.state for x in shared)
    assert not any(x.weight in model.critic.optimizer.state for x in shared)
    masks = [getattr(x, MASK_NAME).clone() for x in shared]
    weights = [x.weight.detach().clone() for x in shared]
    for _ in range(2):  # steps 31 and 32: no evolution
        model.train(gradient_steps=1, batch_size=32)
        for layer, mask in zip(shared, masks, strict=True):
            assert th.equal(getattr(layer, MASK_NAME), mask)
            assert bool((layer.weight[mask == 0] == 0).all()), "an absent weight of the shared extractor moved"
    assert len(evolved) == 3 * (len(model._sparse_layers["actor"]) + len(model._sparse_layers["critic"]))
    assert all(not th.equal(x.weight, w) for x, w in zip(shared, weights, strict=True))


@pytest.mark.parametrize("algo", ALGOS)
def test_target_copies_of_a_shared_extractor_hold_at_most_k_nonzeros(algo, small_kwargs):
    model = image_model(algo, small_kwargs, share=True, evolution_interval=5)
    model.learn(60)  # 10 gradient steps, two evolutions
    pairs = target_pairs(model)  # the critic's include the shared extractor and the critic target's extractor
    copies = list(zip(extractor_layers(model.actor), extractor_layers(model.critic_target), strict=True))
    before = [target.weight.detach().clone() for _, target in copies]
    for _ in range(6):  # steps 11-16, evolution at 15: targets move off the online masks, then are pruned back
        model.train(gradient_steps=1, batch_size=32)
        for online, target in pairs:
            assert int((target.weight != 0).sum()) <= int(getattr(online, MASK_NAME).sum())
    for (online, target), weight in zip(copies, before, strict=True):
        assert not th.equal(target.weight, weight)  # Polyak-updated from the shared extractor
        assert int((target.weight != 0).sum()) == int(getattr(online, MASK_NAME).sum())


@pytest.mark.parametrize("algo", ALGOS)
def test_a_shared_sparse_extractor_saves_and_loads_bit_for_bit(algo, small_kwargs, tmp_path):
    model = image_model(algo, small_kwargs, share=True)
    model.learn(80)
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip")
    assert loaded.critic.features_extractor is loaded.actor.features_extractor
    for name in ("policy", "actor.optimizer", "critic.optimizer"):
        original, restored = model.get_parameters()[name], loaded.get_parameters()[name]
        if name == "policy":
            assert original.keys() == restored.keys()
            for key in original:
                assert th.equal(bits(original[key]), bits(restored[key])), key
        else:
            assert original["state"].keys() == restored["state"].keys()
            for index, state in original["state"].items():
                for key, value in state.items():
                    if isinstance(value, th.Tensor):
                        assert th.equal(bits(value), bits(restored["state"][index][key])), (name, index, key)
    obs = TinyImageEnv().reset(seed=0)[0]
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    assert len(loaded._sparse_layers["critic"]) == 4
    loaded.set_env(TinyImageEnv())
    loaded.learn(20, reset_num_timesteps=False)  # resumes, still sparse
    assert counts(loaded.actor) == ACTOR_COUNTS
    for online, target in target_pairs(loaded):
        assert int((target.weight != 0).sum()) <= int(getattr(online, MASK_NAME).sum())
