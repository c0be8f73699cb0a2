"""Where a sparse layer computes: on its dense masked weight (``"masked"``) or on its present connections only
(``"sparse"``), per layer (``"auto"``).

Every sparse layer stays an ``nn.Linear`` whose weight is a dense ``nn.Parameter`` with zeros at absent positions:
SB3's ``save``/``load``, ``get_parameters``, export and the zoo see nothing new. With the sparse backend the layer
(its class switched to :class:`SparseLinear`, still an ``nn.Linear``) runs three products on its connections only,
with the kernels of :mod:`sb3_dst.common.sparse_kernels`:

- forward, ``y = x Wᵀ + b``: each output row sums its connections (row order, CSR);
- gradient with respect to the input, ``∂x = ∂y W``: each input column sums its connections (column order);
- gradient of the weight at present connections only, ``∂W[o, i] = Σ_b ∂y[b, o] x[b, i]``; the other entries of
  the gradient are zero. At a RigL evolution step (``growth="gradient"``) the dense gradient is computed instead,
  since the growth criterion reads it everywhere.

Activations pass between sparse layers feature-major (a B × n tensor with strides (1, B), the transpose of
torch's usual layout): elementwise layers such as ReLU keep that layout, so no transposes are made in between.

The index structures (:class:`SparseIndex`) are built lazily from the layer's *support* and dropped whenever the
topology may have changed: after an evolution or pruning step, ``load_state_dict`` (hence SB3's ``load`` and
``set_parameters``). An online layer's support is its mask. A target layer's is its non-zeros together with its
online layer's mask: a Polyak update only creates non-zeros where the online layer has connections and
Algorithm 3 only removes them, so between two evolutions the target's non-zeros stay inside that union.

Adam and AdamW step the present connections only (:func:`sparse_adam_step`).

``"auto"`` uses the sparse path for a layer when :func:`sparse_is_faster` says so for its density, shape and
the batch of the call (the rule and its measurements: ``benchmarks/train_speed.py``); convolutions always stay on
the masked path.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_dst.common import sparse_kernels

__all__ = [
    "BACKENDS",
    "SparseIndex",
    "SparseLinear",
    "check_backend",
    "invalidate",
    "is_feature_major",
    "link_layers",
    "set_backend",
    "sparse_adam_step",
    "sparse_is_faster",
    "uses_sparse_kernels",
]

logger = logging.getLogger(__name__)

#: The choices of ``sparse_backend``.
BACKENDS = ("auto", "masked", "sparse")

#: The buffer holding a layer's connections, :data:`sb3_dst.common.masking.MASK_NAME` (spelled out, not imported:
#: masking.py imports this module for ``masked_step``; tests/test_layering.py checks that the two agree).
_MASK_NAME = "weight_mask"

#: The ``"auto"`` rule, from the per-layer timings of ``benchmarks/train_speed.py layers``
#: (``benchmarks/results/train_speed/report.md``): the largest density at which the kernels are used, by the smallest
#: batch size it applies to (batches of 200 and more: 20 %; 64 to 199: 10 %; smaller batches stay dense).
AUTO_MAX_DENSITY_BY_BATCH = ((200, 0.2), (64, 0.1))
#: Layers with fewer entries stay dense (measured from 256 x 256 up).
AUTO_MIN_ENTRIES = 256 * 256


def check_backend(value: Any) -> str:
    """Validate a ``sparse_backend`` keyword. :raises ValueError: naming the choices."""
    if value not in BACKENDS:
        raise ValueError(f"sparse_backend must be one of {', '.join(map(repr, BACKENDS))}, got {value!r}")
    return str(value)


def sparse_is_faster(density: float, n_in: int, n_out: int, batch: int) -> bool:
    """The ``"auto"`` rule: whether the sparse kernels beat torch's dense product for one layer and batch.

    Measured forward plus backward of one layer (``benchmarks/train_speed.py layers``): the kernels win at
    densities up to 20 % with batches of 200 and more (256 in SAC and CrossQ), up to 10 % with batches of 64 to 199
    (100 in TD3), and not reliably with smaller batches (acting, batch 1, always stays dense); layers below
    256 x 256 entries were not measured and stay dense. The benchmark's report reads the rule against its timings.
    """
    if n_in * n_out < AUTO_MIN_ENTRIES:
        return False
    for smallest_batch, max_density in AUTO_MAX_DENSITY_BY_BATCH:
        if batch >= smallest_batch:
            return density <= max_density
    return False


@dataclass
class SparseIndex:
    """The connections of one layer in both orders, as flat positions into its out × in weight (int32).

    ``row_ptr``/``row_src``/``row_pos``: for output row o, entries ``row_ptr[o]:row_ptr[o + 1]`` give the inputs
    ``row_src`` and flat positions ``row_pos`` (= o·in + i) of its connections, inputs ascending.
    ``col_ptr``/``col_src``/``col_pos``: the same by input column (``col_src`` are outputs).
    """

    row_ptr: th.Tensor
    row_src: th.Tensor
    row_pos: th.Tensor
    col_ptr: th.Tensor
    col_src: th.Tensor
    col_pos: th.Tensor
    n_out: int
    n_in: int

    @property
    def nnz(self) -> int:
        return int(self.row_pos.numel())

    @property
    def density(self) -> float:
        return self.nnz / max(self.n_out * self.n_in, 1)

    @functools.cached_property
    def coo(self) -> tuple[th.Tensor, th.Tensor]:
        """The connections' ordinals 0..nnz−1 in row order (int32) and their 2 × nnz (row, column) indices."""
        positions = self.row_pos.to(th.int64)
        return th.arange(self.nnz, dtype=th.int32), th.stack((positions // self.n_in, positions % self.n_in))

    @classmethod
    def from_support(cls, support: th.Tensor) -> SparseIndex:
        """The index of the ``True`` (non-zero) entries of an out × in matrix."""
        n_out, n_in = support.shape
        if n_out * n_in >= 2**31:
            raise ValueError(f"a {n_out}x{n_in} layer is too large for the sparse kernels' 32-bit positions")
        rows, cols = support.nonzero(as_tuple=True)  # row-major order: inputs ascending within each row
        row_ptr = th.zeros(n_out + 1, dtype=th.int64)
        row_ptr[1:] = th.bincount(rows, minlength=n_out).cumsum(0)
        positions = rows * n_in + cols
        order = th.argsort(cols * n_out + rows)
        col_ptr = th.zeros(n_in + 1, dtype=th.int64)
        col_ptr[1:] = th.bincount(cols, minlength=n_in).cumsum(0)
        as32 = lambda t: t.to(th.int32).contiguous()  # noqa: E731
        return cls(
            as32(row_ptr), as32(cols), as32(positions), as32(col_ptr), as32(rows[order]), as32(positions[order]),
            n_out, n_in,
        )  # fmt: skip


class _LayerState:
    """The sparse backend's state of one layer: backend, support, cached index and RigL's dense-gradient query."""

    __slots__ = (
        "auto_choice", "backend", "dense_grad_due", "grad_buffer", "grad_index", "index", "next_layer", "support_of",
        "trained_on_kernels",
    )  # fmt: skip

    def __init__(self, backend: str, support_of: Callable[[], th.Tensor]) -> None:
        self.backend = backend
        self.support_of = support_of
        self.index: SparseIndex | None = None
        self.dense_grad_due: Callable[[], bool] | None = None
        # The dense storage the weight gradient is written into at present positions (zeros elsewhere), kept from
        # one backward pass to the next, and the index whose positions it may hold values at.
        self.grad_buffer: th.Tensor | None = None
        self.grad_index: SparseIndex | None = None
        # Whether the last forward pass that records a weight gradient ran on the kernels: only then does
        # sparse_adam_step step the weight at its connections ("auto" keeps other layers on the dense path's Adam).
        self.trained_on_kernels = False
        # "auto": the last (index, batch, whether the kernels are used) the rule was asked about.
        self.auto_choice: tuple[SparseIndex, int, bool] | None = None
        # The sparse layer its output feeds in the same nn.Sequential (link_layers), if any.
        self.next_layer: SparseLinear | None = None

    def weight_grad(self, weight: th.Tensor, index: SparseIndex, g_t: th.Tensor, x_t: th.Tensor) -> th.Tensor:
        """``weight``'s gradient at ``index``'s positions (``g_t`` and ``x_t`` feature-major), without allocating.

        Allocating and zeroing a dense gradient at every backward pass cost as much as the sparse products
        themselves (a fresh large allocation is page faults and a fill). The gradient is instead written into the
        same dense storage each time: the returned tensor shares it but is a tensor of its own, so autograd takes
        it as ``weight.grad`` without a copy. Each pass overwrites the present positions; the storage is zeroed
        when the index changes, so it is zero elsewhere. If ``weight.grad`` is that storage already (a second
        backward pass before ``zero_grad``, as SAC's actor loss through the critic), the gradient is returned as
        a sparse COO tensor at the present positions, which autograd adds to the dense ``weight.grad``.
        """
        buffer = self.grad_buffer
        if buffer is None or buffer.shape != weight.shape or buffer.dtype != weight.dtype:
            buffer = self.grad_buffer = th.zeros(weight.shape, dtype=weight.dtype)
            self.grad_index = index
        current = weight.grad
        if current is not None and current.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr():
            ordinal, coo_indices = index.coo
            values = th.empty(index.nnz, dtype=weight.dtype)
            sparse_kernels.sddmm(index.row_ptr, index.row_src, ordinal, g_t, x_t, values)
            return th.sparse_coo_tensor(coo_indices, values, weight.shape, is_coalesced=True, check_invariants=False)
        if self.grad_index is not index:
            buffer.zero_()
            self.grad_index = index
        grad = th.empty(0, dtype=buffer.dtype).set_(buffer.untyped_storage(), 0, buffer.shape, buffer.stride())
        sparse_kernels.sddmm(index.row_ptr, index.row_src, index.row_pos, g_t, x_t, grad)
        return grad


class _SparseLinearFunction(th.autograd.Function):
    """y = x Wᵀ + b on the connections of ``index``; x arrives as B × in, y leaves as B × out (feature-major)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: th.Tensor, weight: th.Tensor, bias: th.Tensor | None, layer: SparseLinear, index: SparseIndex
    ) -> th.Tensor:
        x_t = _feature_major(x)
        y_t = th.empty(index.n_out, x_t.shape[1], dtype=x.dtype)
        sparse_kernels.spmm(
            index.row_ptr, index.row_src, index.row_pos, weight.detach(), None if bias is None else bias.detach(),
            x_t, y_t,
        )  # fmt: skip
        ctx.save_for_backward(x_t, weight)
        ctx.index, ctx.layer, ctx.has_bias = index, layer, bias is not None
        return y_t.t()

    @staticmethod
    def backward(ctx: Any, grad_output: th.Tensor) -> tuple[th.Tensor | None, ...]:  # type: ignore[override]
        x_t, weight = ctx.saved_tensors
        index: SparseIndex = ctx.index
        g_t = _feature_major(grad_output)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x_t = th.empty(index.n_in, g_t.shape[1], dtype=g_t.dtype)
            sparse_kernels.spmm(index.col_ptr, index.col_src, index.col_pos, weight.detach(), None, g_t, grad_x_t)
            grad_x = grad_x_t.t()
        if ctx.needs_input_grad[1]:
            state: _LayerState = ctx.layer._sparse_state
            if state.dense_grad_due is not None and state.dense_grad_due():
                grad_weight = g_t @ x_t.t()  # RigL's growth reads the gradient at absent positions too
            else:
                grad_weight = state.weight_grad(weight, index, g_t, x_t)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = g_t.sum(dim=1)
        return grad_x, grad_weight, grad_bias, None, None


def is_feature_major(x: th.Tensor) -> bool:
    """Whether a B × n tensor is laid out as the transpose of a contiguous n × B one (and not also row-major)."""
    return x.dim() == 2 and not x.is_contiguous() and x.t().is_contiguous()


def _feature_major(x: th.Tensor) -> th.Tensor:
    """The n × B contiguous transpose of a B × n tensor, without a copy when it is laid out that way already."""
    x_t = x.t()
    return x_t if x_t.is_contiguous() else x_t.contiguous()


class SparseLinear(nn.Linear):
    """An ``nn.Linear`` that computes on its present connections when its backend says so.

    Layers become this class through :func:`set_backend` (``layer.__class__`` is switched, so parameters,
    buffers, hooks and ``state_dict`` are untouched) and go back to ``nn.Linear`` with ``"masked"``.
    """

    _sparse_state: _LayerState

    def forward(self, x: th.Tensor) -> th.Tensor:
        index = self.sparse_index(x)
        if th.is_grad_enabled() and self.weight.requires_grad:
            self._sparse_state.trained_on_kernels = index is not None
        if index is None:
            if x.dtype == self.weight.dtype and (is_feature_major(x) or self._feeds_kernels(x)):
                # An input laid out feature-major (it left a layer on the sparse kernels) gives a dense product laid
                # out the same way: a stack of layers keeps one layout, and the elementwise layers between them
                # (ReLU and its backward) stay contiguous. So does a layer whose output feeds a layer on the kernels
                # (``"auto"`` keeps a narrow first layer dense): the next layer then takes its input without a
                # transpose. Otherwise a row-major input takes nn.Linear's own product, so a network whose layers
                # all take the dense path computes bit for bit as plain nn.Linear layers.
                x_t = x.t()
                y_t = self.weight @ x_t if self.bias is None else th.addmm(self.bias.unsqueeze(1), self.weight, x_t)
                return y_t.t()
            return F.linear(x, self.weight, self.bias)
        if x.dim() != 2:
            flat = x.reshape(-1, x.shape[-1])
            return self.forward(flat).reshape(*x.shape[:-1], self.out_features)
        return _SparseLinearFunction.apply(x, self.weight, self.bias, self, index)  # type: ignore[no-any-return]

    def _feeds_kernels(self, x: th.Tensor) -> bool:
        """Whether this layer's output on ``x`` (2-D) feeds a layer that computes that batch on the kernels."""
        following = self._sparse_state.next_layer
        return type(following) is SparseLinear and x.dim() == 2 and following.sparse_index(x) is not None

    def sparse_index(self, x: th.Tensor | None = None) -> SparseIndex | None:
        """The index the next call on ``x`` computes with, or None if it takes the dense masked path."""
        state = self.__dict__.get("_sparse_state")
        if state is None or state.backend == "masked":
            return None
        if x is not None and (x.dtype != th.float32 or not x.is_cpu or x.dim() < 1):
            return None
        weight = self.weight
        if weight.dtype != th.float32 or not weight.is_cpu:
            return None
        index = state.index
        if index is None:
            with th.no_grad():
                index = state.index = SparseIndex.from_support(state.support_of())
        if state.backend == "auto":
            batch = 1 if x is None else (x.shape[0] if x.dim() == 2 else x.numel() // max(x.shape[-1], 1))
            # The rule's answer for this index and batch, kept: a layer is called with a handful of batch sizes.
            choice = state.auto_choice
            if choice is None or choice[0] is not index or choice[1] != batch:
                kernels = sparse_is_faster(index.density, self.in_features, self.out_features, batch)
                choice = state.auto_choice = (index, batch, kernels)
            if not choice[2]:
                return None
        return index

    def __getstate__(self) -> dict[str, Any]:  # pickling or deep-copying keeps no index nor callbacks
        state = dict(super().__getstate__())  # type: ignore[misc]
        state.pop("_sparse_state", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        self.__class__ = nn.Linear  # type: ignore[assignment]  # a copy is plain until set_backend is called


@functools.cache
def _log_once(message: str) -> None:
    logger.warning("sb3-dst: %s", message)


def _drop_index(module: nn.Module, *args: Any) -> None:
    state = module.__dict__.get("_sparse_state")
    if state is not None:
        state.index = None


def set_backend(
    layer: nn.Module,
    backend: str,
    support_of: Callable[[], th.Tensor] | None = None,
    dense_grad_due: Callable[[], bool] | None = None,
) -> bool:
    """Put one sparse layer on ``backend``; returns whether it can compute on its connections.

    :param support_of: the boolean out × in matrix its connections are taken from (default: ``weight_mask > 0``).
    :param dense_grad_due: asked during each backward pass: True when the full weight gradient is needed (RigL).
    A layer the kernels cannot run (a convolution) stays on the masked path; with ``"sparse"`` that is logged
    once per process.

    :raises ValueError: for an unknown backend.
    """
    check_backend(backend)
    if not isinstance(layer, nn.Linear):
        if backend == "sparse":
            _log_once(
                f"sparse_backend='sparse' computes fully connected layers on their connections; {type(layer).__name__} "
                "layers stay on the masked path"
            )
        return False
    if backend == "masked" or sparse_kernels.load_kernels() is None:
        if type(layer) is SparseLinear:
            layer.__dict__.pop("_sparse_state", None)
            layer.__class__ = nn.Linear  # type: ignore[assignment]
        return False
    if support_of is None:
        mask = getattr(layer, _MASK_NAME)
        support_of = lambda: mask > 0  # noqa: E731
    layer.__class__ = SparseLinear
    layer.__dict__["_sparse_state"] = _LayerState(backend, support_of)
    layer.__dict__["_sparse_state"].dense_grad_due = dense_grad_due
    if not getattr(layer, "_sparse_hook", False):
        layer.register_load_state_dict_post_hook(_drop_index)
        layer.__dict__["_sparse_hook"] = True
    return True


def link_layers(network: nn.Module) -> None:
    """Tell each layer of ``network`` on a backend which sparse layer its output feeds, when the two are children
    of one ``nn.Sequential`` with no other linear layer between them (the modules between act elementwise or per
    feature, as ReLU and BatchRenorm do): a layer on the dense path then hands a layer on the kernels its output
    laid out feature-major (:meth:`SparseLinear.forward`)."""
    for module in network.modules():
        if not isinstance(module, nn.Sequential):
            continue
        previous: SparseLinear | None = None
        for child in module.children():
            if type(child) is SparseLinear:
                if previous is not None:
                    previous._sparse_state.next_layer = child
                previous = child
            elif isinstance(child, nn.Linear | nn.Flatten | nn.Unflatten) or any(True for _ in child.children()):
                previous = None  # a dense linear layer or a nested block between the two


def invalidate(layers: Iterable[nn.Module]) -> None:
    """Drop the index of each layer: rebuilt from its support at its next call (after a topology change)."""
    for layer in layers:
        _drop_index(layer)


def uses_sparse_kernels(layer: nn.Module, batch: int) -> bool:
    """Whether ``layer`` computes a batch of ``batch`` rows on its connections only (for tests and reports)."""
    if type(layer) is not SparseLinear:
        return False
    example = th.empty(batch, layer.in_features)
    return layer.sparse_index(example) is not None


class DenseGradientDue:
    """``dense_grad_due`` for the layers of one network: asks the model (held weakly) whether RigL's growth
    needs this step's dense gradient."""

    __slots__ = ("model", "network")

    def __init__(self, model: Any, network: str) -> None:
        self.model, self.network = weakref.ref(model), network

    def __call__(self) -> bool:
        model = self.model()
        return model is not None and bool(model._dense_gradient_due(self.network))


# --- Adam on present connections ------------------------------------------------------------------------------


def sparse_adam_step(optimizer: th.optim.Optimizer, layers: Sequence[nn.Module]) -> list[th.Tensor]:
    """Step the weights of ``layers`` that compute sparsely with Adam/AdamW at their connections only.

    The arithmetic is torch's single-tensor Adam; entries outside the connections (weights, gradients, moments)
    are not touched. Groups or states the kernel does not reproduce are left to the caller.

    :return: the weights stepped (the caller must not step them again).
    """
    from sb3_dst.common.fused_adam import _settings, init_adam_state

    if type(optimizer) not in (th.optim.Adam, th.optim.AdamW):
        return []
    indices = {}
    for layer in layers:
        state = layer.__dict__.get("_sparse_state")
        if type(layer) is SparseLinear and state is not None and state.index is not None and state.trained_on_kernels:
            indices[id(layer.weight)] = state.index.row_pos
    if not indices:
        return []
    stepped = []
    for group in optimizer.param_groups:
        settings = _settings(optimizer, group)
        if settings is None:
            continue
        lr, beta1, beta2, eps, weight_decay, decoupled = settings
        decay, l2 = (1 - lr * weight_decay, 0.0) if decoupled else (1.0, weight_decay)
        for param in group["params"]:
            positions = indices.get(id(param))
            grad = param.grad
            if positions is None or grad is None or grad.dtype != th.float32 or not grad.is_contiguous():
                continue
            state = init_adam_state(optimizer, param)
            exp_avg, exp_avg_sq, step_t = state.get("exp_avg"), state.get("exp_avg_sq"), state.get("step")
            if not (isinstance(exp_avg, th.Tensor) and isinstance(exp_avg_sq, th.Tensor)) or step_t is None:
                continue
            if not (exp_avg.is_contiguous() and exp_avg_sq.is_contiguous()):
                continue
            step_t += 1
            step = float(step_t)
            bias_correction1 = 1 - beta1**step
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            scalars = (decay, l2, 1 - beta1, beta2, 1 - beta2, bias_correction2_sqrt, eps, -lr / bias_correction1)
            sparse_kernels.adam(positions, param.detach(), grad, exp_avg, exp_avg_sq, scalars)
            stepped.append(param)
    return stepped
