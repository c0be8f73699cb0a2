"""Topology updaters: how the sparse topology of a DST algorithm changes during training (JaxPruner's shape).

One small object per method; each algorithm class names its own (:attr:`~sb3_dst.common.dst.DSTMixin.default_updater`):

- :class:`Evolve` (DS-*): drop and grow every e gradient steps (Algorithm 2 of Sokar et al.). Where connections
  grow is a :class:`Growth`, a scoring function: uniformly at random (SET, the paper) or the largest |∂L/∂W| of
  the batch (RigL).
- :class:`Static` (Static-*): the topology never changes (the paper's baseline).
- :class:`Prune` (Pruned-*): dense to sparse by gradual magnitude pruning (Zhu & Gupta's cubic schedule).

An updater is a frozen dataclass whose fields are its keywords. That is their only declaration: the algorithms take
them flat (``DSTD3(..., drop_fraction=0.05, evolution_interval=1000)``, as rl-zoo3 files and Optuna samplers pass
them) and read names, defaults and checks from here. An updater holds the validated values and owns

- its **schedule**: when the topology changes (:meth:`Updater.schedule`) and how much (η_t, the cubic sparsity);
- its **step**: one change of one network's sparse layers (:meth:`Updater.step`) with the pure functions of
  :mod:`sb3_dst.common.topology`: masks, weights, optimizer state of the changed connections, and the bookkeeping
  of the target layers (Algorithm 3).

What a run has done so far (gradient steps, evolutions, the last η) stays on the model, which saves it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch as th

from sb3_dst.common.masking import MASK_NAME, SparseLayer, settle_absent_state
from sb3_dst.common.topology import (
    DROP_FRACTION_SCHEDULES,
    GROWTH_CRITERIA,
    EvolutionSchedule,
    OnlineMaskTarget,
    TargetSparsity,
    drop_and_grow,
    prune_smallest,
    pruning_connection_count,
    reset_optimizer_state,
    scheduled_drop_fraction,
)

__all__ = ["GROWTH", "Evolve", "Growth", "Prune", "Static", "StepResult", "Updater"]

#: Default pruning window, as fractions of the run's gradient steps (Graesser et al. and rigl: 20 % to 80 %).
DEFAULT_PRUNING_WINDOW = (0.2, 0.8)

#: Algorithm 3 state of a target layer (:class:`TargetSparsity`, or :class:`OnlineMaskTarget` for RLx2's masking).
TargetCopy = TargetSparsity | OnlineMaskTarget


def check_steps(value: Any, key: str, minimum: int) -> int:
    """``value`` as an ``int`` >= ``minimum`` (gradient steps); a ``ValueError`` naming ``key`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(value: Any, key: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return str(value)


# --- Growth criteria ------------------------------------------------------------------------------------------


def gradient_magnitude(layer: SparseLayer) -> th.Tensor:
    """|∂L/∂W| of a layer, every entry (RigL's growth criterion); zeros if no gradient was computed."""
    grad = layer.weight.grad
    if grad is None:
        return th.zeros_like(layer.weight)
    return grad.detach().abs()


@dataclass(frozen=True)
class Growth:
    """Where :class:`Evolve` grows connections: the absent positions with the largest ``score`` (ties broken
    arbitrarily), or uniformly at random when ``score`` is ``None``.

    :param name: the value of the ``growth`` keyword.
    :param score: layer -> score of every entry of its weight (larger grows first). It is read at the gradient step
        of an evolution, right before the masked optimizer step.
    :param needs_dense_gradient: whether ``score`` reads the weight gradient at absent positions too (the sparse
        backend then computes it densely at that step).
    """

    name: str
    score: Callable[[SparseLayer], th.Tensor] | None = None
    needs_dense_gradient: bool = False


#: Values of ``growth``: uniformly random (SET, the paper) or largest |gradient| (RigL).
GROWTH: dict[str, Growth] = {"random": Growth("random"), "gradient": Growth("gradient", gradient_magnitude, True)}
assert tuple(GROWTH) == GROWTH_CRITERIA


# --- Updaters -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepResult:
    """What one :meth:`Updater.step` did to a network.

    :param fraction: fraction of the network's connections that moved (Evolve) or were pruned (Prune).
    :param touched: whether masks may have changed (the sparse layers then rebuild their indices).
    :param drop_fraction: η_t of this step (Evolve only).
    """

    fraction: float
    touched: bool
    drop_fraction: float | None = None


@dataclass(frozen=True)
class Updater:
    """How a topology changes. Subclasses are frozen dataclasses whose fields are their keywords (checked in
    ``__post_init__``, whose errors name the keyword)."""

    #: The algorithms' ``topology_mode``: "evolve", "static" or "prune".
    mode: ClassVar[str]
    #: Whether the topology evolves by drop and growth (the algorithms' ``dynamic``).
    dynamic: ClassVar[bool] = False
    #: Whether the networks start dense (the updater brings them to their budgets).
    starts_dense: ClassVar[bool] = False
    #: Whether a step changes connection counts (FLOPs spent so far are then checkpointed before it).
    changes_counts: ClassVar[bool] = False

    @classmethod
    def keywords(cls) -> tuple[str, ...]:
        """Names of the keywords, in declaration order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    def values(self) -> dict[str, Any]:
        """Keyword -> value."""
        return {name: getattr(self, name) for name in self.keywords()}

    def configured(self, algorithm: str, **given: Any) -> Updater:
        """A copy with the ``given`` keywords, checked. ``None`` keeps a keyword's value (its default).

        :param algorithm: the algorithm's name, for messages.
        :raises TypeError: for a keyword of another updater (e.g. ``drop_fraction`` for a Static-* algorithm).
        :raises ValueError: for a value out of range; the message names the keyword.
        """
        accepted = self.keywords()
        for key, value in given.items():
            if value is not None and key not in accepted:
                raise TypeError(f"{algorithm} takes no {key!r}: {self.why_not(algorithm, key)}")
        return dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None and k in accepted})

    def why_not(self, algorithm: str, key: str) -> str:
        """Why this updater's algorithm takes no ``key`` (a keyword of another updater)."""
        raise NotImplementedError

    def schedule(self, horizon: int | None) -> EvolutionSchedule:
        """When the topology changes. :param horizon: the gradient steps the run is planned to reach (or None)."""
        return EvolutionSchedule(0)  # never

    def check_horizon(self, algorithm: str, horizon: int | None) -> str | None:
        """Before a run: raise a ``ValueError`` if the schedule needs a horizon that is unknown; return a warning
        if the run stops before the schedule ends."""
        return None

    @property
    def growth_score(self) -> Callable[[SparseLayer], th.Tensor] | None:
        """Growth criterion read at the gradient step before a change (see :class:`Growth`); None if none is."""
        return None

    @property
    def needs_dense_gradient(self) -> bool:
        """Whether the gradient step before a change must compute weight gradients at absent positions."""
        return False

    def step(
        self,
        network: str,
        layers: Sequence[SparseLayer],
        targets: Sequence[Sequence[TargetCopy]],
        optimizer: th.optim.Optimizer,
        t: int,
        horizon: int | None,
        scores: Sequence[th.Tensor] | None = None,
    ) -> StepResult:
        """Change the topology of one network once, in place.

        :param network: its name (for messages).
        :param layers: its sparse layers (weights and ``weight_mask`` buffers change).
        :param targets: the Algorithm 3 state of each layer's target copies (told which connections changed).
        :param optimizer: the network's optimizer (its state of changed connections is reset).
        :param t: the gradient step just done.
        :param horizon: the gradient steps the run is planned to reach (or None).
        :param scores: growth scores of each layer, read at this gradient step (see :class:`Growth`).
        """
        raise NotImplementedError

    def records(self, evolutions: int, changed: dict[str, float], drop_fraction: float) -> list[tuple[str, Any]]:
        """The ``dst/`` metrics of the topology's changes so far."""
        return [("dst/evolutions", evolutions), *((f"dst/{name}_changed_fraction", f) for name, f in changed.items())]


@dataclass(frozen=True)
class Evolve(Updater):
    """Topological evolution (Algorithm 2) every ``evolution_interval`` gradient steps, up to ``evolution_end``:
    each sparse layer drops the fraction η_t of its connections closest to zero and grows as many where ``growth``
    says, at zero weight; the optimizer state of changed connections is reset.

    :param drop_fraction: η in (0, 1), fraction of each layer's connections replaced per evolution.
    :param evolution_interval: e, gradient steps between evolutions.
    :param growth: ``"random"`` (SET, the paper) or ``"gradient"`` (RigL: largest |∂L/∂W| of the batch), see
        :data:`GROWTH`.
    :param drop_fraction_schedule: ``"constant"`` (η at every evolution, the paper) or ``"cosine"``
        (η_t = η ½(1 + cos(π t / T)), T = ``evolution_end`` or the run's gradient steps; RigL).
    :param evolution_end: gradient step after which the topology is frozen (``None``: never).
    """

    drop_fraction: float = 0.05
    evolution_interval: int = 1000
    growth: str = "random"
    drop_fraction_schedule: str = "constant"
    evolution_end: int | None = None

    mode = "evolve"
    dynamic = True

    def __post_init__(self) -> None:
        _set(self, "evolution_interval", check_steps(self.evolution_interval, "evolution_interval (e)", minimum=1))
        eta = self.drop_fraction
        if not (isinstance(eta, numbers.Real) and not isinstance(eta, bool) and 0.0 < eta < 1.0):
            raise ValueError(f"drop_fraction (η) must be in (0, 1), got {eta!r}")
        _set(self, "drop_fraction", float(eta))
        _set(self, "growth", check_choice(self.growth, "growth", GROWTH_CRITERIA))
        schedule = check_choice(self.drop_fraction_schedule, "drop_fraction_schedule", DROP_FRACTION_SCHEDULES)
        _set(self, "drop_fraction_schedule", schedule)
        if self.evolution_end is not None:
            _set(self, "evolution_end", check_steps(self.evolution_end, "evolution_end", 1))

    def why_not(self, algorithm: str, key: str) -> str:
        return f"{key!r} belongs to gradual magnitude pruning ({algorithm.replace('DS', 'Pruned')})"

    @property
    def growth_criterion(self) -> Growth:
        return GROWTH[self.growth]

    @property
    def growth_score(self) -> Callable[[SparseLayer], th.Tensor] | None:
        return self.growth_criterion.score

    @property
    def needs_dense_gradient(self) -> bool:
        return self.growth_criterion.needs_dense_gradient

    def schedule(self, horizon: int | None) -> EvolutionSchedule:
        return EvolutionSchedule(self.evolution_interval, end=self.evolution_end)

    def horizon(self, planned: int | None) -> int | None:
        """T of the cosine drop fraction: ``evolution_end``, else the gradient steps the run is planned to reach."""
        return self.evolution_end if self.evolution_end is not None else planned

    def drop_fraction_at(self, t: int, planned: int | None) -> float:
        """η_t, the drop fraction of an evolution at gradient step ``t``."""
        return scheduled_drop_fraction(self.drop_fraction, self.drop_fraction_schedule, t, self.horizon(planned))

    def check_horizon(self, algorithm: str, horizon: int | None) -> str | None:
        if horizon is None and self.drop_fraction_schedule == "cosine" and self.evolution_end is None:
            raise ValueError(
                "drop_fraction_schedule='cosine' decays η over T gradient steps: with train_freq in episodes T is "
                "not known in advance, so pass evolution_end (the gradient step where η reaches 0)"
            )
        return None

    def step(
        self,
        network: str,
        layers: Sequence[SparseLayer],
        targets: Sequence[Sequence[TargetCopy]],
        optimizer: th.optim.Optimizer,
        t: int,
        horizon: int | None,
        scores: Sequence[th.Tensor] | None = None,
    ) -> StepResult:
        eta = self.drop_fraction_at(t, horizon)
        if self.growth_criterion.score is None:
            layer_scores: Sequence[th.Tensor | None] = [None] * len(layers)
        elif scores is None:
            raise RuntimeError(
                f"growth={self.growth!r} needs the scores of the {network}'s last batch; the evolution is "
                "triggered by train() (through DSTCallback), which keeps them"
            )
        else:
            layer_scores = scores
        moved = total = 0
        for layer, copies, score in zip(layers, targets, layer_scores, strict=True):
            mask = getattr(layer, MASK_NAME)
            dropped, grown, changed = drop_and_grow(layer.weight, mask, eta, grow_scores=score)
            reset_optimizer_state(optimizer, layer.weight, dropped | grown)
            for copy in copies:
                copy.mark_changed(changed)
            moved += int(changed.sum()) // 2
            total += int(mask.sum())
        settle_absent_state(optimizer, layers)  # dropped connections: zero first moment, unit second moment
        return StepResult(moved / max(total, 1), touched=True, drop_fraction=eta)

    def records(self, evolutions: int, changed: dict[str, float], drop_fraction: float) -> list[tuple[str, Any]]:
        return [*super().records(evolutions, changed, drop_fraction), ("dst/drop_fraction", drop_fraction)]


@dataclass(frozen=True)
class Static(Updater):
    """A fixed topology: the sparse networks never change (the paper's Static-* baselines). No keywords."""

    mode = "static"

    def why_not(self, algorithm: str, key: str) -> str:
        return f"it has a fixed topology; use {algorithm.replace('Static', 'DS')} to evolve it"

    def step(
        self,
        network: str,
        layers: Sequence[SparseLayer],
        targets: Sequence[Sequence[TargetCopy]],
        optimizer: th.optim.Optimizer,
        t: int,
        horizon: int | None,
        scores: Sequence[th.Tensor] | None = None,
    ) -> StepResult:
        return StepResult(0.0, touched=False)

    def records(self, evolutions: int, changed: dict[str, float], drop_fraction: float) -> list[tuple[str, Any]]:
        return []


@dataclass(frozen=True)
class Prune(Updater):
    """Gradual magnitude pruning (Zhu & Gupta): the networks start dense; every ``evolution_interval`` gradient
    steps from ``pruning_start`` on, each sparse layer keeps its largest-magnitude connections, as many as the cubic
    schedule ``s_t = s (1 − (1 − p)³)``, ``p = (t − pruning_start) / (pruning_end − pruning_start)`` allows, down to
    its final budget. Pruned connections never come back.

    :param evolution_interval: gradient steps between two pruning steps.
    :param pruning_start: gradient step of the first pruning (``None``: 20 % of the run's gradient steps).
    :param pruning_end: gradient step at which the final sparsity is reached (``None``: 80 % of the run).
    """

    evolution_interval: int = 1000
    pruning_start: int | None = None
    pruning_end: int | None = None

    mode = "prune"
    starts_dense = True
    changes_counts = True

    def __post_init__(self) -> None:
        _set(self, "evolution_interval", check_steps(self.evolution_interval, "evolution_interval (e)", minimum=1))
        if self.pruning_start is not None:
            _set(self, "pruning_start", check_steps(self.pruning_start, "pruning_start", 0))
        if self.pruning_end is not None:
            _set(self, "pruning_end", check_steps(self.pruning_end, "pruning_end", 1))
        if self.pruning_start is not None and self.pruning_end is not None and self.pruning_end <= self.pruning_start:
            raise ValueError(f"pruning_end ({self.pruning_end}) must be after pruning_start ({self.pruning_start})")

    def why_not(self, algorithm: str, key: str) -> str:
        return f"it prunes by magnitude and never grows connections; {key!r} belongs to the DS-* algorithms"

    def window(self, horizon: int | None) -> tuple[int, int]:
        """``(pruning_start, pruning_end)`` in gradient steps, defaults resolved (20 % and 80 % of ``horizon``)."""
        planned = horizon or 0
        start = self.pruning_start
        if start is None:
            start = math.floor(DEFAULT_PRUNING_WINDOW[0] * planned)
        end = self.pruning_end if self.pruning_end is not None else math.floor(DEFAULT_PRUNING_WINDOW[1] * planned)
        return start, max(end, start + 1)

    def schedule(self, horizon: int | None) -> EvolutionSchedule:
        """Every e gradient steps from ``pruning_start`` on (a layer that holds its final budget stops changing)."""
        return EvolutionSchedule(self.evolution_interval, start=self.window(horizon)[0])

    def check_horizon(self, algorithm: str, horizon: int | None) -> str | None:
        if horizon is None:
            if self.pruning_start is None or self.pruning_end is None:
                raise ValueError(
                    "gradual pruning runs from 20% to 80% of the run's gradient steps by default: with train_freq "
                    "in episodes these are not known in advance, so pass pruning_start and pruning_end (gradient "
                    "steps)"
                )
            return None
        end = self.window(horizon)[1]
        last_step = -(-end // self.evolution_interval) * self.evolution_interval  # first multiple of e >= end
        if last_step <= horizon:
            return None
        return (
            f"{algorithm}: this run ends at gradient step {horizon}, before the pruning step that reaches the final "
            f"sparsity ({last_step}: pruning_end {end} rounded up to a multiple of evolution_interval "
            f"{self.evolution_interval}); lower pruning_end or evolution_interval, or train longer"
        )

    def step(
        self,
        network: str,
        layers: Sequence[SparseLayer],
        targets: Sequence[Sequence[TargetCopy]],
        optimizer: th.optim.Optimizer,
        t: int,
        horizon: int | None,
        scores: Sequence[th.Tensor] | None = None,
    ) -> StepResult:
        """Each sparse layer keeps the :func:`~sb3_dst.common.topology.pruning_connection_count` largest-magnitude
        connections for step ``t``; pruned ones leave the mask (weight and optimizer state zeroed) and the target
        copies' budget k follows."""
        start, end = self.window(horizon)
        removed_total = before = 0
        for layer, copies in zip(layers, targets, strict=True):
            mask = getattr(layer, MASK_NAME)
            budget = getattr(layer, "connection_budget", int(mask.sum()))
            n_keep = pruning_connection_count(layer.weight.numel(), budget, t, start, end)
            before += int(mask.sum())
            removed = prune_smallest(layer.weight, mask, n_keep)
            n_removed = int(removed.sum())
            if n_removed:
                reset_optimizer_state(optimizer, layer.weight, removed)
                for copy in copies:
                    copy.k = int(mask.sum())
                    copy.mark_changed(removed)
            removed_total += n_removed
        if removed_total:
            settle_absent_state(optimizer, layers)
        return StepResult(removed_total / max(before, 1), touched=bool(removed_total))


def _set(updater: Updater, name: str, value: Any) -> None:
    """Store a checked value in a frozen updater (from ``__post_init__`` only)."""
    object.__setattr__(updater, name, value)


#: Every keyword of an updater, in declaration order (Evolve's, then Prune's others).
UPDATER_KEYWORDS: tuple[str, ...] = tuple(dict.fromkeys((*Evolve.keywords(), *Prune.keywords())))
