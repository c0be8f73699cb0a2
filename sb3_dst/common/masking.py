"""Masks on ``nn.Linear`` and ``nn.Conv2d`` layers: creation as registered buffers, lookup, and masked optimizer steps.

A sparse layer is an ordinary ``nn.Linear`` (or ``nn.Conv2d``, whose mask covers every kernel entry) carrying a
float buffer ``weight_mask`` of the weight's shape.
Being a buffer, the mask is part of ``state_dict()``: it is copied to target networks with the weights,
saved and loaded by Stable-Baselines3, and moved with ``.to(device)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch as th
from torch import nn

from sb3_dst.common.fused_adam import fused_adam_step
from sb3_dst.common.topology import random_mask

MASK_NAME = "weight_mask"

__all__ = [
    "MASK_NAME",
    "add_mask",
    "apply_masks",
    "binarise_mask",
    "layer_shape",
    "linear_layers",
    "masked_step",
    "mirror_nonzero_pattern",
    "settle_absent_state",
    "sparse_layers",
    "sparse_linears",
    "weight_layers",
]

#: Layers that can be sparse: fully connected layers and 2-D convolutions (a mask entry per kernel entry).
SparseLayer = nn.Linear | nn.Conv2d
SPARSE_LAYER_TYPES = (nn.Linear, nn.Conv2d)


def add_mask(layer: SparseLayer, n_connections: int) -> None:
    """Give ``layer`` an Erdős–Rényi topology with exactly ``n_connections`` connections and mask its weight.

    The positions are drawn from torch's global random generator, so a seeded model is reproducible.
    """
    mask = random_mask(layer.weight.shape, n_connections, dtype=layer.weight.dtype).to(layer.weight.device)
    layer.register_buffer(MASK_NAME, mask)
    with th.no_grad():
        layer.weight.mul_(mask)
    if not getattr(layer, "_mask_load_hook", False):
        layer.register_load_state_dict_post_hook(_binarise_loaded_mask)
        layer.__dict__["_mask_load_hook"] = True


def binarise_mask(layer: SparseLayer) -> None:
    """Make the mask of ``layer`` 0/1 and zero the weight outside it.

    A mask entry of at least 0.5 is a connection, anything below (or NaN) is not: the nearest 0/1 mask. Masks
    the package writes are 0/1 already, so this only changes masks set from outside (``load_state_dict`` or
    ``set_parameters`` with arbitrary values, as SB3's tests do with random tensors); what is loaded then reads back
    and saves exactly as it is after this.
    """
    with th.no_grad():
        mask = getattr(layer, MASK_NAME)
        mask.copy_(mask >= 0.5)
        layer.weight.mul_(mask)


def _binarise_loaded_mask(layer: nn.Module, incompatible_keys: object) -> None:
    """Load-state-dict post-hook of a sparse layer: :func:`binarise_mask` after every load."""
    binarise_mask(layer)  # type: ignore[arg-type]


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of ``module`` in registration order, sparse or dense."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def sparse_linears(module: nn.Module) -> list[nn.Linear]:
    """The sparse ``nn.Linear`` layers of ``module`` (with a ``weight_mask`` buffer), in registration order."""
    return [m for m in module.modules() if isinstance(m, nn.Linear) and hasattr(m, MASK_NAME)]


def weight_layers(module: nn.Module) -> list[SparseLayer]:
    """The ``nn.Linear`` and ``nn.Conv2d`` layers of ``module`` in registration order, sparse or dense."""
    return [m for m in module.modules() if isinstance(m, SPARSE_LAYER_TYPES)]


def sparse_layers(module: nn.Module) -> list[SparseLayer]:
    """Every sparse layer of ``module`` (``nn.Linear`` or ``nn.Conv2d`` with a ``weight_mask`` buffer), in
    registration order: what the evolution, the masked steps and the target sparsity work on."""
    return [m for m in module.modules() if isinstance(m, SPARSE_LAYER_TYPES) and hasattr(m, MASK_NAME)]


def layer_shape(layer: SparseLayer) -> tuple[int, ...]:
    """The shape a budget is computed from: ``(n_in, n_out)`` for a linear layer, ``(c_in, c_out, k_h, k_w)`` for a
    convolution (``c_in`` per group)."""
    if isinstance(layer, nn.Conv2d):
        c_out, c_in, k_h, k_w = layer.weight.shape
        return int(c_in), int(c_out), int(k_h), int(k_w)
    return int(layer.in_features), int(layer.out_features)


def apply_masks(layers: Sequence[SparseLayer]) -> None:
    """Zero every weight outside its layer's mask."""
    if layers:
        with th.no_grad():
            th._foreach_mul_([layer.weight for layer in layers], [getattr(layer, MASK_NAME) for layer in layers])


#: Optimizers whose update of an entry is exactly zero when its gradient and first moment are zero, weight decay
#: included, so that absent weights stay exactly zero without being masked again after the step.
ZERO_PRESERVING_OPTIMIZERS: tuple[type[th.optim.Optimizer], ...] = (th.optim.Adam, th.optim.AdamW)


def masked_step(optimizer: th.optim.Optimizer, layers: Sequence[SparseLayer], fused: bool = True) -> None:
    """``optimizer.step()`` that moves existing connections only: absent weights stay exactly zero.

    The result is bit for bit that of masking the gradients of absent weights, then ``optimizer.step()``:

    - With Adam or AdamW (and ``fused``), the weights of layers that compute on their connections (the
      ``"sparse"`` backend) are stepped at those connections only
      (:func:`sb3_dst.common.sparse_backend.sparse_adam_step`), the other parameters by
      :func:`sb3_dst.common.fused_adam.fused_adam_step` in two compiled passes each, instead of about nine torch
      operations; ``optimizer.step()`` runs only for what that leaves (or if step hooks are registered).
    - Otherwise the gradients are masked in place first (they are still in the CPU cache after the backward
      pass). With Adam or AdamW, whose first moment is then zero at absent positions as well (the evolution
      zeroes it for dropped connections, :func:`settle_absent_state` for anything else), the step leaves absent
      weights exactly at zero, weight decay included, and no second pass over the weights is needed. Any other
      optimizer gets its weights masked again after the step.
    """
    from sb3_dst.common.sparse_backend import sparse_adam_step

    masks_by_weight = {id(layer.weight): getattr(layer, MASK_NAME) for layer in layers}
    # Layers on the sparse backend: Adam at their connections only (their gradient is zero elsewhere anyway).
    sparse = sparse_adam_step(optimizer, layers) if fused else []
    skip = {id(param) for param in sparse}
    stepped = sparse + (fused_adam_step(optimizer, masks_by_weight, skip) if fused else [])
    done = {id(param) for param in stepped}
    grads, masks = [], []
    for layer in layers:
        if layer.weight.grad is not None and id(layer.weight) not in done:
            grads.append(layer.weight.grad)
            masks.append(getattr(layer, MASK_NAME))
    if grads:
        th._foreach_mul_(grads, masks)
    left = any(p.grad is not None and id(p) not in done for group in optimizer.param_groups for p in group["params"])
    if left or not stepped or _has_step_hooks(optimizer):
        held = [(param, param.grad) for param in stepped]
        for param in stepped:
            param.grad = None  # torch's optimizers skip parameters without a gradient
        try:
            optimizer.step()
        finally:
            for param, grad in held:
                param.grad = grad
    if type(optimizer) not in ZERO_PRESERVING_OPTIMIZERS:
        apply_masks(layers)


def _has_step_hooks(optimizer: th.optim.Optimizer) -> bool:
    """Whether anything observes ``optimizer.step()``: step hooks, or a wrapper such as a torch LR scheduler's."""
    from torch.optim import optimizer as optimizer_module

    return bool(
        getattr(optimizer, "_optimizer_step_pre_hooks", None)
        or getattr(optimizer, "_optimizer_step_post_hooks", None)
        or getattr(optimizer_module, "_global_optimizer_pre_hooks", None)
        or getattr(optimizer_module, "_global_optimizer_post_hooks", None)
        or "step" in vars(optimizer)
    )


def settle_absent_state(optimizer: th.optim.Optimizer, layers: Sequence[SparseLayer]) -> None:
    """Put the optimizer state of absent connections where :func:`masked_step` needs it, and mask the weights.

    First moments (``exp_avg``) become zero at absent positions, which keeps absent weights at zero through
    Adam steps. Second moments (``exp_avg_sq``, ``max_exp_avg_sq``) become one there: they do not matter for an
    entry whose gradient and first moment are zero, and an exact zero (or a value decayed towards it) would
    send Adam's square root down a path about 40 times slower per element on common CPUs. A connection grown
    later gets zero moments from the evolution (Algorithm 2's reset), as before.
    """
    with th.no_grad():
        for layer in layers:
            state = optimizer.state.get(layer.weight)
            if state:
                mask = getattr(layer, MASK_NAME)
                if "exp_avg" in state:
                    state["exp_avg"].mul_(mask)
                for key in ("exp_avg_sq", "max_exp_avg_sq"):
                    if key in state:
                        state[key].mul_(mask).add_(1.0 - mask)  # v·M + (1 − M), exact where M = 1
        apply_masks(layers)


def _refresh_mask(layer: nn.Module, prefix: str, keep_vars: bool) -> None:
    """State-dict pre-hook: set the layer's mask to its weight's non-zero pattern."""
    with th.no_grad():
        getattr(layer, MASK_NAME).copy_(layer.weight != 0)


def mirror_nonzero_pattern(layer: SparseLayer) -> None:
    """Make the mask of ``layer`` report the layer's non-zero pattern whenever its state is read.

    For target layers, whose sparsity is kept by pruning (Algorithm 3) rather than by their mask: the mask is
    not used in any computation, so instead of updating it at every target update it is refreshed when
    ``state_dict()`` runs (``save``, ``get_parameters``, copies), and saved files hold the exact pattern.
    Registering twice has no further effect.
    """
    if not getattr(layer, "_mask_mirrors_weight", False):
        layer.register_state_dict_pre_hook(_refresh_mask)
        setattr(layer, "_mask_mirrors_weight", True)  # noqa: B010 (nn.Module's __setattr__ typing)
