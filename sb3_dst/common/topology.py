"""Sparse-topology engine: pure tensor functions, no Stable-Baselines3 import.

Symbols follow Sokar et al., "Dynamic Sparse Training for Deep Reinforcement Learning":

- λ (``er_lambda``): Erdős–Rényi density parameter of a layer, Eq. 1.
- η (``drop_fraction``): fraction of a layer's connections replaced at each evolution, Algorithm 2.
- k: number of connections a target layer keeps, Algorithm 3.

A *mask* is a float tensor of the weight's shape whose entries are 1 where a connection exists and 0
elsewhere. Every function here works on one layer (a 2-D weight matrix, or a convolution's 4-D kernel, seen
through a flat view) and never changes the number of connections unless that is its purpose.

The module is organised in three parts, so that methods can be added without touching the algorithms:

- **Budgets** (how many connections each layer has): :func:`er_connection_count` (the paper's λ, Eq. 1),
  :func:`connection_budgets` (a global sparsity spread by ERK or uniformly).
- **Schedules** (when and how much the topology changes): :class:`EvolutionSchedule` (every e gradient steps
  inside a window), :func:`scheduled_drop_fraction` (η constant or cosine-decayed),
  :func:`pruning_connection_count` (gradual magnitude pruning's cubic schedule).
- **Criteria** (which connections): :func:`drop_and_grow` (the paper's drop; random growth as SET or
  gradient growth as RigL), :func:`prune_smallest` (magnitude pruning), and for target networks
  :func:`prune_to_k` / :class:`TargetSparsity` (Algorithm 3) or :class:`OnlineMaskTarget` (RLx2's masking).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch as th

from sb3_dst.common._kernels import NOTHING_TO_PRUNE, PRUNED, maintain_kernel

__all__ = [
    "DROP_FRACTION_SCHEDULES",
    "GROWTH_CRITERIA",
    "SPARSITY_DISTRIBUTIONS",
    "EvolutionSchedule",
    "HyperparameterError",
    "OnlineMaskTarget",
    "TargetSparsity",
    "connection_budgets",
    "drop_and_grow",
    "er_budget",
    "er_connection_count",
    "er_lambdas_for_sparsity",
    "erk_densities",
    "matching_sparsity",
    "prune_smallest",
    "prune_to_k",
    "pruning_connection_count",
    "random_mask",
    "reset_optimizer_state",
    "scheduled_drop_fraction",
]

#: Values of ``growth``: random (SET, the paper) or largest |gradient| (RigL).
GROWTH_CRITERIA = ("random", "gradient")
#: Values of ``drop_fraction_schedule``: η constant (the paper) or cosine-decayed (RigL).
DROP_FRACTION_SCHEDULES = ("constant", "cosine")
#: Values of ``sparsity_distribution``: Erdős–Rényi(-Kernel) or the same density in every layer.
SPARSITY_DISTRIBUTIONS = ("erk", "uniform")


class HyperparameterError(ValueError):
    """A DST hyperparameter (λ, sparsity, η, e, ...) that cannot be used; the message names it and the fix.

    A ``ValueError``; the rl-zoo3 integration turns it into a one-line error, as it does for an unknown keyword.
    """


def er_connection_count(n_in: int, n_out: int, er_lambda: float, *, layer: str = "layer") -> int:
    """Exact connection budget of an Erdős–Rényi layer: ``round(λ (n_in + n_out))`` (Eq. 1 times n_in·n_out).

    :param n_in: fan-in n^(l-1).
    :param n_out: fan-out n^l.
    :param er_lambda: λ^l > 0.
    :param layer: name used in error messages.
    :raises ValueError: if λ ≤ 0, or if the budget exceeds the n_in·n_out possible connections.
    """
    return er_budget((n_in, n_out), er_lambda, layer=layer)


def er_budget(shape: Sequence[int], er_lambda: float, *, layer: str = "layer") -> int:
    """Exact Erdős–Rényi(-Kernel) budget of a layer of ``shape``: ``round(λ Σ shape)``, at least 1.

    ``shape`` is ``(n_in, n_out)`` for a fully connected layer (Eq. 1: ``round(λ (n_in + n_out))``) and
    ``(c_in, c_out, k_h, k_w)`` for a convolution, which gets ``round(λ (c_in + c_out + k_h + k_w))`` of its
    ``c_in·c_out·k_h·k_w`` kernel entries (the ERK score of Evci et al.).

    :raises ValueError: if λ ≤ 0, or if the budget exceeds the layer's possible connections.
    """
    if not er_lambda > 0 or not math.isfinite(er_lambda):
        raise HyperparameterError(f"er_lambda for {layer} must be a positive number, got {er_lambda!r}")
    size, fan = math.prod(shape), sum(shape)
    k = math.floor(er_lambda * fan + 0.5)
    if k > size:
        dims = "x".join(str(n) for n in shape)
        raise HyperparameterError(
            f"er_lambda={er_lambda:g} gives {layer} ({dims}) {k} connections, more than the "
            f"{size} possible (density {k / size:.2f} > 1). Use er_lambda <= {size / fan:.3g} "
            "for this layer, or pass `sparsity=` instead of `er_lambda=`."
        )
    return max(k, 1)


def er_lambdas_for_sparsity(shapes: Sequence[Sequence[int]], sparsity: float) -> list[float]:
    """λ per layer such that the layers together hold ``(1 - sparsity)`` of their weights.

    One λ is shared by all layers (the Erdős–Rényi proportions of Eq. 1); a layer whose density would
    exceed 1 is made dense and λ is solved again for the others (the usual ERK redistribution), so the
    total budget is met whenever it can be.

    :param shapes: ``(n_in, n_out)`` of each sparse layer (``(c_in, c_out, k_h, k_w)`` for a convolution).
    :param sparsity: target fraction of zero weights over these layers, in [0, 1).
    :return: λ per layer; a dense layer gets its maximal λ ``n_in n_out / (n_in + n_out)`` (``Π shape / Σ shape``).
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    sizes = [math.prod(shape) for shape in shapes]
    fans = [sum(shape) for shape in shapes]
    budget = (1.0 - sparsity) * sum(sizes)
    dense: set[int] = set()
    while True:
        free = [i for i in range(len(shapes)) if i not in dense]
        if not free:
            break
        remaining = budget - sum(sizes[i] for i in dense)
        lam = remaining / sum(fans[i] for i in free)
        over = {i for i in free if lam * fans[i] > sizes[i]}
        if not over:
            break
        dense |= over
    max_lambdas = [size / fan for size, fan in zip(sizes, fans, strict=True)]
    return [max_lambdas[i] if i in dense else min(lam, max_lambdas[i]) for i in range(len(shapes))]


def erk_densities(shapes: Sequence[Sequence[int]], sparsity: float, power_scale: float = 1.0) -> list[float]:
    """Density of each layer under the ERK distribution for a global ``sparsity`` over these layers.

    Layer l gets density ``min(1, ε p_l)`` with ``p_l = ((n_in + n_out) / (n_in n_out))^power_scale`` (Evci et al.,
    RigL; ``power_scale = 1`` is the paper's Erdős–Rényi proportion, 0 the uniform one); for a convolution of shape
    ``(c_in, c_out, k_h, k_w)`` the score is ``((c_in + c_out + k_h + k_w) / (c_in c_out k_h k_w))^power_scale``.
    ε is solved so that the layers hold ``(1 - sparsity)`` of their weights; a layer that would be denser than full
    is made dense and ε is solved again for the others.

    :param shapes: ``(n_in, n_out)`` of each sparse layer (``(c_in, c_out, k_h, k_w)`` for a convolution).
    :param sparsity: target fraction of zero weights over these layers, in [0, 1).
    :param power_scale: exponent of the ERK score (``erk_power_scale``), >= 0.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    if not (math.isfinite(power_scale) and power_scale >= 0):
        raise ValueError(f"erk_power_scale must be a number >= 0, got {power_scale!r}")
    sizes = [math.prod(shape) for shape in shapes]
    scores = [(sum(shape) / math.prod(shape)) ** power_scale for shape in shapes]
    budget = (1.0 - sparsity) * sum(sizes)
    dense: set[int] = set()
    epsilon = 0.0
    while True:
        free = [i for i in range(len(shapes)) if i not in dense]
        if not free:
            break
        remaining = budget - sum(sizes[i] for i in dense)
        epsilon = remaining / sum(scores[i] * sizes[i] for i in free)
        over = {i for i in free if epsilon * scores[i] > 1.0}
        if not over:
            break
        dense |= over
    return [1.0 if i in dense else min(epsilon * scores[i], 1.0) for i in range(len(shapes))]


def connection_budgets(
    shapes: Sequence[Sequence[int]],
    sparsity: float,
    distribution: str = "erk",
    power_scale: float = 1.0,
) -> list[int]:
    """Exact connection count of each layer for a global ``sparsity`` spread over ``shapes``.

    - ``"erk"`` with ``power_scale = 1``: the Erdős–Rényi proportions of Eq. 1, one λ shared by the layers
      (:func:`er_lambdas_for_sparsity`, then :func:`er_connection_count`; layers denser than full made dense).
    - ``"erk"`` with another ``power_scale``: :func:`erk_densities`.
    - ``"uniform"``: every layer at density ``1 - sparsity``.

    Each count is rounded to the nearest integer and is at least 1. ``shapes`` are ``(n_in, n_out)`` for fully
    connected layers and ``(c_in, c_out, k_h, k_w)`` for convolutions (scored as in :func:`er_budget`).
    """
    if distribution not in SPARSITY_DISTRIBUTIONS:
        raise ValueError(f"sparsity_distribution must be one of {SPARSITY_DISTRIBUTIONS}, got {distribution!r}")
    if distribution == "erk" and power_scale == 1.0:
        lambdas = er_lambdas_for_sparsity(shapes, sparsity)
        return [er_budget(shape, lam) for shape, lam in zip(shapes, lambdas, strict=True)]
    if distribution == "uniform":
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
        densities = [1.0 - sparsity] * len(shapes)
    else:
        densities = erk_densities(shapes, sparsity, power_scale)
    return [
        min(max(math.floor(d * math.prod(shape) + 0.5), 1), math.prod(shape))
        for d, shape in zip(densities, shapes, strict=True)
    ]


def matching_sparsity(
    n_in: int,
    n_out: int,
    net_arch: Sequence[int],
    dense_net_arch: Sequence[int],
    sparse_output_layer: bool = False,
    distribution: str = "erk",
    power_scale: float = 1.0,
) -> float:
    """The ``sparsity`` at which an MLP with hidden layers ``net_arch`` has as many connections as a dense MLP with
    hidden layers ``dense_net_arch`` (the same inputs and outputs), e.g. 1024-1024 critics matching dense 256-256
    ones (about 0.93 on HalfCheetah).

    Connections are counted as the package builds the sparse network: the budgets of :func:`connection_budgets`
    for its sparse layers (the hidden layers, and the output layer if ``sparse_output_layer``), plus every weight
    of a dense output layer. Biases are not connections. The result is the sparsity whose count is closest to the
    dense network's weights (found by bisection: the count never grows with the sparsity).

    :raises ValueError: if even a dense ``net_arch`` has fewer connections than the dense network.
    """
    sizes = [int(n_in), *map(int, net_arch), int(n_out)]
    dense_sizes = [int(n_in), *map(int, dense_net_arch), int(n_out)]
    if min(sizes + dense_sizes) < 1:
        raise ValueError(f"layer sizes must be positive, got {sizes} and {dense_sizes}")
    target = sum(a * b for a, b in itertools.pairwise(dense_sizes))
    shapes = list(itertools.pairwise(sizes))
    sparse_shapes = shapes if sparse_output_layer else shapes[:-1]
    fixed = 0 if sparse_output_layer else shapes[-1][0] * shapes[-1][1]
    if not sparse_shapes:
        raise ValueError("net_arch has no hidden layer to make sparse")

    def connections(sparsity: float) -> int:
        return fixed + sum(connection_budgets(sparse_shapes, sparsity, distribution, power_scale))

    if connections(0.0) < target:
        raise ValueError(f"a dense {list(net_arch)} network has fewer connections than a dense {list(dense_net_arch)}")
    low, high = 0.0, 1.0 - 1e-9  # connections(low) >= target > connections(high), unless high already reaches it
    if connections(high) >= target:
        return high
    for _ in range(60):
        middle = (low + high) / 2
        if connections(middle) >= target:
            low = middle
        else:
            high = middle
    return low if connections(low) - target <= target - connections(high) else high


# --- Schedules: when and how much the topology changes --------------------------------------------------------


@dataclass(frozen=True)
class EvolutionSchedule:
    """When a network's topology changes: every ``interval`` (e) gradient steps, inside ``[start, end]``.

    :param interval: e, gradient steps between two changes (>= 1).
    :param start: first gradient step at which a change may happen (0: from the start).
    :param end: last gradient step at which a change may happen (``None``: never frozen). The official DS-TD3
        code freezes the topology 75k steps before the end of training; ``evolution_end`` sets this.
    """

    interval: int
    start: int = 0
    end: int | None = None

    def due(self, t: int, steps_since_last_call: int = 1) -> bool:
        """Whether a multiple of e in ``(t - steps_since_last_call, t]`` was reached inside the window.

        :param t: the gradient step just done (1-based count of updates).
        :param steps_since_last_call: gradient steps since the previous call for this network (TD3's actor is
            updated every d steps and is then evolved at the first update at or after each multiple of e).
        """
        if self.interval < 1:
            return False
        upper = t if self.end is None else min(t, self.end)
        multiple = (upper // self.interval) * self.interval  # the last multiple of e in the window, at or before t
        return multiple > t - steps_since_last_call and multiple >= self.start


def scheduled_drop_fraction(drop_fraction: float, schedule: str, t: int, horizon: int | None) -> float:
    """η_t, the drop fraction at gradient step ``t``.

    - ``"constant"``: η (the paper).
    - ``"cosine"``: ``η · ½ (1 + cos(π t / T))`` with ``T = horizon``, clipped to 0 after T (RigL).

    :param horizon: T, in gradient steps (``evolution_end``, or the run's total gradient steps).
    """
    if schedule not in DROP_FRACTION_SCHEDULES:
        raise ValueError(f"drop_fraction_schedule must be one of {DROP_FRACTION_SCHEDULES}, got {schedule!r}")
    if schedule == "constant":
        return drop_fraction
    if horizon is None or horizon <= 0:
        raise ValueError("the cosine drop-fraction schedule needs a horizon T > 0 (evolution_end or the run length)")
    progress = min(max(t / horizon, 0.0), 1.0)
    return drop_fraction * 0.5 * (1.0 + math.cos(math.pi * progress))


def pruning_connection_count(numel: int, final_count: int, t: int, start: int, end: int) -> int:
    """Connections a layer keeps at gradient step ``t`` under gradual magnitude pruning (Zhu & Gupta).

    Sparsity follows ``s_t = s (1 − (1 − p)³)`` with ``p = (t − start) / (end − start)`` clipped to [0, 1] and
    ``s = 1 − final_count / numel``: the layer is dense up to ``start``, holds exactly ``final_count`` from ``end``
    on, and never goes below it.

    :param numel: entries of the weight matrix.
    :param final_count: connections at the end of pruning (≥ 1).
    :param start: first gradient step of pruning.
    :param end: gradient step at which the final sparsity is reached (> start).
    """
    if not 0 < final_count <= numel:
        raise ValueError(f"final_count must be in [1, {numel}], got {final_count}")
    if end <= start:
        raise ValueError(f"pruning_end ({end}) must be after pruning_start ({start})")
    progress = min(max((t - start) / (end - start), 0.0), 1.0)
    removed = (numel - final_count) * (1.0 - (1.0 - progress) ** 3)
    return max(numel - math.floor(removed + 0.5), final_count)


def random_mask(
    shape: Sequence[int] | th.Size, k: int, *, generator: th.Generator | None = None, dtype=th.float32
) -> th.Tensor:
    """A mask with exactly ``k`` connections at uniformly random positions (Algorithm 1, L3).

    A full mask (``k == numel``) is built without drawing random numbers, so a full-density layer leaves
    the random stream untouched (a dense-equivalent model then reproduces the dense algorithm exactly).
    """
    numel = math.prod(int(n) for n in shape)
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
    weight: th.Tensor,
    mask: th.Tensor,
    drop_fraction: float,
    *,
    generator: th.Generator | None = None,
    grow_scores: th.Tensor | None = None,
) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Topological evolution of one layer (Algorithm 2), in place on ``weight`` and ``mask``.

    Drop ``c = round(η ‖M‖₀)`` connections closest to zero: ``ceil(c/2)`` of the smallest non-negative
    weights and ``floor(c/2)`` of the largest negative weights (when one sign has too few connections the
    other gives the rest; exact zeros count as closest to zero). Then grow ``c`` connections among the
    positions absent before the drop, with weight 0 (only if there are fewer than ``c`` such positions are
    dropped ones reused). The connection count never changes. Growth is

    - at uniformly random positions (the paper's SET growth) when ``grow_scores`` is ``None``;
    - at the positions with the largest ``grow_scores`` otherwise (RigL: the magnitude of the dense loss
      gradient; ties broken arbitrarily).

    :param weight: weight X, a 2-D matrix or a 4-D kernel (modified in place: dropped and grown entries become 0).
    :param mask: float mask M of the same shape (modified in place).
    :param drop_fraction: η in [0, 1) (0 changes nothing).
    :param generator: torch random generator for the growth positions (default: the global one).
    :param grow_scores: growth criterion of the weight's shape (larger = grown first), or ``None`` for random.
    :return: ``(dropped, grown, changed)``: bool tensors of the weight's shape; ``changed`` marks positions
        whose connection appeared or disappeared (their optimizer state should be reset).
    """
    if not 0.0 <= drop_fraction < 1.0:
        raise ValueError(f"drop_fraction (η) must be in [0, 1), got {drop_fraction!r}")
    if grow_scores is not None and grow_scores.shape != weight.shape:
        raise ValueError(f"grow_scores has shape {tuple(grow_scores.shape)}, the weight {tuple(weight.shape)}")
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

    # Lines 8-10: grow the same number among positions absent before the drop (at random, or by score).
    absent = ~present
    n_absent = int(absent.sum())
    candidates = absent if n_absent >= c else absent | dropped  # nearly dense layer: dropped ones may come back
    if grow_scores is None:
        pool = candidates.nonzero().squeeze(1)
        choice = pool[th.randperm(pool.numel(), generator=generator, device=pool.device)[:c]]
    else:
        choice = _smallest(-grow_scores.detach().reshape(-1).to(flat_w.dtype), candidates, c)
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


def prune_smallest(weight: th.Tensor, mask: th.Tensor, n_keep: int) -> th.Tensor:
    """Magnitude pruning of one layer, in place: keep the ``n_keep`` largest-|w| connections of ``mask``.

    Removes ``‖M‖₀ − n_keep`` existing connections with the smallest magnitude (ties broken arbitrarily) from
    the mask and zeroes their weights; nothing happens when the layer has at most ``n_keep`` connections.

    :return: bool tensor of the weight's shape marking the removed connections.
    """
    flat_m = mask.view(-1)
    present = flat_m > 0
    excess = int(present.sum()) - n_keep
    removed = th.zeros_like(present)
    if excess > 0:
        removed[_smallest(weight.detach().reshape(-1).abs(), present, excess)] = True
        flat_m[removed] = 0.0
        with th.no_grad():
            weight.view(-1)[removed] = 0.0
    return removed.view(weight.shape)


class OnlineMaskTarget:
    """Target sparsity by masking (RLx2): after each Polyak update the target is multiplied by the online mask.

    The alternative to Algorithm 3 (:class:`TargetSparsity`) selected by ``target_pruning="online_mask"``: the
    target's non-zeros are then always inside the online topology, so it can hold fewer than ``k`` of them
    (weights that have just been grown are zero in the online network too).

    :param weight: the target layer's weight matrix (masked in place).
    :param online_mask: the online layer's mask M (read, never written).
    """

    def __init__(self, weight: th.Tensor, online_mask: th.Tensor):
        self.weight, self.online_mask = weight, online_mask

    @property
    def k(self) -> int:
        return int(self.online_mask.sum())

    @k.setter
    def k(self, value: int) -> None:  # the mask, not a count, decides: nothing to store
        pass

    def maintain(self) -> bool:
        """θ' ← θ' ⊙ M. :return: True (the whole layer is masked)."""
        with th.no_grad():
            self.weight.mul_(self.online_mask)
        return True

    def mark_changed(self, positions: th.Tensor) -> None:
        """Nothing to track: the next :meth:`maintain` reads the new mask."""


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
