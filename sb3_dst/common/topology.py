"""Sparse-topology engine: pure tensor functions, no Stable-Baselines3 import.

Symbols follow Sokar et al., "Dynamic Sparse Training for Deep Reinforcement Learning":

- λ (``er_lambda``): Erdős–Rényi density parameter of a layer, Eq. 1.
- η (``drop_fraction``): fraction of a layer's connections replaced at each evolution, Algorithm 2.
- k: number of connections a target layer keeps, Algorithm 3.

A *mask* is a float tensor of the weight's shape whose entries are 1 where a connection exists and 0
elsewhere. Every function here works on one layer (one 2-D weight matrix) and never changes the number of
connections unless that is its purpose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch as th

from sb3_dst.common._kernels import NOTHING_TO_PRUNE, PRUNED, maintain_kernel

__all__ = [
    "TargetSparsity",
    "drop_and_grow",
    "er_connection_count",
    "er_lambdas_for_sparsity",
    "prune_to_k",
    "random_mask",
    "reset_optimizer_state",
]


def er_connection_count(n_in: int, n_out: int, er_lambda: float, *, layer: str = "layer") -> int:
    """Exact connection budget of an Erdős–Rényi layer: ``round(λ (n_in + n_out))`` (Eq. 1 times n_in·n_out).

    :param n_in: fan-in n^(l-1).
    :param n_out: fan-out n^l.
    :param er_lambda: λ^l > 0.
    :param layer: name used in error messages.
    :raises ValueError: if λ ≤ 0, or if the budget exceeds the n_in·n_out possible connections.
    """
    if not er_lambda > 0 or not math.isfinite(er_lambda):
        raise ValueError(f"er_lambda for {layer} must be a positive number, got {er_lambda!r}")
    k = math.floor(er_lambda * (n_in + n_out) + 0.5)
    if k > n_in * n_out:
        max_lambda = n_in * n_out / (n_in + n_out)
        raise ValueError(
            f"er_lambda={er_lambda:g} gives {layer} ({n_in}x{n_out}) {k} connections, more than the "
            f"{n_in * n_out} possible (density {k / (n_in * n_out):.2f} > 1). Use er_lambda <= {max_lambda:.3g} "
            "for this layer, or pass `sparsity=` instead of `er_lambda=`."
        )
    return max(k, 1)


def er_lambdas_for_sparsity(shapes: Sequence[tuple[int, int]], sparsity: float) -> list[float]:
    """λ per layer such that the layers together hold ``(1 - sparsity)`` of their weights.

    One λ is shared by all layers (the Erdős–Rényi proportions of Eq. 1); a layer whose density would
    exceed 1 is made dense and λ is solved again for the others (the usual ERK redistribution), so the
    total budget is met whenever it can be.

    :param shapes: ``(n_in, n_out)`` of each sparse layer.
    :param sparsity: target fraction of zero weights over these layers, in [0, 1).
    :return: λ per layer; a dense layer gets its maximal λ ``n_in n_out / (n_in + n_out)``.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    sizes = [n_in * n_out for n_in, n_out in shapes]
    budget = (1.0 - sparsity) * sum(sizes)
    dense: set[int] = set()
    while True:
        free = [i for i in range(len(shapes)) if i not in dense]
        if not free:
            break
        remaining = budget - sum(sizes[i] for i in dense)
        lam = remaining / sum(shapes[i][0] + shapes[i][1] for i in free)
        over = {i for i in free if lam * (shapes[i][0] + shapes[i][1]) > sizes[i]}
        if not over:
            break
        dense |= over
    max_lambdas = [size / (n_in + n_out) for size, (n_in, n_out) in zip(sizes, shapes, strict=False)]
    return [max_lambdas[i] if i in dense else min(lam, max_lambdas[i]) for i in range(len(shapes))]


def random_mask(
    shape: tuple[int, int] | th.Size, k: int, *, generator: th.Generator | None = None, dtype=th.float32
) -> th.Tensor:
    """A mask with exactly ``k`` connections at uniformly random positions (Algorithm 1, L3).

    A full mask (``k == numel``) is built without drawing random numbers, so a full-density layer leaves
    the random stream untouched (a dense-equivalent model then reproduces the dense algorithm exactly).
    """
    numel = int(shape[0]) * int(shape[1])
    if not 0 < k <= numel:
        raise ValueError(f"a {tuple(shape)} mask cannot hold {k} connections")
    if k == numel:
        return th.ones(tuple(shape), dtype=dtype)
    mask = th.zeros(numel, dtype=dtype)
    mask[th.randperm(numel, generator=generator)[:k]] = 1.0
    return mask.view(tuple(shape))


def _smallest(scores: th.Tensor, candidates: th.Tensor, count: int) -> th.Tensor:
    """Flat indices of the ``count`` candidates with the smallest score."""
    if count <= 0:
        return candidates.new_zeros(0, dtype=th.long)
    masked = th.where(candidates, scores, th.full_like(scores, math.inf))
    return th.topk(masked, count, largest=False, sorted=False).indices


def drop_and_grow(
    weight: th.Tensor, mask: th.Tensor, drop_fraction: float, *, generator: th.Generator | None = None
) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Topological evolution of one layer (Algorithm 2), in place on ``weight`` and ``mask``.

    Drop ``c = round(η ‖M‖₀)`` connections closest to zero: ``ceil(c/2)`` of the smallest non-negative
    weights and ``floor(c/2)`` of the largest negative weights (when one sign has too few connections the
    other gives the rest; exact zeros count as closest to zero). Then grow ``c`` connections at uniformly
    random positions among those absent before the drop, with weight 0 (only if there are fewer than ``c``
    such positions are dropped ones reused). The connection count never changes.

    :param weight: 2-D weight matrix X (modified in place: dropped and grown entries become 0).
    :param mask: float mask M of the same shape (modified in place).
    :param drop_fraction: η in (0, 1).
    :param generator: torch random generator for the growth positions (default: the global one).
    :return: ``(dropped, grown, changed)``: bool tensors of the weight's shape; ``changed`` marks positions
        whose connection appeared or disappeared (their optimizer state should be reset).
    """
    if not 0.0 < drop_fraction < 1.0:
        raise ValueError(f"drop_fraction (η) must be in (0, 1), got {drop_fraction!r}")
    flat_w = weight.detach().reshape(-1)
    flat_m = mask.view(-1)
    present = flat_m > 0
    n_connections = int(present.sum())
    c = math.floor(drop_fraction * n_connections + 0.5)
    dropped = th.zeros_like(present)
    grown = th.zeros_like(present)
    if c == 0:
        shape = weight.shape
        return dropped.view(shape), grown.view(shape), dropped.view(shape)

    # Lines 2-7: split c between the smallest positive and the largest negative weights.
    non_negative = present & (flat_w >= 0)
    negative = present & (flat_w < 0)
    n_pos, n_neg = int(non_negative.sum()), int(negative.sum())
    c_p = min((c + 1) // 2, n_pos)
    c_n = min(c - c_p, n_neg)
    c_p = min(c - c_n, n_pos)
    dropped[_smallest(flat_w, non_negative, c_p)] = True
    dropped[_smallest(-flat_w, negative, c_n)] = True

    # Lines 8-10: grow the same number at random among positions absent before the drop.
    absent = ~present
    n_absent = int(absent.sum())
    if n_absent >= c:
        pool = absent.nonzero().squeeze(1)
    else:  # nearly dense layer: dropped positions may be drawn again
        pool = (absent | dropped).nonzero().squeeze(1)
    choice = pool[th.randperm(pool.numel(), generator=generator, device=pool.device)[:c]]
    grown[choice] = True

    # Line 11: X <- X ⊙ M, grown weights start at zero.
    flat_m[dropped] = 0.0
    flat_m[grown] = 1.0
    with th.no_grad():
        weight.view(-1)[dropped | grown] = 0.0
    changed = dropped ^ grown
    shape = weight.shape
    return dropped.view(shape), grown.view(shape), changed.view(shape)


def prune_to_k(weight: th.Tensor, k: int) -> bool:
    """Maintain sparsity of a target layer (Algorithm 3), in place.

    Keep the ``k`` largest-magnitude entries of ``weight`` and zero the rest. Exactly ``k`` non-zeros survive
    (ties are broken arbitrarily), so a target layer never holds more connections than its online layer. When
    the layer already has at most ``k`` non-zeros nothing is changed. Only float operations are used on the
    full matrix (boolean reductions are several times slower on CPU), and only the excess entries are sorted.

    :return: whether entries were pruned.
    """
    flat = weight.detach().view(-1)
    magnitude = flat.abs()
    present = magnitude.sign()  # 1.0 where non-zero
    excess = int(present.sum()) - k
    if excess <= 0:
        return False
    with th.no_grad():
        # Zeros get a score above every magnitude, so the `excess` smallest scores are existing entries.
        scores = magnitude.add_(present.sub_(1.0).mul_(-th.finfo(magnitude.dtype).max))
        flat[th.topk(scores, excess, largest=False, sorted=False).indices] = 0.0
    return True


#: When uncontested weights fall below the pruning bound, all below this multiple of it become contested.
MERGE_MARGIN = 32.0
#: Calls of :meth:`TargetSparsity.maintain` between two passes that shrink the contested set.
SHRINK_EVERY = 8


class TargetSparsity:
    """Algorithm 3 for one target layer, exact and incremental.

    A Polyak (or hard) update can only create non-zeros where the online layer has connections, and pruning
    only removes them. So outside the positions an evolution touched since the target last matched the online
    mask (the *contested* positions), every non-zero of the target is an online connection and their number is
    known. Each call counts and ranks only the contested entries, then checks with one pass over the whole
    matrix that no other non-zero is smaller than the entries it prunes; the few that are become contested too
    before the final ranking. The result is always that of :func:`prune_to_k` on the whole layer: the ``k``
    largest magnitudes survive (ties broken arbitrarily).

    On CPU the work is done on NumPy views of the tensors (same memory, a fraction of torch's per-call cost at
    these sizes), by a compiled kernel when Numba is installed and by NumPy otherwise; on other devices each
    call is :func:`prune_to_k` on the whole layer.

    :param weight: the target layer's weight matrix (pruned in place).
    :param online_mask: the online layer's mask M (read, never written).
    :param k: connections to keep, ‖M‖₀.
    """

    def __init__(self, weight: th.Tensor, online_mask: th.Tensor, k: int):
        self.weight, self.online_mask, self.k = weight, online_mask, k
        self.incremental = weight.device.type == "cpu" and online_mask.device.type == "cpu"
        self.contested = np.zeros(0, dtype=np.int64)
        self._view_key: tuple[int, int] | None = None
        self._bound = math.inf  # the largest magnitude pruned by the last call that pruned
        self._calls = 0
        #: Use the compiled kernel of :mod:`sb3_dst.common._kernels` when Numba is installed (same results).
        self.use_kernel = True
        self._contested_magnitude = self._candidates = np.zeros(0, dtype=np.float32)
        if self.incremental:
            self.resync()
            maintain_kernel()  # load (or compile) it now rather than in the middle of training

    def _views(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat NumPy views of the target weight and the online mask (cached while their memory is the same)."""
        key = (self.weight.data_ptr(), self.online_mask.data_ptr())
        if key != self._view_key:
            self._weight = self.weight.detach().numpy().reshape(-1)
            self._online = self.online_mask.numpy().reshape(-1)
            self._magnitude = np.empty_like(self._weight)  # scratch buffers for the pass over the whole layer
            self._below = np.empty(self._weight.shape, dtype=bool)
            self._view_key = key
        return self._weight, self._online

    def _set_contested(self, positions: np.ndarray, online: np.ndarray) -> None:
        self.contested = positions
        # The online mask only changes at an evolution, which goes through mark_changed: cache it here.
        self._online_at_contested = online[positions] > 0

    def resync(self) -> None:
        """Recompute the contested positions from scratch (where target support and online mask differ)."""
        weight, online = self._views()
        self._set_contested(np.flatnonzero((weight != 0) != (online > 0)), online)
        self._recount_outside(weight)

    def _recount_outside(self, weight: np.ndarray) -> None:
        """Count exactly the non-zeros outside the contested positions (one pass over the layer)."""
        self.n_outside = int(np.count_nonzero(weight)) - int(np.count_nonzero(weight[self.contested]))

    def mark_changed(self, positions: th.Tensor) -> None:
        """Add positions where the online mask changed (bool tensor of the weight's shape) to the contested set."""
        if not self.incremental:
            return
        weight, online = self._views()
        changed = np.flatnonzero(positions.detach().cpu().numpy().reshape(-1))
        self._set_contested(np.union1d(self.contested, changed), online)
        self._recount_outside(weight)

    @property
    def in_sync(self) -> bool:
        """Whether no position is contested (the target's non-zeros then all lie inside the online mask)."""
        return self.incremental and self.contested.size == 0

    def _count_below(self, weight: np.ndarray, bound: float) -> int:
        """Entries of the whole layer with magnitude below ``bound``, zeros included (one pass, no allocation)."""
        np.abs(weight, out=self._magnitude)
        return int(np.count_nonzero(np.less(self._magnitude, bound, out=self._below)))

    def maintain(self) -> bool:
        """Prune the target to at most k non-zeros. :return: whether entries were pruned."""
        if not self.incremental:
            return prune_to_k(self.weight, self.k)
        if self.contested.size == 0:
            return False
        weight, online = self._views()
        ranked = self._prune_compiled(weight) if self.use_kernel else None
        if ranked is None:  # no Numba, or one of the rare cases the kernel leaves to NumPy
            ranked = self._prune_numpy(weight, online)
            if ranked is None:  # the whole layer was pruned and the bookkeeping started again
                return True
        pruned, magnitude, bound = ranked
        if pruned:
            self._bound = bound
        self._calls += 1
        if self._calls % SHRINK_EVERY == 0 or not pruned:
            self._shrink_contested(magnitude)
        return pruned

    def _prune_compiled(self, weight: np.ndarray) -> tuple[bool, np.ndarray, float] | None:
        """The common case of :meth:`maintain` in the compiled kernel: (pruned, contested magnitudes, bound).

        :return: ``None`` when Numba is missing or the kernel leaves the case to :meth:`_prune_numpy` (small
            uncontested weights to merge, or non-zeros outside the online mask); the weights are then unchanged.
        """
        kernel = maintain_kernel()
        if kernel is None:
            return None
        if self._contested_magnitude.shape != self.contested.shape:
            self._contested_magnitude = np.empty(self.contested.shape, dtype=weight.dtype)
            self._candidates = np.empty(self.contested.shape, dtype=weight.dtype)
        magnitude, hint = self._contested_magnitude, 2.0 * self._bound
        code, bound = kernel(weight, self.contested, magnitude, self._candidates, self.n_outside, self.k, hint)
        if code not in (PRUNED, NOTHING_TO_PRUNE):
            return None
        return code == PRUNED, magnitude, float(bound)

    def _prune_numpy(self, weight: np.ndarray, online: np.ndarray) -> tuple[bool, np.ndarray, float] | None:
        """:meth:`maintain` with NumPy: (pruned, contested magnitudes after pruning, bound).

        :return: ``None`` when the whole layer had to be pruned (non-zeros outside the online mask).
        """
        chosen, bound = None, math.nan
        for ranking in range(2):  # a second ranking only after small uncontested weights joined the contested
            contested = self.contested
            magnitude = np.abs(weight[contested])
            n_absent = contested.size - int(np.count_nonzero(magnitude))
            n_present = contested.size - n_absent
            excess = self.n_outside + n_present - self.k
            if excess > n_present:
                # More to prune than is contested: non-zeros appeared outside the online mask (weights edited by
                # hand, or loaded without their masks). Prune the whole layer and start the bookkeeping again.
                prune_to_k(self.weight, self.k)
                self.resync()
                return None
            if excess <= 0:
                chosen = None
                break
            # The absent (zero) contested entries rank first, then the `excess` smallest present ones.
            last = n_absent + excess - 1
            order = np.argpartition(magnitude, last)
            bound = float(magnitude[order[last]])
            chosen = order[: last + 1]
            if ranking == 1:  # everything below MERGE_MARGIN times the first bound is contested now: exact
                break
            # Every non-zero strictly below `bound` must be contested for the selection to be exact. The zeros
            # outside the contested positions are below it too, and their number is known.
            zeros_outside = weight.size - contested.size - self.n_outside
            if self._count_below(weight, bound) == zeros_outside + int(np.count_nonzero(magnitude < bound)):
                break
            # Some uncontested weights are that small: make them contested too and rank again. Taking all below
            # MERGE_MARGIN times the bound makes later calls rarely need this (contested may be a superset).
            small = np.less(self._magnitude, MERGE_MARGIN * bound, out=self._below) & (weight != 0)
            small[contested] = False
            self._set_contested(np.concatenate([contested, np.flatnonzero(small)]), online)
            self._recount_outside(weight)  # exact again, whatever happened
        if chosen is not None:
            weight[self.contested[chosen]] = 0.0
            magnitude[chosen] = 0.0
        return chosen is not None, magnitude, bound

    def _shrink_contested(self, magnitude: np.ndarray) -> None:
        """Shrink the contested set (it would otherwise grow with every evolution).

        Dropped connections pruned to zero cannot come back before the online mask changes, and connections
        present in both well above the last pruning bound are ordinary again (should one fall that low, the
        check in :meth:`maintain` finds it).

        :param magnitude: the target's magnitudes at the contested positions, after pruning.
        """
        online_at = self._online_at_contested
        present = magnitude > 0
        settled = np.where(present, online_at & (magnitude >= MERGE_MARGIN * self._bound), ~online_at)
        if settled.any():
            self.n_outside += int(np.count_nonzero(settled & present))
            keep = ~settled
            self.contested, self._online_at_contested = self.contested[keep], online_at[keep]


def reset_optimizer_state(optimizer: th.optim.Optimizer, param: th.Tensor, positions: th.Tensor) -> None:
    """Zero the per-element optimizer state of ``param`` at ``positions`` (e.g. Adam's first and second moments).

    Per-tensor state such as Adam's step count cannot be reset per element and is left alone.

    :param positions: bool tensor of ``param``'s shape.
    """
    state = optimizer.state.get(param)
    if not state:
        return
    for value in state.values():
        if isinstance(value, th.Tensor) and value.shape == param.shape:
            value[positions] = 0
