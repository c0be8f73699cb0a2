"""Adam and AdamW steps of masked networks in two compiled passes, bit for bit the same as torch's own step.

torch's single-tensor Adam costs, for every parameter, about nine elementwise operations (weight decay,
``lerp_``, ``mul_``, ``addcmul_``, ``sqrt``, division, ``add_``, ``addcdiv_``; plus masking the gradient of a
sparse weight), each with its own dispatch, two of them allocating a tensor, and then the fixed cost of
``optimizer.step()`` itself. For the paper's small networks that per-call cost is most of the optimizer's time.
:func:`fused_adam_step` does the same arithmetic in two compiled passes per parameter around torch's own
``sqrt`` (whose vectorised form is not the correctly rounded square root, so it is kept):

1. ``g = grad·M`` for a sparse weight with mask M (``grad`` otherwise), ``+ λ·θ`` for Adam's L2 weight decay
   (or ``θ ← θ(1 − lr·λ)`` first for AdamW), ``m ← lerp(m, g, 1 − β1)``, ``v ← β2·v + (1 − β2)·g²``;
2. ``θ ← θ − (lr / (1 − β1^t))·m / (sqrt(v) / sqrt(1 − β2^t) + ε)``.

Every operation is rounded as torch's CPU kernels round it (fused multiply-adds where they use them), so the
parameters and both moments come out bit for bit as ``masking the gradients + optimizer.step()``. That is
checked once per process on a small problem (:func:`fused_adam_matches_torch`) before the fused step is ever
used: with a torch version or CPU whose kernels round differently, torch's own step is used instead.

Numba is imported lazily, as for :mod:`sb3_dst.common._kernels`; without it torch's step is used.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import numpy as np
import torch as th
from torch import nn

__all__ = ["fused_adam_matches_torch", "fused_adam_step"]

_kernels: Any = None


def _compile() -> Any:
    import numba  # lazy, as in sb3_dst.common._kernels
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def fma32(typingctx, a, b, c):  # type: ignore[no-untyped-def]
        """a·b + c with a single rounding (LLVM's ``fma``), as torch's vectorised CPU kernels compute it."""
        signature = types.float32(types.float32, types.float32, types.float32)

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            return builder.fma(*args)

        return signature, codegen

    # error_model="numpy": no Python ZeroDivisionError check, which would keep the loops from being vectorised.
    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def moments_loop(param, grad, mask, exp_avg, exp_avg_sq, decay, weight_decay, lerp_weight, beta2, one_minus_beta2):  # type: ignore[no-untyped-def]
        small = abs(lerp_weight) < 0.5  # torch's lerp: start + w·(end − start), or end + (w − 1)·(end − start)
        coefficient = lerp_weight if small else lerp_weight - numba.float32(1.0)
        for i in range(param.size):
            p = param[i] * decay  # AdamW's decoupled decay (decay = 1 otherwise: exact)
            param[i] = p
            g = grad[i]
            if mask is not None:  # resolved at compile time
                g = g * mask[i]
            g = fma32(p, weight_decay, g) if weight_decay != 0 else g  # grad.add(param, alpha=weight_decay)
            m = exp_avg[i]
            exp_avg[i] = fma32(coefficient, g - m, m if small else g)  # exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq[i] = fma32(one_minus_beta2 * g, g, exp_avg_sq[i] * beta2)  # .mul_(b2).addcmul_(g, g, 1 - b2)

    @numba.njit(cache=True, nogil=True)
    def moments(param, grad, mask, exp_avg, exp_avg_sq, *scalars):  # type: ignore[no-untyped-def]
        """Pass 1: (masked) gradient, weight decay, first and second moments.

        Arrays are C-contiguous float32 of the parameter's shape (``reshape(-1)`` is a view); ``mask`` may be None.
        """
        flat = param.reshape(-1), grad.reshape(-1)
        if mask is None:
            moments_loop(*flat, None, exp_avg.reshape(-1), exp_avg_sq.reshape(-1), *scalars)
        else:
            moments_loop(*flat, mask.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1), *scalars)

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def update(param, exp_avg, sqrt_exp_avg_sq, bias_correction2_sqrt, eps, negative_step_size):  # type: ignore[no-untyped-def]
        """Pass 2: param.addcdiv_(exp_avg, sqrt(v) / sqrt(1 − β2^t) + ε, value=−step_size)."""
        param, exp_avg, root = param.reshape(-1), exp_avg.reshape(-1), sqrt_exp_avg_sq.reshape(-1)
        for i in range(param.size):
            param[i] = param[i] + (negative_step_size * exp_avg[i]) / (root[i] / bias_correction2_sqrt + eps)

    return moments, update


def _load_kernels() -> Any:
    global _kernels
    if _kernels is None:
        try:
            _kernels = _compile()
        except ImportError:
            _kernels = False
    return _kernels or None


def _settings(optimizer: th.optim.Optimizer, group: dict[str, Any]) -> tuple[float, ...] | None:
    """(lr, β1, β2, ε, weight decay, decoupled) of a group the fused step reproduces exactly, else None.

    The fused step is torch's single-tensor implementation: not AMSGrad, maximize, capturable, differentiable,
    ``foreach=True`` or ``fused=True`` (whose arithmetic differs), and plain float hyperparameters.
    """
    if any(group.get(key) for key in ("amsgrad", "maximize", "capturable", "differentiable", "foreach", "fused")):
        return None
    lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    values = (lr, beta1, beta2, eps, weight_decay)
    if not all(isinstance(value, float | int) and not isinstance(value, bool) for value in values):
        return None  # tensor hyperparameters
    decoupled = bool(group.get("decoupled_weight_decay", isinstance(optimizer, th.optim.AdamW)))
    return (*(float(value) for value in values), float(decoupled))


def _plain(tensor: th.Tensor, like: th.Tensor) -> bool:
    return tensor.dtype == th.float32 and tensor.is_contiguous() and tensor.shape == like.shape


class _Entry:
    """A parameter's cached NumPy views of its state, valid while its state holds the same tensors."""

    __slots__ = ("exp_avg", "exp_avg_sq", "mask", "param", "state", "step", "views")

    def __init__(self, param: th.Tensor, state: dict[str, Any], mask: th.Tensor | None):
        self.param, self.state, self.mask = param, state, mask
        self.step, self.exp_avg, self.exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
        self.views = (
            param.detach().numpy(),
            None if mask is None else mask.numpy(),
            self.exp_avg.numpy(),
            self.exp_avg_sq.numpy(),
            self.step.numpy(),
        )

    def valid(self, state: dict[str, Any], mask: th.Tensor | None) -> bool:
        return (
            self.state is state
            and self.mask is mask
            and state.get("step") is self.step
            and state.get("exp_avg") is self.exp_avg
            and state.get("exp_avg_sq") is self.exp_avg_sq
        )


def init_adam_state(optimizer: th.optim.Optimizer, param: th.Tensor) -> dict[str, Any]:
    """The optimizer state of ``param``, initialised as torch's Adam initialises it if it is empty."""
    state = optimizer.state[param]
    if not state:
        scalar_dtype = th.float64 if th.get_default_dtype() == th.float64 else th.float32
        state["step"] = th.tensor(0.0, dtype=scalar_dtype, device="cpu")
        state["exp_avg"] = th.zeros_like(param, memory_format=th.preserve_format)
        state["exp_avg_sq"] = th.zeros_like(param, memory_format=th.preserve_format)
    return state  # type: ignore[no-any-return]


def _entry(
    optimizer: th.optim.Optimizer, entries: dict[int, _Entry], param: th.Tensor, mask: th.Tensor | None
) -> _Entry | None:
    """The cached entry of ``param`` (state initialised as torch initialises it), or None if not torch's layout."""
    state = init_adam_state(optimizer, param)
    entry = entries.get(id(param))
    if entry is not None and entry.param is param and entry.valid(state, mask):
        return entry
    step, exp_avg, exp_avg_sq = state.get("step"), state.get("exp_avg"), state.get("exp_avg_sq")
    if not (
        isinstance(step, th.Tensor)
        and step.dim() == 0
        and step.is_cpu
        and isinstance(exp_avg, th.Tensor)
        and isinstance(exp_avg_sq, th.Tensor)
        and _plain(exp_avg, param)
        and _plain(exp_avg_sq, param)
        and (mask is None or (_plain(mask, param) and mask.is_cpu))
    ):
        entries.pop(id(param), None)
        return None
    entry = entries[id(param)] = _Entry(param, state, mask)
    return entry


#: Cached entries per optimizer (weakly keyed: they go with the optimizer).
_entries: weakref.WeakKeyDictionary[th.optim.Optimizer, dict[int, _Entry]] = weakref.WeakKeyDictionary()


def fused_adam_step(
    optimizer: th.optim.Optimizer, masks: dict[int, th.Tensor], skip: set[int] | frozenset[int] = frozenset()
) -> list[th.Tensor]:
    """Step every parameter of ``optimizer`` that the fused step reproduces exactly, as ``optimizer`` would.

    ``masks`` maps ``id(weight)`` to the mask of each sparse weight: its gradient is used masked (the gradient
    tensor is not changed). Only ``torch.optim.Adam``/``AdamW`` groups and CPU float32 parameters are fused,
    and only if :func:`fused_adam_matches_torch`; everything else is left to the caller.

    :param skip: ids of parameters already stepped by the caller.
    :return: the parameters that were stepped (the caller must keep ``optimizer.step()`` from stepping them).
    """
    if type(optimizer) not in (th.optim.Adam, th.optim.AdamW) or not fused_adam_matches_torch():
        return []
    return _fused_step(optimizer, masks, skip)


def _fused_step(
    optimizer: th.optim.Optimizer, masks: dict[int, th.Tensor], skip: set[int] | frozenset[int] = frozenset()
) -> list[th.Tensor]:
    moments, update = _load_kernels()
    f32 = np.float32
    stepped: list[th.Tensor] = []
    entries = _entries.setdefault(optimizer, {})
    for group in optimizer.param_groups:
        settings = _settings(optimizer, group)
        if settings is None:
            continue
        lr, beta1, beta2, eps, weight_decay, decoupled = settings
        decay, l2 = (f32(1 - lr * weight_decay), f32(0.0)) if decoupled else (f32(1.0), f32(weight_decay))
        lerp_weight, beta2_32, one_minus_beta2 = f32(1 - beta1), f32(beta2), f32(1 - beta2)
        for param in group["params"]:
            grad = param.grad
            if id(param) in skip:
                continue
            if grad is None or grad.is_sparse or not param.is_cpu or not _plain(grad, param):
                continue
            if param.dtype != th.float32 or not param.is_contiguous():
                continue
            entry = _entry(optimizer, entries, param, masks.get(id(param)))
            if entry is None:
                continue
            param_view, mask_view, exp_avg_view, exp_avg_sq_view, step_view = entry.views
            step_view += 1  # torch's `step_t += 1` on the same float tensor
            step = float(step_view)
            bias_correction1 = 1 - beta1**step
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            moments(
                param_view, grad.numpy(), mask_view, exp_avg_view, exp_avg_sq_view, decay, l2, lerp_weight,
                beta2_32, one_minus_beta2,
            )  # fmt: skip
            root = entry.exp_avg_sq.sqrt()  # torch's own square root, as in its Adam
            step_size = -lr / bias_correction1
            update(param_view, exp_avg_view, root.numpy(), f32(bias_correction2_sqrt), f32(eps), f32(step_size))
            stepped.append(param)
    return stepped


@functools.cache
def fused_adam_matches_torch() -> bool:
    """Whether the fused step gives exactly torch's Adam and AdamW results here (checked once per process).

    A few steps on a small masked weight and a bias whose sizes are not multiples of the vector width (torch's
    kernels treat the remainder with scalar code), with L2 and decoupled weight decay and both branches of
    ``lerp``.
    """
    if _load_kernels() is None:
        return False
    generator = th.Generator().manual_seed(0)
    for optimizer_class, betas, weight_decay in (
        (th.optim.Adam, (0.9, 0.999), 0.0),
        (th.optim.Adam, (0.9, 0.999), 0.01),
        (th.optim.AdamW, (0.3, 0.99), 0.01),
    ):
        mask = (th.rand(37, 29, generator=generator) < 0.5).float()
        initial = [th.randn(37, 29, generator=generator) * mask, th.randn(37, generator=generator)]
        models = [[nn.Parameter(t.clone()) for t in initial] for _ in range(2)]
        optimizers = [optimizer_class(params, lr=0.01, betas=betas, weight_decay=weight_decay) for params in models]
        for _ in range(4):
            grads = [th.randn(37, 29, generator=generator), th.randn(37, generator=generator)]
            for params, masked in zip(models, (False, True), strict=True):
                params[0].grad, params[1].grad = (grads[0] * mask if masked else grads[0]), grads[1]
            if _fused_step(optimizers[0], {id(models[0][0]): mask}) != models[0]:
                return False
            optimizers[1].step()
            for fused_param, reference in zip(*models, strict=True):
                states = optimizers[0].state[fused_param], optimizers[1].state[reference]
                if not th.equal(fused_param, reference) or any(
                    not th.equal(states[0][key], states[1][key]) for key in ("step", "exp_avg", "exp_avg_sq")
                ):
                    return False
    return True
