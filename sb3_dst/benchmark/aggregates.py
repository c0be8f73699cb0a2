"""Aggregate statistics of a benchmark in the manner of rliable (Agarwal et al., "Deep Reinforcement Learning at
the Edge of the Statistical Precipice", NeurIPS 2021), written with NumPy only.

Why not rliable itself: rliable 1.2.0 (the current release) requires ``arch < 8``; pip then picks arch 7.2.0,
which fails to import with pandas 3 (``deprecate_kwarg() missing 1 required positional argument``), and pandas 3 is
what a fresh install of this project gets (checked 2026-12-04). ``benchmarks/rliable_crosscheck.py`` compares the
functions below with rliable in an environment pinned to ``pandas<3``. The definitions are rliable's:

- **IQM**: the interquartile mean, the mean of the runs left after removing the lowest and the highest 25 %
  (``floor(0.25 n)`` runs at each end, as ``scipy.stats.trim_mean(x, 0.25)``) of all runs pooled over the tasks.
  With fewer than 4 runs nothing is trimmed and the IQM is the mean.
- **Mean**: the mean over tasks of each task's mean over runs.
- **Stratified bootstrap**: a replicate resamples, with replacement, the runs of each task separately (each task
  keeps its number of runs); the 95 % interval is the 2.5th to 97.5th percentile of the statistic over the
  replicates (percentile bootstrap).
- **Probability of improvement** P(X > Y): per task, the Mann-Whitney U statistic over the pairs of one run of X
  and one of Y, ``mean(1[x > y] + 0.5 · 1[x = y])``; averaged over tasks. Its interval resamples the runs of X
  and of Y independently within each task.
- **Performance profile**: the fraction of runs whose score exceeds τ, per task, averaged over tasks, for each τ.

A fixed seed (:data:`BOOTSTRAP_SEED`) and a modest number of replicates (:data:`BOOTSTRAP_REPS`) make a report
regenerate identically, in well under a second per statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BOOTSTRAP_REPS",
    "BOOTSTRAP_SEED",
    "CONFIDENCE",
    "Interval",
    "bootstrap_curve",
    "first_step_reaching",
    "iqm",
    "learning_speed",
    "mean_of_task_means",
    "performance_profile",
    "probability_of_improvement",
    "stratified_bootstrap",
]

#: Bootstrap replicates per interval (rliable's default is 50,000; 2,000 keeps a report fast, and the interval
#: bounds move by a few tenths of a percent of their width between seeds at this count).
BOOTSTRAP_REPS = 2000
#: Seed of every bootstrap: a report regenerates identically.
BOOTSTRAP_SEED = 0
#: Coverage of every interval.
CONFIDENCE = 0.95

#: Scores of one method: one 1-D array of per-run scores per task (tasks may have different numbers of runs).
TaskScores = Sequence[np.ndarray]
#: A statistic of resampled scores: one array per task, of shape ``(reps, runs, *rest)``, to shape ``(reps, *rest)``.
Statistic = Callable[[list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval (``low`` ≤ ``high``; equal with one run per task)."""

    value: float
    low: float
    high: float

    def format(self, fmt: str) -> str:
        """``value [low, high]`` with ``fmt`` applied to each number."""
        return f"{format(self.value, fmt)} [{format(self.low, fmt)}, {format(self.high, fmt)}]"


def _check_tasks(tasks: TaskScores, what: str) -> list[np.ndarray]:
    arrays = [np.asarray(task, dtype=float) for task in tasks]
    if not arrays:
        raise ValueError(f"{what}: no task to aggregate")
    for i, array in enumerate(arrays):
        if array.ndim < 1 or array.shape[0] == 0:
            raise ValueError(f"{what}: task {i} has no run")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{what}: task {i} has a score that is not a finite number: {array.tolist()}")
    return arrays


def _iqm_batched(tasks: list[np.ndarray]) -> np.ndarray:
    """IQM over the runs (axis 1) of all tasks pooled: ``(reps, runs_j, *rest)`` -> ``(reps, *rest)``."""
    pooled = np.sort(np.concatenate(tasks, axis=1), axis=1)
    n = pooled.shape[1]
    cut = int(0.25 * n)
    return pooled[:, cut : n - cut].mean(axis=1)


def _mean_batched(tasks: list[np.ndarray]) -> np.ndarray:
    """Mean over tasks of each task's mean over runs: ``(reps, runs_j, *rest)`` -> ``(reps, *rest)``."""
    return np.mean([task.mean(axis=1) for task in tasks], axis=0)


def iqm(tasks: TaskScores) -> float:
    """Interquartile mean of the runs of all tasks pooled (one task: pass ``[scores]``)."""
    return float(_iqm_batched([a[None] for a in _check_tasks(tasks, "IQM")])[0])


def mean_of_task_means(tasks: TaskScores) -> float:
    """Mean over tasks of the mean over each task's runs."""
    return float(_mean_batched([a[None] for a in _check_tasks(tasks, "mean")])[0])


STATISTICS: dict[str, Statistic] = {"iqm": _iqm_batched, "mean": _mean_batched}


def _percentiles(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return low, high


def _resample(tasks: list[np.ndarray], rng: np.random.Generator, reps: int) -> list[np.ndarray]:
    """``reps`` stratified resamples: each task's runs drawn with replacement, as many as it has."""
    return [task[rng.integers(0, len(task), size=(reps, len(task)))] for task in tasks]


def stratified_bootstrap(
    tasks: TaskScores, statistic: str | Statistic = "iqm", reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> Interval:
    """The statistic (``"iqm"``, ``"mean"`` or a batched function, see :data:`Statistic`) of per-run scores, one
    1-D array per task, with its stratified-bootstrap 95 % interval."""
    func = STATISTICS[statistic] if isinstance(statistic, str) else statistic
    arrays = _check_tasks(tasks, "bootstrap")
    if reps < 1:
        raise ValueError(f"bootstrap needs at least one replicate, got reps={reps}")
    value = float(func([a[None] for a in arrays])[0])
    samples = func(_resample(arrays, np.random.default_rng(seed), reps))
    low, high = _percentiles(samples)
    return Interval(value, float(low), float(high))


def bootstrap_curve(
    tasks: TaskScores, statistic: str = "iqm", reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A statistic at each point of a curve, with its 95 % band: ``tasks`` holds one ``(runs, points)`` array per
    task (all with the same points); returns ``(value, low, high)``, each of shape ``(points,)``."""
    arrays = _check_tasks(tasks, "curve")
    if any(a.ndim != 2 for a in arrays) or len({a.shape[1] for a in arrays}) != 1:
        raise ValueError(f"curve: every task needs a (runs, points) array with the same points, got "
                         f"{[a.shape for a in arrays]}")  # fmt: skip
    func = STATISTICS[statistic]
    value = func([a[None] for a in arrays])[0]
    low, high = _percentiles(func(_resample(arrays, np.random.default_rng(seed), reps)))
    return value, low, high


def _improvement(xs: list[np.ndarray], ys: list[np.ndarray]) -> np.ndarray:
    """P(X > Y) averaged over tasks, batched: ``(reps, m_j)`` and ``(reps, n_j)`` per task -> ``(reps,)``."""
    per_task = []
    for x, y in zip(xs, ys, strict=True):
        greater = (x[:, :, None] > y[:, None, :]).mean(axis=(1, 2))
        ties = (x[:, :, None] == y[:, None, :]).mean(axis=(1, 2))
        per_task.append(greater + 0.5 * ties)
    return np.mean(per_task, axis=0)


def probability_of_improvement(
    x: TaskScores, y: TaskScores, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> Interval:
    """P(X > Y): the probability that a run of method X on a task scores above a run of method Y on that task,
    averaged over tasks, with its 95 % interval (runs of X and of Y resampled independently within each task).
    ``x`` and ``y`` hold one 1-D array of per-run scores per task, in the same task order."""
    xs, ys = _check_tasks(x, "probability of improvement, X"), _check_tasks(y, "probability of improvement, Y")
    if len(xs) != len(ys):
        raise ValueError(f"probability of improvement: X has {len(xs)} tasks, Y has {len(ys)}")
    value = float(_improvement([a[None] for a in xs], [b[None] for b in ys])[0])
    rng = np.random.default_rng(seed)
    samples = _improvement(_resample(xs, rng, reps), _resample(ys, rng, reps))
    low, high = _percentiles(samples)
    return Interval(value, float(low), float(high))


def performance_profile(
    tasks: TaskScores, taus: np.ndarray, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fraction of runs scoring above each τ of ``taus`` (per task, averaged over tasks) with its 95 % band:
    ``(value, low, high)``, each of the shape of ``taus``."""
    taus = np.asarray(taus, dtype=float)

    def fraction(resampled: list[np.ndarray]) -> np.ndarray:
        return np.mean([(task[..., None] > taus).mean(axis=1) for task in resampled], axis=0)

    arrays = _check_tasks(tasks, "performance profile")
    value = fraction([a[None] for a in arrays])[0]
    low, high = _percentiles(fraction(_resample(arrays, np.random.default_rng(seed), reps)))
    return value, low, high


def first_step_reaching(timesteps: Sequence[float], returns: Sequence[float], target: float) -> float:
    """The first evaluation step whose return is at least ``target``; ``inf`` if no evaluation reaches it."""
    steps, values = np.asarray(timesteps, dtype=float), np.asarray(returns, dtype=float)
    if steps.shape != values.shape:
        raise ValueError(f"{len(steps)} evaluation steps but {len(values)} returns")
    reached = np.flatnonzero(values >= target)
    return float(steps[reached[0]]) if len(reached) else float("inf")


def learning_speed(steps: Sequence[float], reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED) -> Interval:
    """The median over seeds of the steps to reach a target (``inf`` for a seed that never does) with a 95 %
    bootstrap interval over seeds. A median or bound that is ``inf`` means "not reached within the budget".

    The interval takes order statistics of the replicates without interpolating (the lower bound rounds down,
    the upper one up), so an ``inf`` never turns into NaN."""
    values = np.asarray(steps, dtype=float)
    if values.ndim != 1 or len(values) == 0 or np.isnan(values).any():
        raise ValueError(f"learning speed: needs one step count (or inf) per seed, got {values.tolist()}")
    medians = np.sort(np.median(values[np.random.default_rng(seed).integers(0, len(values), (reps, len(values)))],
                                axis=1))  # fmt: skip
    tail = (1 - CONFIDENCE) / 2
    low = medians[int(np.floor(tail * (reps - 1)))]
    high = medians[int(np.ceil((1 - tail) * (reps - 1)))]
    return Interval(float(np.median(values)), float(low), float(high))
