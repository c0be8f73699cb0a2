"""CrossQ's BatchRenorm, computed faster for the non-masked backends, with sb3-contrib's results.

With the sparse kernels computing the linear layers, CrossQ's BatchRenorm layers became most of a DSCrossQ
step: torch's ``x.var(dim=0)`` on a 512 × 1024 batch (CrossQ's joint pass through 1024-wide critics) took 2.4 ms
here, one thread, and autograd's normalisation about fifteen elementwise passes over the batch. Two faster ways,
chosen per call:

- a batch that arrives feature-major (from a layer on the kernels, or from a dense layer that feeds one) runs on
  the row kernels of :mod:`sb3_dst.common.sparse_kernels` (:class:`_RenormFunction`): two passes over each
  feature's row forward and two backward, with the gradient written out in closed form;
- a row-major batch that a linear layer of the network computes on the kernels takes its statistics by two
  matrix-vector products (:func:`batch_mean_var`, 0.16 ms for the same batch) and the rest by autograd.

Only models with ``sparse_backend`` other than ``"masked"`` use it (:func:`set_batch_stats`), and only in networks
with a linear layer computing this batch on the sparse kernels: the masked path, and a network whose layers
``"auto"`` all keeps dense, stay bit for bit sb3-contrib's CrossQ. The renormalisation itself (Ioffe, 2017: r and
d clipped to ``rmax`` and ``dmax`` after the warm-up, running averages updated with the unbiased batch variance)
is sb3-contrib's ``BatchRenorm``'s, which the tests check within rounding. One difference: after the warm-up,
sb3-contrib's autograd gives a NaN input gradient for a feature that is constant over the batch (a dead ReLU: the
square root of a zero variance); the closed form gives a finite one. The ReLU before the layer zeroes both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm, BatchRenorm1d
from torch import nn

from sb3_dst.common import sparse_kernels
from sb3_dst.common.sparse_backend import SparseLinear, is_feature_major


def batch_mean_var(x: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Mean and unbiased variance over the batch (dim 0) of a B × n tensor, by two matrix-vector products."""
    ones = x.new_ones(x.shape[0])
    mean = x.t() @ ones / x.shape[0]
    centred = x - mean
    return mean, (centred * centred).t() @ ones / (x.shape[0] - 1)


class _RenormFunction(th.autograd.Function):
    """BatchRenorm's training pass on a feature-major batch (the n × B transpose of x is contiguous) by the row
    kernels of :mod:`sb3_dst.common.sparse_kernels`: the statistics, the normalisation and the affine map in two
    passes over each feature's row, and the backward in two more, where autograd would take about fifteen
    elementwise operations on the whole batch.

    With batch mean μ_B and unbiased variance σ²_B of each feature, and r, d the renormalisation's detached
    corrections (r = 1, d = 0 during the warm-up), the layer computes y = γ (x − m) / s + β with
    m = μ_B − d σ_B / r and s = √(σ²_B / r² + ε). Its backward, with gradient g of y, is
    ∂L/∂x_b = (γ / s) g_b + ∂L/∂μ_B / B + ∂L/∂σ²_B · 2 (x_b − μ_B) / (B − 1), where ∂L/∂μ_B = −(γ / s) Σ g and
    ∂L/∂σ²_B = ∂L/∂μ_B · (−d / (2 r σ_B)) − (γ / s²) Σ g (x − m) / (2 s r²).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: th.Tensor, scale: th.Tensor, bias: th.Tensor, module: BatchRenorm
    ) -> th.Tensor:
        x_t = x.t()  # n × B, contiguous (checked by the caller)
        n = x_t.shape[0]
        batch_mean, batch_var = x.new_empty(n), x.new_empty(n)
        sparse_kernels.row_moments(x_t, batch_mean, batch_var)
        ra_mean, ra_var, steps = module.ra_mean, module.ra_var, module.steps
        assert isinstance(ra_mean, th.Tensor) and isinstance(ra_var, th.Tensor) and isinstance(steps, th.Tensor)
        if steps > module.warmup_steps:  # renormalisation after the warm-up, as sb3-contrib's
            running_std = (ra_var + module.eps).sqrt()
            r = ((batch_var + module.eps).sqrt() / running_std).clamp(1 / module.rmax, module.rmax)
            d = ((batch_mean - ra_mean) / running_std).clamp(-module.dmax, module.dmax)
            mean, var = batch_mean - d * batch_var.sqrt() / r, batch_var / (r**2)
        else:
            r, d, mean, var = None, None, batch_mean, batch_var
        ra_mean += module.momentum * (batch_mean - ra_mean)
        ra_var += module.momentum * (batch_var - ra_var)
        steps += 1
        std = (var + module.eps).sqrt()
        gain = scale / std if module.affine else 1 / std
        shift = (bias if module.affine else 0) - mean * gain
        y_t = sparse_kernels.row_affine(gain.contiguous(), x_t, shift.contiguous(), th.empty_like(x_t))
        ctx.save_for_backward(x_t, scale, batch_mean, batch_var, mean, std)
        ctx.r, ctx.d, ctx.affine = r, d, module.affine
        return y_t.t()

    @staticmethod
    def backward(ctx: Any, grad_output: th.Tensor) -> tuple[th.Tensor | None, ...]:  # type: ignore[override]
        x_t, scale, batch_mean, batch_var, mean, std = ctx.saved_tensors
        r, d = ctx.r, ctx.d
        g_t = grad_output.t().contiguous()  # n × B (no copy when it arrives feature-major)
        n, batch = x_t.shape
        sum_g, sum_gc = x_t.new_empty(n), x_t.new_empty(n)
        sparse_kernels.row_sums(g_t, x_t, batch_mean, sum_g, sum_gc)  # Σ g and Σ g (x − μ_B)
        sum_gx = sum_gc + (batch_mean - mean) * sum_g  # Σ g (x − m)
        gamma = scale if ctx.affine else th.ones_like(std)
        gain = gamma / std
        grad_mean = -gain * sum_g  # ∂L/∂m, which is ∂L/∂μ_B
        grad_var = -gain / std * sum_gx / (2 * std)  # through s, with ∂s/∂σ²_B = 1 / (2 s r²)
        if r is not None:
            grad_var = grad_var / r**2
            root = batch_var.sqrt()
            # through m = μ_B − d σ_B / r; a constant feature (σ_B = 0) has x_b − μ_B = 0: its term vanishes
            grad_var = grad_var + th.where(root > 0, grad_mean * (-d / (2 * r * root)), th.zeros_like(root))
        coef_x = grad_var * (2 / (batch - 1))
        grad_x_t = sparse_kernels.row_affine(
            coef_x.contiguous(), x_t, (grad_mean / batch - coef_x * batch_mean).contiguous(), th.empty_like(x_t),
            c=gain.contiguous(), g=g_t,
        )  # fmt: skip
        grad_scale = sum_gx / std if ctx.affine and ctx.needs_input_grad[1] else None
        grad_bias = sum_g if ctx.affine and ctx.needs_input_grad[2] else None
        return grad_x_t.t(), grad_scale, grad_bias, None


class _FastStats(BatchRenorm):
    """sb3-contrib's ``BatchRenorm`` (or ``BatchRenorm1d``) whose training pass runs on the row kernels
    (:class:`_RenormFunction`) when its batch arrives feature-major from a layer of the sparse backend, and takes its
    batch statistics by :func:`batch_mean_var` when a row-major batch is one a linear layer of its network computes
    on the sparse kernels.

    Modules become one of its subclasses through :func:`set_batch_stats` (``__class__`` is switched: parameters,
    buffers and ``state_dict`` are untouched) and go back with ``fast=False``.
    """

    def forward(self, x: th.Tensor) -> th.Tensor:
        if not self.training or x.dim() != 2 or x.shape[0] < 2 or x.dtype != th.float32 or not self._on_kernels(x):
            return super().forward(x)
        if is_feature_major(x) and x.is_cpu and self.scale.dtype == th.float32 and sparse_kernels.load_kernels():
            return _RenormFunction.apply(x, self.scale, self.bias, self)  # type: ignore[no-any-return]
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
