"""Property tests of the pure-tensor topology engine (no SB3 involved)."""

from __future__ import annotations

import math

import pytest
import torch as th
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_dst.common._kernels import maintain_kernel
from sb3_dst.common.topology import (
    TargetSparsity,
    drop_and_grow,
    er_connection_count,
    er_lambdas_for_sparsity,
    prune_to_k,
    random_mask,
    reset_optimizer_state,
)

settings.register_profile("sb3_dst", deadline=None, max_examples=60)
settings.load_profile("sb3_dst")

shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))


@st.composite
def sparse_layers(draw, min_connections: int = 1):
    """A weight matrix with a random mask of random density; absent weights are exactly zero."""
    n_in, n_out = draw(shapes)
    numel = n_in * n_out
    k = draw(st.integers(min(min_connections, numel), numel))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = th.Generator().manual_seed(seed)
    mask = random_mask((n_out, n_in), k, generator=gen)
    weight = th.randn(n_out, n_in, generator=gen)
    if draw(st.booleans()):  # some exact zeros and ties among existing connections
        weight = th.round(weight * 2) / 2
    return weight * mask, mask, gen


def test_er_connection_count_matches_paper_halfcheetah():
    # λ(n_in + n_out) for the actor's first and second layer, HalfCheetah (obs 17), λ = (7, 64)
    assert er_connection_count(17, 256, 7) == 1911
    assert er_connection_count(256, 256, 64) == 32768


def test_er_connection_count_rejects_overfull_layer_and_names_it():
    with pytest.raises(ValueError, match=r"actor layer 0 \(3x256\).*er_lambda <= 2\.9"):
        er_connection_count(3, 256, 7, layer="actor layer 0")
    with pytest.raises(ValueError, match="positive"):
        er_connection_count(3, 256, 0.0)


@given(shapes, st.integers(0, 2**31 - 1))
def test_random_mask_has_exact_budget(shape, seed):
    numel = shape[0] * shape[1]
    k = 1 + seed % numel
    mask = random_mask(shape, k, generator=th.Generator().manual_seed(seed))
    assert mask.shape == shape
    assert int(mask.sum()) == k
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_full_mask_draws_no_random_numbers():
    th.manual_seed(3)
    expected = th.rand(1)
    th.manual_seed(3)
    assert int(random_mask((4, 5), 20).sum()) == 20
    assert th.equal(th.rand(1), expected)


@given(st.lists(shapes, min_size=1, max_size=4), st.floats(0.0, 0.99))
def test_lambdas_for_sparsity_meet_the_budget(layer_shapes, sparsity):
    lambdas = er_lambdas_for_sparsity(layer_shapes, sparsity)
    counts = [min(math.floor(lam * (a + b) + 0.5), a * b) for lam, (a, b) in zip(lambdas, layer_shapes, strict=True)]
    total = sum(a * b for a, b in layer_shapes)
    for lam, (a, b) in zip(lambdas, layer_shapes, strict=True):
        assert lam * (a + b) <= a * b + 1e-6  # never denser than full
    # rounding moves each layer by at most half a connection
    assert abs(sum(counts) - (1 - sparsity) * total) <= len(layer_shapes) / 2 + 1e-6


def test_lambdas_for_sparsity_rejects_bad_values():
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="sparsity"):
            er_lambdas_for_sparsity([(10, 10)], bad)


@given(sparse_layers(min_connections=2), st.floats(0.01, 0.99))
def test_drop_and_grow_keeps_count_and_zero_initialises(layer, eta):
    weight, mask, gen = layer
    before_w, before_m = weight.clone(), mask.clone()
    k = int(mask.sum())
    dropped, grown, changed = drop_and_grow(weight, mask, eta, generator=gen)
    c = math.floor(eta * k + 0.5)
    assert int(mask.sum()) == k  # connection count never changes
    assert int(dropped.sum()) == c and int(grown.sum()) == c
    assert bool((before_m[dropped] == 1).all())  # only existing connections are dropped
    assert bool((weight[mask == 0] == 0).all())  # X <- X ⊙ M
    assert bool((weight[grown] == 0).all())  # new connections start at zero
    untouched = (mask == 1) & ~grown
    assert th.equal(weight[untouched], before_w[untouched])  # surviving weights unchanged
    numel = mask.numel()
    if numel - k >= c:  # enough room: growth only where nothing was
        assert bool((before_m[grown] == 0).all())
        assert int(changed.sum()) == 2 * c


@given(sparse_layers(min_connections=2), st.floats(0.01, 0.99))
def test_drop_removes_the_connections_closest_to_zero_on_each_side(layer, eta):
    weight, mask, gen = layer
    present = mask == 1
    values = weight.clone()
    dropped, _, _ = drop_and_grow(weight, mask, eta, generator=gen)
    kept = present & ~dropped
    pos_dropped = values[dropped & (values >= 0)]
    neg_dropped = values[dropped & (values < 0)]
    pos_kept = values[kept & (values >= 0)]
    neg_kept = values[kept & (values < 0)]
    if pos_dropped.numel() and pos_kept.numel():
        assert pos_dropped.max() <= pos_kept.min()
    if neg_dropped.numel() and neg_kept.numel():
        assert neg_dropped.min() >= neg_kept.max()
    # the split is c/2 per sign unless one sign runs out
    c = int(dropped.sum())
    n_pos = int((present & (values >= 0)).sum())
    n_neg = int((present & (values < 0)).sum())
    expected_pos = min((c + 1) // 2, n_pos)
    expected_pos = max(expected_pos, c - n_neg)
    assert pos_dropped.numel() == expected_pos


def test_drop_and_grow_rejects_bad_fraction():
    w, m = th.ones(3, 3), th.ones(3, 3)
    for bad in (1.0, -0.5, 2.0):
        with pytest.raises(ValueError, match="drop_fraction"):
            drop_and_grow(w, m, bad)


@given(sparse_layers(), st.integers(0, 1600))
def test_prune_to_k_keeps_the_k_largest_magnitudes(layer, k_raw):
    weight, _, _ = layer
    nnz = int(th.count_nonzero(weight))
    k = k_raw % (weight.numel() + 1)
    before = weight.clone()
    changed = prune_to_k(weight, k)
    after_nnz = int(th.count_nonzero(weight))
    assert after_nnz <= k or (not changed and nnz <= k)
    assert changed == (nnz > k)
    if changed:
        kept = weight != 0
        assert th.equal(weight[kept], before[kept])  # survivors keep their values
        if (~kept).any() and kept.any():
            assert before.abs()[~kept].max() <= before.abs()[kept].min()
    else:
        assert th.equal(weight, before)


def test_reset_optimizer_state_zeroes_only_the_given_positions():
    param = th.nn.Parameter(th.randn(4, 4))
    opt = th.optim.Adam([param], lr=0.1)
    param.grad = th.randn(4, 4)
    opt.step()
    positions = th.zeros(4, 4, dtype=th.bool)
    positions[0, :2] = True
    before = {k: v.clone() for k, v in opt.state[param].items()}
    reset_optimizer_state(opt, param, positions)
    for key in ("exp_avg", "exp_avg_sq"):
        assert bool((opt.state[param][key][positions] == 0).all())
        assert th.equal(opt.state[param][key][~positions], before[key][~positions])
    assert th.equal(opt.state[param]["step"], before["step"])


@given(
    st.tuples(st.integers(2, 30), st.integers(2, 30)),
    st.floats(0.05, 0.95),
    st.floats(0.05, 0.5),
    st.sampled_from([0.005, 0.1, 1.0]),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["kernel", "numpy", "full"]),
)
def test_incremental_target_sparsity_equals_full_pruning(shape, density, eta, tau, seed, path):
    """TargetSparsity (contested positions only) must give exactly the targets of prune_to_k on the whole layer.

    ``path``: the compiled kernel, the NumPy code, or the whole-layer pruning used on non-CPU devices.
    """
    gen = th.Generator().manual_seed(seed)
    numel = shape[0] * shape[1]
    k = max(2, round(density * numel))
    mask = random_mask(shape, min(k, numel), generator=gen)
    k = int(mask.sum())
    online = th.randn(shape, generator=gen) * mask
    target = online.clone()
    reference = online.clone()
    fast = TargetSparsity(target, mask, k)
    fast.use_kernel = path == "kernel"
    fast.incremental = path != "full"
    for _ in range(4):  # evolutions
        _, _, changed = drop_and_grow(online, mask, eta, generator=gen)
        fast.mark_changed(changed)
        for _ in range(6):  # optimizer steps and target updates between evolutions
            online += 0.3 * th.randn(shape, generator=gen) * mask
            for t in (target, reference):
                t.mul_(1 - tau).add_(tau * online)
            fast.maintain()
            prune_to_k(reference, k)
            assert int(th.count_nonzero(target)) <= k
            assert th.equal(target, reference)


def test_target_sparsity_falls_back_when_an_uncontested_weight_is_smallest():
    mask = th.tensor([[1.0, 1.0, 0.0, 0.0]])
    target = th.tensor([[1e-6, 1.0, 0.0, 0.0]])  # a tiny weight outside the contested positions
    fast = TargetSparsity(target, mask, 2)
    assert fast.in_sync
    new_mask = th.tensor([[1.0, 0.0, 1.0, 0.0]])
    mask.copy_(new_mask)
    fast.mark_changed(th.tensor([[False, True, True, False]]))
    target[0, 2] = 0.5  # the grown connection got a large weight through a target update
    assert fast.maintain()
    assert th.equal(target, th.tensor([[0.0, 1.0, 0.5, 0.0]]))  # the tiny uncontested one is pruned


def test_target_sparsity_recovers_when_weights_appear_outside_the_online_mask():
    """E.g. online weights edited by hand: the target gets non-zeros the bookkeeping did not expect."""
    gen = th.Generator().manual_seed(1)
    mask = random_mask((8, 8), 20, generator=gen)
    target = th.randn(8, 8, generator=gen) * mask
    fast = TargetSparsity(target, mask, 20)
    fast.mark_changed(th.zeros(8, 8, dtype=th.bool).index_fill_(0, th.tensor([0]), True))
    target += 0.1 * th.randn(8, 8, generator=gen)  # non-zeros everywhere, far more than contested
    reference = target.clone()
    assert fast.maintain()
    prune_to_k(reference, 20)
    assert th.equal(target, reference)


def test_target_sparsity_when_the_exact_recount_leaves_nothing_to_prune():
    """An uncontested weight that lands on exactly zero makes the quick count too high; the recount must win."""
    mask = th.tensor([[1.0, 1.0, 1.0, 0.0]])
    target = th.tensor([[0.5, 0.6, 0.7, 0.0]])
    fast = TargetSparsity(target, mask, 3)
    mask.copy_(th.tensor([[1.0, 1.0, 0.0, 1.0]]))  # evolution: position 2 dropped, position 3 grown
    fast.mark_changed(th.tensor([[False, False, True, True]]))
    target[0, 0] = 0.0  # an uncontested weight becomes exactly zero
    target[0, 3] = 0.01  # the grown connection appears in the target
    reference = target.clone()
    assert not fast.maintain()
    prune_to_k(reference, 3)
    assert th.equal(target, reference)


def test_the_compiled_kernel_is_available():
    """Numba is a dependency: without the kernel the per-step overhead roughly doubles (benchmarks/overhead.py)."""
    assert maintain_kernel() is not None


@pytest.mark.parametrize("use_kernel", [True, False])
def test_target_sparsity_with_tied_magnitudes_keeps_exactly_k(use_kernel):
    """Ties at the pruning bound: exactly k survive, and the surviving magnitudes are those of prune_to_k."""
    mask = th.ones(4, 8)
    mask[1, :3] = 0.0  # three connections dropped by an evolution, still non-zero in the target
    target = th.full((4, 8), 0.5)
    target[0] = 0.25  # eight equal smallest weights: three of them must go
    fast = TargetSparsity(target, mask, 29)
    fast.use_kernel = use_kernel
    fast.mark_changed(th.zeros(4, 8, dtype=th.bool).index_fill_(0, th.tensor([0]), True))  # contested: a superset
    reference = target.clone()
    assert fast.maintain()
    prune_to_k(reference, 29)
    assert int(th.count_nonzero(target)) == 29
    assert th.equal(target.abs().flatten().sort().values, reference.abs().flatten().sort().values)
