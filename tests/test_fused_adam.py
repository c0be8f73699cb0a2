"""The fused Adam/AdamW step must be torch's step on masked gradients, to the last bit, or not be used at all."""

from __future__ import annotations

import copy

import pytest
import torch as th

from sb3_dst.common import fused_adam
from sb3_dst.common.fused_adam import fused_adam_matches_torch, fused_adam_step
from sb3_dst.common.masking import MASK_NAME, add_mask, masked_step


def _pair(shape: tuple[int, int], n_connections: int, seed: int = 0) -> tuple[th.nn.Sequential, th.nn.Sequential]:
    """A sparse layer followed by a dense one, and an identical copy."""
    th.manual_seed(seed)
    model = th.nn.Sequential(th.nn.Linear(shape[1], shape[0]), th.nn.Linear(shape[0], 3))
    add_mask(model[0], n_connections)
    return model, copy.deepcopy(model)


def _set_grads(models: list[th.nn.Module], generator: th.Generator) -> None:
    params = list(models[0].parameters())
    scales = [10 ** th.empty(1).uniform_(-4, 1, generator=generator) for _ in params]
    grads = [th.randn(p.shape, generator=generator) * scale for p, scale in zip(params, scales, strict=True)]
    for model in models:
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g.clone()


def _assert_identical(a: th.nn.Module, opt_a: th.optim.Optimizer, b: th.nn.Module, opt_b: th.optim.Optimizer) -> None:
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert th.equal(p, q)
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert th.equal(opt_a.state[p][key], opt_b.state[q][key]), key


def test_the_fused_step_reproduces_torch_here():
    """On this machine and torch the fused step is in use (the suite below would not test it otherwise)."""
    assert fused_adam_matches_torch()


@pytest.mark.parametrize("optimizer_class", [th.optim.Adam, th.optim.AdamW])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.3, 0.99)])  # both branches of torch's lerp
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize(("shape", "n_connections"), [((64, 48), 1000), ((29, 37), 400), ((5, 3), 15)])
def test_masked_step_is_torch_on_masked_gradients_bit_for_bit(
    optimizer_class, betas, weight_decay, shape, n_connections
):
    fused, reference = _pair(shape, n_connections)
    kwargs = dict(lr=3e-3, betas=betas, weight_decay=weight_decay)
    opt_f, opt_r = optimizer_class(fused.parameters(), **kwargs), optimizer_class(reference.parameters(), **kwargs)
    generator = th.Generator().manual_seed(1)
    for step in range(25):
        _set_grads([fused, reference], generator)
        if step == 10:  # SB3 changes the learning rate between train() calls
            for opt in (opt_f, opt_r):
                opt.param_groups[0]["lr"] = 1e-3
        masked_step(opt_f, [fused[0]])
        reference[0].weight.grad.mul_(reference[0].weight_mask)
        opt_r.step()
        _assert_identical(fused, opt_f, reference, opt_r)
    assert int((fused[0].weight != 0).sum()) <= n_connections


def test_every_parameter_is_fused_and_gradients_are_left_alone():
    model, _ = _pair((16, 8), 40)
    opt = th.optim.Adam(model.parameters())
    _set_grads([model], th.Generator().manual_seed(0))
    grads = [p.grad.clone() for p in model.parameters()]
    stepped = fused_adam_step(opt, {id(model[0].weight): model[0].weight_mask})
    assert [id(p) for p in stepped] == [id(p) for p in model.parameters()]
    assert all(th.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))


@pytest.mark.parametrize(
    "kwargs", [dict(amsgrad=True), dict(maximize=True), dict(foreach=True), dict(lr=th.tensor(0.01))]
)
def test_settings_it_does_not_reproduce_go_to_torch(kwargs):
    model, reference = _pair((16, 8), 40)
    opt, opt_r = th.optim.Adam(model.parameters(), **kwargs), th.optim.Adam(reference.parameters(), **kwargs)
    assert fused_adam_step(opt, {}) == []  # nothing fused, nothing stepped
    generator = th.Generator().manual_seed(2)
    for _ in range(5):
        _set_grads([model, reference], generator)
        masked_step(opt, [model[0]])
        reference[0].weight.grad.mul_(reference[0].weight_mask)
        opt_r.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert th.equal(p, q)


def test_other_optimizers_and_float64_are_not_fused():
    model, _ = _pair((16, 8), 40)
    _set_grads([model], th.Generator().manual_seed(0))
    assert fused_adam_step(th.optim.RMSprop(model.parameters()), {}) == []
    double = th.nn.Linear(4, 4).double()
    double.weight.grad, double.bias.grad = th.ones(4, 4, dtype=th.float64), th.ones(4, dtype=th.float64)
    assert fused_adam_step(th.optim.Adam(double.parameters()), {}) == []


def test_step_hooks_still_run():
    model, _ = _pair((16, 8), 40)
    opt = th.optim.Adam(model.parameters())
    calls = []
    opt.register_step_post_hook(lambda *args: calls.append(1))
    for _ in range(3):
        _set_grads([model], th.Generator().manual_seed(0))
        masked_step(opt, [model[0]])
    assert len(calls) == 3
    assert int(opt.state[model[0].weight]["step"]) == 3  # and each parameter was stepped once per call


def test_a_loaded_optimizer_state_is_used_not_a_stale_copy():
    """load_state_dict replaces the state tensors; the cached views must follow them."""
    model, reference = _pair((16, 8), 40)
    opt, opt_r = th.optim.Adam(model.parameters()), th.optim.Adam(reference.parameters())
    generator = th.Generator().manual_seed(3)
    for _ in range(3):
        _set_grads([model, reference], generator)
        masked_step(opt, [model[0]])
        masked_step(opt_r, [reference[0]], fused=False)
    saved_state, saved_weights = copy.deepcopy(opt.state_dict()), copy.deepcopy(model.state_dict())
    for _ in range(3):  # move on, then go back to the saved point
        _set_grads([model], generator)
        masked_step(opt, [model[0]])
    model.load_state_dict(saved_weights)
    opt.load_state_dict(saved_state)
    for _ in range(3):
        _set_grads([model, reference], generator)
        masked_step(opt, [model[0]])
        masked_step(opt_r, [reference[0]], fused=False)
    _assert_identical(model, opt, reference, opt_r)


def test_without_numba_torch_steps(monkeypatch):
    monkeypatch.setattr(fused_adam, "_kernels", False)
    monkeypatch.setattr(fused_adam, "fused_adam_matches_torch", fused_adam.fused_adam_matches_torch.__wrapped__)
    model, reference = _pair((16, 8), 40)
    opt, opt_r = th.optim.Adam(model.parameters()), th.optim.Adam(reference.parameters())
    _set_grads([model, reference], th.Generator().manual_seed(4))
    assert fused_adam_step(opt, {}) == []
    masked_step(opt, [model[0]])
    reference[0].weight.grad.mul_(getattr(reference[0], MASK_NAME))
    opt_r.step()
    _assert_identical(model, opt, reference, opt_r)


def test_a_group_it_does_not_fuse_is_stepped_by_torch():
    model, reference = _pair((16, 8), 40)
    groups = [
        dict(params=list(m[0].parameters())) for m in (model, reference)
    ]  # fused (sparse layer), then torch's AMSGrad for the dense layer
    opts = [
        th.optim.Adam([group, dict(params=list(m[1].parameters()), amsgrad=True)])
        for group, m in zip(groups, (model, reference), strict=True)
    ]
    generator = th.Generator().manual_seed(5)
    for _ in range(5):
        _set_grads([model, reference], generator)
        masked_step(opts[0], [model[0]])
        masked_step(opts[1], [reference[0]], fused=False)
    _assert_identical(model, opts[0], reference, opts[1])


@pytest.mark.parametrize("algo", ["DSTD3", "DSSAC"])
def test_training_with_the_fused_step_is_bit_for_bit_training_without_it(algo, small_kwargs):
    """Whole runs, evolutions and target pruning included: the fused step changes the speed, nothing else."""
    import sb3_dst

    runs = []
    for fused in (True, False):
        model = getattr(sb3_dst, algo)(
            "MlpPolicy", "Pendulum-v1", seed=3, evolution_interval=40, sparse_backend="masked", **small_kwargs
        )  # the fused step serves the masked path
        model.fused_adam = fused
        model.learn(250)
        runs.append(model)
    assert runs[0].num_evolutions > 0
    a, b = (run.policy.state_dict() for run in runs)
    assert all(th.equal(a[k], b[k]) for k in a)
    for name in ("actor", "critic"):
        opts = [getattr(run, name).optimizer for run in runs]
        assert opts[0] in fused_adam._entries and opts[1] not in fused_adam._entries  # the two paths were taken
        for p, q in zip(*(o.param_groups[0]["params"] for o in opts), strict=True):
            for key in ("step", "exp_avg", "exp_avg_sq"):
                assert th.equal(opts[0].state[p][key], opts[1].state[q][key])
