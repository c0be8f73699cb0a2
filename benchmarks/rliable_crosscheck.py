"""Check ``sb3_dst.benchmark.aggregates`` against rliable itself on random score tables.

rliable 1.2.0 cannot be imported next to pandas 3 (it needs ``arch < 8``; arch 7.2.0 fails with pandas 3), so the report
computes its statistics with NumPy; this script shows they are rliable's. Run it in a separate environment that
has rliable and only NumPy besides (the aggregates module imports nothing else, and is loaded by its path):

    python -m venv /tmp/rliable-env
    /tmp/rliable-env/bin/pip install rliable==1.2.0 "pandas<3" "arch<8"
    /tmp/rliable-env/bin/python benchmarks/rliable_crosscheck.py > benchmarks/results/rliable_crosscheck.txt

Point estimates (IQM, mean, probability of improvement, performance profile) must agree to rounding. Bootstrap
intervals come from different random draws: each of rliable's bounds must lie between our bootstrap's quantiles at
levels 0.5 percentage points either side of its own (2.0-3.0 % for the lower bound, 97.0-98.0 % for the upper),
which allows for Monte Carlo error at 50,000 replicates also where the statistic takes few values (integer scores).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from rliable import library as rly
from rliable import metrics

PATH = Path(__file__).resolve().parents[1] / "sb3_dst" / "benchmark" / "aggregates.py"
spec = importlib.util.spec_from_file_location("aggregates", PATH)
assert spec is not None and spec.loader is not None
agg = importlib.util.module_from_spec(spec)
sys.modules["aggregates"] = agg
spec.loader.exec_module(agg)

REPS = 50_000
SLACK = 0.5  # percentage points of quantile level either side of 2.5 and 97.5


def tables(rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, X, Y): runs × tasks score matrices of two methods."""
    return [
        ("3 runs x 2 tasks, normal", rng.normal(1.0, 0.3, (3, 2)), rng.normal(0.9, 0.3, (3, 2))),
        ("5 runs x 3 tasks, normal", rng.normal(1.0, 0.3, (5, 3)), rng.normal(0.9, 0.3, (5, 3))),
        ("8 runs x 1 task, integers (ties)", rng.integers(0, 4, (8, 1)).astype(float),
         rng.integers(0, 4, (8, 1)).astype(float)),
    ]  # fmt: skip


def main() -> int:
    from importlib.metadata import version

    print(", ".join(f"{name} {version(name)}" for name in ("rliable", "arch", "pandas", "numpy")))
    failures = 0
    for name, x, y in tables(np.random.default_rng(2026)):
        xs, ys = [x[:, j] for j in range(x.shape[1])], [y[:, j] for j in range(y.shape[1])]
        print(f"== {name}")
        points = {
            "IQM": (agg.iqm(xs), float(metrics.aggregate_iqm(x))),
            "mean": (agg.mean_of_task_means(xs), float(metrics.aggregate_mean(x))),
            "P(X > Y)": (agg.probability_of_improvement(xs, ys).value, float(metrics.probability_of_improvement(x, y))),
        }
        for what, (ours, theirs) in points.items():
            ok = abs(ours - theirs) < 1e-12
            failures += not ok
            print(f"{what:10s} ours {ours:.6f}  rliable {theirs:.6f}  {'same' if ok else 'DIFFERENT'}")
        taus = np.linspace(x.min() - 0.1, x.max() + 0.1, 25)
        profile, _ = rly.create_performance_profile({"x": x}, taus)
        gap = float(np.max(np.abs(profile["x"] - agg.performance_profile(xs, taus)[0])))
        failures += gap > 1e-12
        print(f"profile    largest difference over {len(taus)} τ: {gap:.2e}")
        rng = np.random.default_rng(agg.BOOTSTRAP_SEED)
        iqm_samples = agg.STATISTICS["iqm"](agg._resample(xs, rng, REPS))
        poi_samples = agg._improvement(agg._resample(xs, rng, REPS), agg._resample(ys, rng, REPS))
        for what, samples, func, data in [
            ("IQM", iqm_samples, lambda s: np.array([metrics.aggregate_iqm(s)]), {"x": x}),
            ("P(X > Y)", poi_samples, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]),
             {"xy": (x, y)}),
        ]:  # fmt: skip
            _, intervals = rly.get_interval_estimates(data, func, reps=REPS)
            low, high = next(iter(intervals.values())).ravel()
            lo_range = np.percentile(samples, [2.5 - SLACK, 2.5 + SLACK])
            hi_range = np.percentile(samples, [97.5 - SLACK, 97.5 + SLACK])
            ours = np.percentile(samples, [2.5, 97.5])
            ok = lo_range[0] <= low <= lo_range[1] and hi_range[0] <= high <= hi_range[1]
            failures += not ok
            print(f"{what:10s} 95 % CI ours [{ours[0]:.4f}, {ours[1]:.4f}]  rliable [{low:.4f}, {high:.4f}]  "
                  f"{'agree' if ok else 'DISAGREE'} (ours at 2.0-3.0 %: [{lo_range[0]:.4f}, {lo_range[1]:.4f}], "
                  f"97.0-98.0 %: [{hi_range[0]:.4f}, {hi_range[1]:.4f}]; {REPS:,} replicates)")  # fmt: skip
    print("all agree" if not failures else f"{failures} disagreements")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
