"""Masks on ``nn.Linear`` layers: creation as registered buffers, lookup, and masked optimizer steps.

A sparse layer is an ordinary ``nn.Linear`` carrying a float buffer ``weight_mask`` of the weight's shape.
Being a buffer, the mask is part of ``state_dict()``: it is copied to target networks with the weights,
saved and loaded by Stable-Baselines3, and moved with ``.to(device)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch as th
from torch import nn

from sb3_dst.common.topology import random_mask

MASK_NAME = "weight_mask"

__all__ = [
    "MASK_NAME",
    "add_mask",
    "apply_masks",
    "linear_layers",
    "masked_step",
    "mirror_nonzero_pattern",
    "sparse_linears",
]


def add_mask(layer: nn.Linear, n_connections: int) -> None:
    """Give ``layer`` an Erdős–Rényi topology with exactly ``n_connections`` connections and mask its weight.

    The positions are drawn from torch's global random generator, so a seeded model is reproducible.
    """
    mask = random_mask(layer.weight.shape, n_connections, dtype=layer.weight.dtype).to(layer.weight.device)
    layer.register_buffer(MASK_NAME, mask)
    with th.no_grad():
        layer.weight.mul_(mask)


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of ``module`` in registration order, sparse or dense."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def sparse_linears(module: nn.Module) -> list[nn.Linear]:
    """The sparse layers of ``module`` (``nn.Linear`` with a ``weight_mask`` buffer), in registration order."""
    return [m for m in module.modules() if isinstance(m, nn.Linear) and hasattr(m, MASK_NAME)]


def apply_masks(layers: Sequence[nn.Linear]) -> None:
    """Zero every weight outside its layer's mask."""
    if layers:
        with th.no_grad():
            th._foreach_mul_([layer.weight for layer in layers], [getattr(layer, MASK_NAME) for layer in layers])


def masked_step(optimizer: th.optim.Optimizer, layers: Sequence[nn.Linear]) -> None:
    """``optimizer.step()`` that moves existing connections only: absent weights are zeroed after it.

    Gradients of absent weights are *not* masked. For element-wise optimizers (Adam, AdamW, RMSprop, SGD with
    momentum) the state of one entry never influences another, so the existing connections follow exactly the
    trajectory they would with masked gradients, and absent weights are exactly zero after every step, weight
    decay included. What absent entries accumulate in the optimizer state is discarded when a connection
    appears: the evolution resets the state of every dropped and grown connection, so a grown weight starts at
    zero with fresh moments. Masking the gradients instead would leave exact zeros in Adam's second moment,
    whose square root is about 40 times slower per element on common CPUs.
    """
    optimizer.step()
    apply_masks(layers)


def _refresh_mask(layer: nn.Module, prefix: str, keep_vars: bool) -> None:
    """State-dict pre-hook: set the layer's mask to its weight's non-zero pattern."""
    with th.no_grad():
        getattr(layer, MASK_NAME).copy_(layer.weight != 0)


def mirror_nonzero_pattern(layer: nn.Linear) -> None:
    """Make the mask of ``layer`` report the layer's non-zero pattern whenever its state is read.

    For target layers, whose sparsity is kept by pruning (Algorithm 3) rather than by their mask: the mask is
    not used in any computation, so instead of updating it at every target update it is refreshed when
    ``state_dict()`` runs (``save``, ``get_parameters``, copies), and saved files hold the exact pattern.
    Registering twice has no further effect.
    """
    if not getattr(layer, "_mask_mirrors_weight", False):
        layer.register_state_dict_pre_hook(_refresh_mask)
        setattr(layer, "_mask_mirrors_weight", True)  # noqa: B010 (nn.Module's __setattr__ typing)
