"""The sparse backend: its kernels against dense products, its layers against nn.Linear, and whole algorithms on
both backends."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.logger import configure
from torch import nn

import sb3_dst
from sb3_dst.common import sparse_kernels
from sb3_dst.common.masking import MASK_NAME, add_mask, sparse_layers
from sb3_dst.common.sparse_backend import (
    SparseIndex,
    SparseLinear,
    invalidate,
    is_feature_major,
    link_layers,
    set_backend,
    sparse_adam_step,
    sparse_is_faster,
    uses_sparse_kernels,
)

pytestmark = pytest.mark.skipif(sparse_kernels.load_kernels() is None, reason="no C compiler for the kernels")


def _support(rng: np.random.Generator, n_out: int, n_in: int, density: float, empty: bool) -> th.Tensor:
    support = th.as_tensor(rng.random((n_out, n_in)) < density)
    if empty and n_out > 1 and n_in > 1:  # rows and columns without any connection
        support[rng.integers(n_out)] = False
        support[:, rng.integers(n_in)] = False
    return support


def _close(actual: th.Tensor, expected: th.Tensor, what: str) -> None:
    """Equal within float rounding: 1e-5 of the tensor's scale."""
    actual, expected = actual.detach(), expected.detach()
    scale = max(float(expected.abs().max()), 1e-6)
    assert float((actual - expected).abs().max()) <= 1e-5 * scale, what


@settings(max_examples=60, deadline=None)
@given(
    n_out=st.integers(1, 70),
    n_in=st.integers(1, 70),
    batch=st.sampled_from([1, 2, 3, 7, 16, 17, 33, 64, 127, 130, 257]),
    density=st.sampled_from([0.0, 0.02, 0.1, 0.5, 1.0]),
    empty=st.booleans(),
    relu=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_kernels_match_dense_products(n_out, n_in, batch, density, empty, relu, seed):
    """Forward (with bias and ReLU), input gradient and weight gradient at present connections, on random shapes,
    densities, empty rows and columns, batch 1 and odd batches (the kernels' tails)."""
    rng = np.random.default_rng(seed)
    support = _support(rng, n_out, n_in, density, empty)
    weight = th.as_tensor(rng.standard_normal((n_out, n_in)), dtype=th.float32) * support
    bias = th.as_tensor(rng.standard_normal(n_out), dtype=th.float32)
    x = th.as_tensor(rng.standard_normal((batch, n_in)), dtype=th.float32)
    grad_y = th.as_tensor(rng.standard_normal((batch, n_out)), dtype=th.float32)
    index = SparseIndex.from_support(support)
    assert index.nnz == int(support.sum())

    y_t = th.full((n_out, batch), float("nan"))
    sparse_kernels.spmm(index.row_ptr, index.row_src, index.row_pos, weight, bias, x.t().contiguous(), y_t, relu)
    expected = F.linear(x, weight, bias)
    _close(y_t.t(), expected.relu() if relu else expected, "forward")

    grad_x_t = th.full((n_in, batch), float("nan"))
    sparse_kernels.spmm(index.col_ptr, index.col_src, index.col_pos, weight, None, grad_y.t().contiguous(), grad_x_t)
    _close(grad_x_t.t(), grad_y @ weight, "input gradient")

    grad_w = th.zeros(n_out, n_in)
    sparse_kernels.sddmm(
        index.row_ptr, index.row_src, index.row_pos, grad_y.t().contiguous(), x.t().contiguous(), grad_w
    )
    _close(grad_w, (grad_y.t() @ x) * support, "weight gradient")
    assert bool((grad_w[~support] == 0).all())


def test_index_lists_connections_in_row_and_column_order():
    support = th.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 0]], dtype=th.bool)
    index = SparseIndex.from_support(support)
    assert index.row_ptr.tolist() == [0, 2, 2, 4]
    assert index.row_src.tolist() == [0, 2, 0, 1] and index.row_pos.tolist() == [0, 2, 6, 7]
    assert index.col_ptr.tolist() == [0, 2, 3, 4]
    assert index.col_src.tolist() == [0, 2, 2, 0] and index.col_pos.tolist() == [0, 6, 7, 2]
    assert index.density == pytest.approx(4 / 9)


def _sparse_layer(n_in: int, n_out: int, density: float, backend: str = "sparse", seed: int = 0) -> nn.Linear:
    th.manual_seed(seed)
    layer = nn.Linear(n_in, n_out)
    add_mask(layer, max(1, round(density * n_in * n_out)))
    set_backend(layer, backend)
    return layer


@pytest.mark.parametrize("batch", [1, 5, 64])
@pytest.mark.parametrize("transposed", [False, True])
def test_a_sparse_layer_computes_what_its_masked_linear_computes(batch, transposed):
    """Values and all three gradients; inputs in torch's layout or feature-major (as a sparse layer leaves them),
    and the next layer's input keeps the feature-major layout through a ReLU."""
    layer = _sparse_layer(40, 30, 0.2)
    reference = copy.deepcopy(layer)
    assert type(layer) is SparseLinear and type(reference) is nn.Linear  # a copy is a plain layer
    x = th.randn(batch, 40)
    if transposed:
        x = x.t().contiguous().t()
    x_a, x_b = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = layer(x_a)
    z = reference(x_b)
    _close(y, z, "output")
    if batch > 1:
        assert y.t().is_contiguous() and th.relu(y).t().is_contiguous()  # feature-major, kept by ReLU
    grad = th.randn(batch, 30)
    (y * grad).sum().backward()
    (z * grad).sum().backward()
    mask = getattr(layer, MASK_NAME) > 0
    _close(x_a.grad, x_b.grad, "input gradient")
    _close(layer.weight.grad, reference.weight.grad * mask, "weight gradient")
    assert bool((layer.weight.grad[~mask] == 0).all())  # present connections only
    _close(layer.bias.grad, reference.bias.grad, "bias gradient")


def test_a_sparse_layer_takes_any_leading_dimensions_and_gives_the_dense_gradient_when_asked():
    layer = _sparse_layer(12, 9, 0.3)
    reference = copy.deepcopy(layer)
    x = th.randn(4, 6, 12)
    _close(layer(x), reference(x), "3-d input")
    state = layer._sparse_state
    state.dense_grad_due = lambda: True  # RigL's evolution step: the gradient everywhere
    x2 = th.randn(32, 12)
    layer(x2).square().sum().backward()
    reference(x2).square().sum().backward()
    _close(layer.weight.grad, reference.weight.grad, "dense weight gradient")
    assert bool((layer.weight.grad[getattr(layer, MASK_NAME) == 0] != 0).any())


def test_the_weight_gradient_reuses_its_storage_accumulates_and_follows_topology_changes():
    """The weight gradient is written into one storage across passes (no dense allocation per pass), two passes
    before zero_grad add up (the second as a sparse gradient, as SAC's actor loss through the critic does), and a
    new topology leaves no stale value at a dropped connection."""
    layer = _sparse_layer(60, 50, 0.2)
    reference = copy.deepcopy(layer)
    storages = set()
    for step in range(3):
        if step == 2:  # evolution: another mask, the index rebuilt
            new_mask = (th.rand(50, 60) < 0.2).float()
            with th.no_grad():
                for net in (layer, reference):
                    getattr(net, MASK_NAME).copy_(new_mask)
                    net.weight.copy_(th.randn(50, 60) * new_mask)
            invalidate([layer])
        layer.weight.grad = reference.weight.grad = None
        for _ in range(2):
            x, grad = th.randn(33, 60), th.randn(33, 50)
            (layer(x) * grad).sum().backward()
            (reference(x) * grad).sum().backward()
        mask = getattr(layer, MASK_NAME) > 0
        assert layer.weight.grad.layout == th.strided
        _close(layer.weight.grad, reference.weight.grad * mask, f"accumulated weight gradient, step {step}")
        assert bool((layer.weight.grad[~mask] == 0).all()), f"stale gradient at an absent position, step {step}"
        storages.add(layer.weight.grad.untyped_storage().data_ptr())
    assert len(storages) == 1


def test_the_index_follows_load_state_dict_and_a_masked_layer_is_plain():
    layer = _sparse_layer(50, 40, 0.1)
    x = th.randn(20, 50)
    layer(x)  # builds the index
    state = copy.deepcopy(layer.state_dict())
    new_mask = (th.rand(40, 50) < 0.3).float()
    state[MASK_NAME], state["weight"] = new_mask, th.randn(40, 50) * new_mask
    layer.load_state_dict(state)
    _close(layer(x), F.linear(x, state["weight"], state["bias"]), "after load_state_dict")  # stale index would fail
    set_backend(layer, "masked")
    assert type(layer) is nn.Linear


def test_auto_picks_the_sparse_path_by_density_width_and_batch():
    assert sparse_is_faster(0.2, 1024, 1024, 256) and not sparse_is_faster(0.3, 1024, 1024, 256)
    assert sparse_is_faster(0.1, 1024, 1024, 100) and not sparse_is_faster(0.2, 1024, 1024, 100)
    assert not sparse_is_faster(0.02, 1024, 1024, 16) and not sparse_is_faster(0.1, 1024, 1024, 1)  # acting
    assert not sparse_is_faster(0.1, 17, 1024, 256)  # too small to gain
    wide, dense_ish = _sparse_layer(256, 256, 0.05, "auto"), _sparse_layer(256, 256, 0.6, "auto")
    assert uses_sparse_kernels(wide, 256) and not uses_sparse_kernels(wide, 1)
    assert not uses_sparse_kernels(dense_ish, 256)


def test_auto_steps_with_sparse_adam_only_the_layers_its_last_training_pass_ran_on_the_kernels():
    """A layer "auto" keeps dense for its training batch is left to the dense path's Adam (stepping it at its
    connections cost the paper's half-dense DSTD3 9 %), and the rule's cached answer follows the batch and index."""
    layer = _sparse_layer(256, 256, 0.05, "auto")
    optimizer = th.optim.Adam(layer.parameters(), lr=0.01)
    layer(th.randn(256, 256)).sum().backward()
    assert sparse_adam_step(optimizer, [layer]) == [layer.weight]  # trained on the kernels
    optimizer.zero_grad()
    with th.no_grad():
        layer(th.randn(1, 256))  # acting (dense) does not change what training ran on
    layer(th.randn(256, 256)).sum().backward()
    assert sparse_adam_step(optimizer, [layer]) == [layer.weight]
    optimizer.zero_grad()
    layer(th.randn(16, 256)).sum().backward()  # a batch the rule keeps dense
    assert sparse_adam_step(optimizer, [layer]) == []
    optimizer.zero_grad()
    assert uses_sparse_kernels(layer, 256)  # the rule's answer for 256 is the one kept
    getattr(layer, MASK_NAME).fill_(1.0)  # a topology change to dense: the cached answer must not survive it
    invalidate([layer])
    assert not uses_sparse_kernels(layer, 256)
    layer(th.randn(256, 256)).sum().backward()
    assert sparse_adam_step(optimizer, [layer]) == []


def test_under_auto_a_dense_layer_hands_a_layer_on_the_kernels_its_output_feature_major():
    """A narrow first layer "auto" keeps dense writes its output in the layout the next layer's kernels read (no
    transpose between them, and the ReLU and BatchRenorm between them stay contiguous); values and gradients are the
    masked network's. A batch the next layer takes densely keeps nn.Linear's own product, bit for bit."""
    th.manual_seed(0)
    layers = [_sparse_layer(17, 256, 0.8, "auto", 1), _sparse_layer(256, 256, 0.05, "auto", 2)]
    layers.append(_sparse_layer(256, 256, 0.6, "auto", 3))
    network = nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])
    link_layers(network)
    reference = copy.deepcopy(network)  # plain nn.Linear layers
    first_outputs: list[th.Tensor] = []
    layers[0].register_forward_hook(lambda module, args, output: first_outputs.append(output))
    for batch, on_kernels in ((256, True), (16, False)):
        assert uses_sparse_kernels(layers[1], batch) is on_kernels and not uses_sparse_kernels(layers[0], batch)
        x = th.randn(batch, 17)
        x_a, x_b = x.clone().requires_grad_(), x.clone().requires_grad_()
        y, z = network(x_a), reference(x_b)
        assert is_feature_major(first_outputs[-1]) is on_kernels
        if not on_kernels:
            assert th.equal(first_outputs[-1], reference[0](x)) and th.equal(y, z)
        _close(y, z, "output")
        grad = th.randn(batch, 256)
        (y * grad).sum().backward()
        (z * grad).sum().backward()
        _close(x_a.grad, x_b.grad, "input gradient")
        for layer, plain in zip(layers, reference[::2], strict=True):  # present connections only on the kernels
            kept = getattr(layer, MASK_NAME) > 0 if uses_sparse_kernels(layer, batch) else 1
            _close(layer.weight.grad, plain.weight.grad * kept, "weight gradient")
            layer.weight.grad = plain.weight.grad = None


def test_bad_backends_are_refused_and_convolutions_stay_masked():
    with pytest.raises(ValueError, match="'auto', 'masked', 'sparse'"):
        sb3_dst.DSTD3("MlpPolicy", "Pendulum-v1", sparse_backend="cuda")
    with pytest.raises(ValueError, match="sparse_backend must be one of"):
        set_backend(nn.Linear(3, 3), "dense")
    conv = nn.Conv2d(2, 4, 3)
    add_mask(conv, 30)
    assert set_backend(conv, "sparse") is False and type(conv) is nn.Conv2d


def test_adam_steps_only_the_present_connections_as_torch_does():
    layer = _sparse_layer(30, 20, 0.25)
    reference = copy.deepcopy(layer)
    mask = getattr(layer, MASK_NAME)
    optimizers = [th.optim.Adam(m.parameters(), lr=0.01, weight_decay=0.001) for m in (layer, reference)]
    for _ in range(3):
        x = th.randn(16, 30)
        for module, optimizer in zip((layer, reference), optimizers, strict=True):
            optimizer.zero_grad()
            module(x).square().mean().backward()
        reference.weight.grad.mul_(mask)
        assert sparse_adam_step(optimizers[0], [layer]) == [layer.weight]
        layer.weight.grad = None  # the bias is left to torch's step
        optimizers[0].step()
        optimizers[1].step()
        _close(layer.weight, reference.weight, "weights")
        _close(layer.bias, reference.bias, "bias")
        assert bool((layer.weight[mask == 0] == 0).all())


def _small(cls, backend, **kwargs):
    return cls(
        "MlpPolicy", "Pendulum-v1", seed=0, sparsity=0.8, learning_starts=10_000, batch_size=48,
        policy_kwargs=dict(net_arch=[64, 64]), sparse_backend=backend, **kwargs,
    )  # fmt: skip


FAMILIES = ["DSTD3", "DSSAC", "DSDDPG", "DSTQC", "DSCrossQ", "StaticSAC", "PrunedTD3"]


@pytest.mark.parametrize("name", FAMILIES)
def test_one_gradient_step_gives_the_same_weights_on_both_backends(name):
    """From the same state and batch, one train() step of the masked and of the sparse backend: every weight equal
    within float rounding (1e-5 of each tensor's scale)."""
    cls = getattr(sb3_dst, name)
    models = [_small(cls, backend) for backend in ("masked", "sparse")]
    for model in models:
        model.learn(200)  # fills the buffer, no gradient step yet
        model.set_logger(configure(None, [""]))
    assert any(uses_sparse_kernels(layer, 48) for layer in sparse_layers(models[1].critic))
    for model in models:
        th.manual_seed(1)
        np.random.seed(1)
        model.train(gradient_steps=1, batch_size=48)
    masked, sparse = (m.policy.state_dict() for m in models)
    for key, value in masked.items():
        if name == "DSCrossQ" and key.endswith(".bias") and "critic" in key:
            # CrossQ's BatchRenorm removes a critic bias' effect: its gradient is rounding noise, which Adam's first
            # step scales to ±lr on either backend. The weights around it are compared.
            continue
        _close(sparse[key], value, key)


@pytest.mark.parametrize("name", ["DSSAC", "DSTD3", "DSCrossQ"])
def test_the_same_seed_on_the_sparse_backend_repeats_bit_for_bit(name):
    runs = []
    growth = dict(growth="gradient") if name == "DSSAC" else {}  # RigL's dense gradient steps included once
    for _ in range(2):
        model = getattr(sb3_dst, name)(
            "MlpPolicy", "Pendulum-v1", seed=4, sparsity=0.8, learning_starts=50, batch_size=32,
            policy_kwargs=dict(net_arch=[64, 64]), evolution_interval=25, sparse_backend="sparse", **growth,
        )  # fmt: skip
        model.learn(160)
        runs.append(model.policy.state_dict())
    assert all(th.equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize("name", ["DSTD3", "DSSAC"])
def test_targets_compute_on_their_connections_across_evolutions(name):
    """After evolutions and target pruning, each sparse layer (online and target) computes what its dense weight
    computes: a target index not rebuilt after an evolution would miss connections."""
    model = getattr(sb3_dst, name)(
        "MlpPolicy", "Pendulum-v1", seed=2, sparsity=0.8, learning_starts=40, batch_size=32,
        policy_kwargs=dict(net_arch=[64, 64]), evolution_interval=15, sparse_backend="sparse",
    )  # fmt: skip
    model.learn(200)
    assert model.num_evolutions >= 5
    layers = [layer for module in (model.actor, model.critic, model.critic_target) for layer in sparse_layers(module)]
    layers += sparse_layers(getattr(model, "actor_target", nn.Module()))
    x = th.randn(32, 64)
    online = {id(layer) for module in (model.actor, model.critic) for layer in sparse_layers(module)}
    for layer in layers:
        if layer.in_features == 64:
            assert uses_sparse_kernels(layer, 32)
            _close(layer(x), F.linear(x, layer.weight, layer.bias), "layer")
        # Grown connections start at zero, so a stale index would still compute the same values: check the index.
        index = layer.sparse_index(x[:, : layer.in_features])
        positions = set(index.row_pos.tolist())
        if id(layer) in online:
            assert positions == set(th.nonzero(getattr(layer, MASK_NAME).flatten()).flatten().tolist())
        else:  # a target: every non-zero is computed
            assert set(th.nonzero(layer.weight.flatten()).flatten().tolist()) <= positions


def test_save_and_load_keep_the_backend_and_the_predictions(tmp_path):
    model = sb3_dst.DSTD3(
        "MlpPolicy", "Pendulum-v1", seed=0, sparsity=0.8, learning_starts=40, batch_size=32,
        policy_kwargs=dict(net_arch=[64, 64]), evolution_interval=20, sparse_backend="sparse",
    )  # fmt: skip
    model.learn(120)
    model.save(tmp_path / "model")
    loaded = sb3_dst.DSTD3.load(tmp_path / "model")
    assert loaded.sparse_backend == "sparse"
    obs = np.random.default_rng(0).uniform(-1, 1, (20, 3)).astype(np.float32)
    with th.no_grad():
        a = model.critic(th.as_tensor(obs), th.zeros(20, 1))
        b = loaded.critic(th.as_tensor(obs), th.zeros(20, 1))
    assert all(th.equal(x, y) for x, y in zip(a, b, strict=True))
    masked = sb3_dst.DSTD3.load(tmp_path / "model", sparse_backend="masked")
    assert masked.sparse_backend == "masked" and not any(
        type(layer) is SparseLinear for layer in masked.policy.modules()
    )


def test_matching_sparsity_gives_a_wide_network_the_connections_of_a_narrow_dense_one():
    # HalfCheetah's critic: 17 + 6 inputs, one output. Dense 256-256: 23·256 + 256·256 + 256 weights.
    target = 23 * 256 + 256 * 256 + 256
    assert target == 71_680
    # Uniform: round((1 - s)·23·1024) + round((1 - s)·1024²) + 1024 (the dense output layer) = 71 680
    sparsity = sb3_dst.matching_sparsity(23, 1, [1024, 1024], [256, 256], distribution="uniform")
    assert sparsity == pytest.approx(1 - (target - 1024) / (23 * 1024 + 1024**2), abs=1e-6)
    assert 0.934 < sparsity < 0.9342
    for distribution in ("erk", "uniform"):
        sparsity = sb3_dst.matching_sparsity(23, 1, [1024, 1024], [256, 256], distribution=distribution)
        model = sb3_dst.DSSAC(
            "MlpPolicy", "HalfCheetah-v5", critic_sparsity=sparsity, actor_sparsity=0.5,
            sparsity_distribution=distribution,
            policy_kwargs=dict(net_arch=dict(pi=[64, 64], qf=[1024, 1024]), n_critics=1),
        )  # fmt: skip
        weights = [layer.weight for layer in model.critic.modules() if isinstance(layer, nn.Linear)]
        assert abs(sum(int(th.count_nonzero(w)) for w in weights) - target) <= 2  # built as computed
    with pytest.raises(ValueError, match="fewer connections"):
        sb3_dst.matching_sparsity(23, 1, [128, 128], [256, 256])


def test_a_benchmark_spec_can_ask_for_the_matching_sparsity():
    from sb3_dst.benchmark.specs import AlgoSpec, resolve_hyperparams

    spec = AlgoSpec.parse("DS-SAC:critic_sparsity='match:256-256',actor_sparsity=0.5")
    params = resolve_hyperparams(spec, "HalfCheetah-v5", net_arch=None)
    params["policy_kwargs"] = dict(net_arch=dict(pi=[256, 256], qf=[1024, 1024]))
    params["critic_sparsity"] = "match:256-256"
    from sb3_dst.benchmark.specs import _resolve_matching_sparsity

    _resolve_matching_sparsity(params, "SAC", "HalfCheetah-v5")
    assert params["critic_sparsity"] == pytest.approx(sb3_dst.matching_sparsity(23, 1, [1024, 1024], [256, 256]))
    with pytest.raises(ValueError, match="ambiguous"):
        resolve_hyperparams(AlgoSpec.parse("DS-SAC:sparsity='match:256-256'"), "HalfCheetah-v5")
    with pytest.raises(ValueError, match="hidden widths"):
        resolve_hyperparams(AlgoSpec.parse("DS-SAC:critic_sparsity='match:wide'"), "HalfCheetah-v5")


def test_rigl_takes_the_dense_weight_gradient_at_evolution_steps_only(monkeypatch):
    """On the kernels the weight gradient exists at the connections only; RigL's growth needs it everywhere, and it
    must be computed then (growth would read nothing otherwise) and at no other step (it costs a dense product)."""
    model = sb3_dst.DSSAC(
        "MlpPolicy", "Pendulum-v1", seed=0, sparsity=0.8, learning_starts=50, batch_size=32,
        policy_kwargs=dict(net_arch=[64, 64]), evolution_interval=20, growth="gradient", sparse_backend="sparse",
    )  # fmt: skip
    dense_at: dict[str, set[int]] = {"actor": set(), "critic": set()}
    evolved_at: dict[str, set[int]] = {"actor": set(), "critic": set()}
    for network in dense_at:
        for layer in sparse_layers(getattr(model, network)):
            state = layer.__dict__["_sparse_state"]

            def spy(due=state.dense_grad_due, network=network):
                answer = due()
                if answer:
                    dense_at[network].add(int(model._n_updates))
                return answer

            state.dense_grad_due = spy
    evolve = type(model)._evolve_topology

    def recording_evolve(self, network):
        evolved_at[network].add(int(self._n_updates))
        return evolve(self, network)

    monkeypatch.setattr(type(model), "_evolve_topology", recording_evolve)
    model.learn(150)  # 100 gradient steps, evolution every 20
    for network in ("actor", "critic"):
        assert len(evolved_at[network]) >= 4, network
        assert dense_at[network] == evolved_at[network], network


def test_convolutions_on_the_sparse_backend_are_logged_once(caplog):
    from sb3_dst.common import sparse_backend

    sparse_backend._log_once.cache_clear()
    with caplog.at_level("WARNING", logger=sparse_backend.__name__):
        for _ in range(3):
            conv = nn.Conv2d(2, 4, 3)
            add_mask(conv, 30)
            assert set_backend(conv, "sparse") is False
    messages = [record.getMessage() for record in caplog.records if "masked path" in record.getMessage()]
    assert messages == ["sb3-dst: sparse_backend='sparse' computes fully connected layers on their connections; "
                        "Conv2d layers stay on the masked path"]  # fmt: skip
