"""The paper's efficiency metrics (Sokar et al., §4.3): network size S (Eq. 9), training FLOPs and LCA (Eq. 10).

Network size and FLOPs are counted in :mod:`sb3_dst.common.flops` (which the DST algorithms use to log them; its
docstring gives the FLOPs convention) and re-exported here; the learning curve area is defined here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sb3_dst.common.flops import (
    _CACHE,  # noqa: F401 (kept importable from here: tests clear it)
    Convention,
    FlopsBreakdown,
    count_connections,
    flops_breakdown,
    network_size,
    training_flops,
)

__all__ = [
    "Convention",
    "FlopsBreakdown",
    "count_connections",
    "flops_breakdown",
    "learning_curve_area",
    "network_size",
    "training_flops",
]


def learning_curve_area(
    returns: Sequence[float] | np.ndarray,
    total_timesteps: int | None = None,
    eval_freq: int | None = None,
) -> float:
    """Learning curve area, Eq. 10: ``LCA = (1/Δ) Σ_k R(t_k)``.

    ``R(t_k)`` are the evaluation returns (mean over the evaluation episodes) taken during training and ``Δ`` the
    number of training steps. As in the paper, the sum runs over the evaluations, not over every step: with
    evaluations every 5000 steps over Δ = 1M steps this gives Table 1's scale (HalfCheetah ≈ 1.8, i.e. a mean
    evaluation return of about 9000), and generally ``LCA = mean(R) / eval_freq`` when the evaluations cover
    the run evenly. Runs compare on the same scale only with the same evaluation frequency.

    :param returns: evaluation returns in time order.
    :param total_timesteps: Δ; if omitted, ``eval_freq * len(returns)`` (evaluations at eval_freq, 2·eval_freq,
        ..., Δ, as SB3's ``EvalCallback`` and this package's benchmark take them).
    :param eval_freq: steps between evaluations, used only when ``total_timesteps`` is omitted.
    """
    values = np.asarray(returns, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("returns must be a non-empty 1-D sequence")
    if total_timesteps is None:
        if eval_freq is None:
            raise ValueError("give total_timesteps (Δ) or eval_freq")
        total_timesteps = eval_freq * values.size
    if total_timesteps <= 0:
        raise ValueError("total_timesteps must be positive")
    return float(values.sum() / total_timesteps)
