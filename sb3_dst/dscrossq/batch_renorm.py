"""CrossQ's BatchRenorm with its batch statistics taken by matrix-vector products, for the non-masked backends.

torch's ``x.var(dim=0)`` on a 512 × 1024 batch (CrossQ's joint pass through 1024-wide critics) took 2.4 ms here,
one thread, whichever the layout; with the sparse kernels computing the linear layers, the critics' variances were
the largest single item of a DSCrossQ step. Two passes of matrix-vector products (mean, then the centred squares)
give the same statistics within float rounding in 0.16 ms, forward and backward by autograd.

Only models with ``sparse_backend`` other than ``"masked"`` use it (:func:`set_batch_stats`), and only in networks
with a linear layer computing this batch on the sparse kernels: the masked path, and a network whose layers
``"auto"`` all keeps dense, stay bit for bit sb3-contrib's CrossQ. The renormalisation itself (Ioffe, 2017: r and
d clipped to ``rmax`` and ``dmax`` after the warm-up, running averages updated with the unbiased batch variance)
is sb3-contrib's ``BatchRenorm``'s, which the parity tests of the sparse backend check within rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm, BatchRenorm1d
from torch import nn

from sb3_dst.common.sparse_backend import SparseLinear, is_feature_major


def batch_mean_var(x: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Mean and unbiased variance over the batch (dim 0) of a B × n tensor, by two matrix-vector products."""
    ones = x.new_ones(x.shape[0])
    mean = x.t() @ ones / x.shape[0]
    centred = x - mean
    return mean, (centred * centred).t() @ ones / (x.shape[0] - 1)


class _FastStats(BatchRenorm):
    """sb3-contrib's ``BatchRenorm`` (or ``BatchRenorm1d``) whose training pass takes its batch statistics by
    :func:`batch_mean_var` when a linear layer of its network computes a batch of that size on the sparse kernels.

    Modules become one of its subclasses through :func:`set_batch_stats` (``__class__`` is switched: parameters,
    buffers and ``state_dict`` are untouched) and go back with ``fast=False``.
    """

    def forward(self, x: th.Tensor) -> th.Tensor:
        if not self.training or x.dim() != 2 or x.shape[0] < 2 or x.dtype != th.float32 or not self._on_kernels(x):
            return super().forward(x)
        batch_mean, batch_var = batch_mean_var(x)
        ra_mean, ra_var, steps = self.ra_mean, self.ra_var, self.steps  # buffers
        assert isinstance(ra_mean, th.Tensor) and isinstance(ra_var, th.Tensor) and isinstance(steps, th.Tensor)
        if steps > self.warmup_steps:  # renormalisation after the warm-up, as sb3-contrib's
            running_std = (ra_var + self.eps).sqrt()
            r = ((batch_var + self.eps).sqrt() / running_std).detach().clamp(1 / self.rmax, self.rmax)
            d = ((batch_mean - ra_mean) / running_std).detach().clamp(-self.dmax, self.dmax)
            mean, var = batch_mean - d * batch_var.sqrt() / r, batch_var / (r**2)
        else:
            mean, var = batch_mean, batch_var
        with th.no_grad():
            ra_mean += self.momentum * (batch_mean.detach() - ra_mean)
            ra_var += self.momentum * (batch_var.detach() - ra_var)
            steps += 1
        x = (x - mean[None]) / (var[None] + self.eps).sqrt()
        return self.scale * x + self.bias if self.affine else x

    def _on_kernels(self, x: th.Tensor) -> bool:
        """Whether a linear layer of this module's network computes a batch of ``x``'s size on the sparse kernels."""
        if is_feature_major(x):  # it left one
            return True
        layers = self.__dict__.get("_network_layers", ())
        return any(type(layer) is SparseLinear and layer.sparse_index(x) is not None for layer in layers)


class FastStatsBatchRenorm(_FastStats):
    """:class:`_FastStats` in place of ``BatchRenorm``."""


class FastStatsBatchRenorm1d(_FastStats, BatchRenorm1d):
    """:class:`_FastStats` in place of ``BatchRenorm1d`` (CrossQ's networks)."""


_FAST: dict[type[nn.Module], type[nn.Module]] = {
    BatchRenorm: FastStatsBatchRenorm,
    BatchRenorm1d: FastStatsBatchRenorm1d,
}
_PLAIN: dict[type[nn.Module], type[nn.Module]] = {fast: plain for plain, fast in _FAST.items()}


def set_batch_stats(network: nn.Module, fast: bool, layers: Sequence[nn.Module] = ()) -> None:
    """Switch every ``BatchRenorm`` of ``network`` to its fast-statistics class (``fast``) or back.

    :param layers: the network's sparse linear layers (on a backend of :mod:`sb3_dst.common.sparse_backend`):
        the statistics are taken the fast way for the batch sizes some of them compute on the kernels.
    """
    for module in network.modules():
        switch = (_FAST if fast else _PLAIN).get(type(module))
        if switch is not None:
            module.__class__ = switch
            module.__dict__["_network_layers"] = tuple(layers) if fast else ()
