"""Benchmark harness: the paper's comparisons (Tables 1-3, Figures 2-4) on a step budget that fits a machine.

Run ``python -m sb3_dst.benchmark --help``. Subcommands:

- ``run``: algorithms × environments × seeds, each run in its own single-threaded process, ``--jobs`` at a time,
  evaluations appended to CSV as they come, resumable (finished runs are skipped, interrupted ones resume from
  their last checkpoint, ``--checkpoint-freq``). A call that starts a run appends its exact command to
  ``OUT/commands.txt``.
- ``ablation interval|sparsity``: DS-TD3 with e ∈ {200, 500, 1000, 2000}, or sparsity ∈ {0.25, 0.5, 0.8}, next
  to dense TD3 (the paper's Figures 3 and 4).
- ``report``: Markdown tables (final return, LCA, network size, FLOPs ratio), rliable-style aggregates (IQM, mean,
  probability of improvement with 95 % stratified-bootstrap intervals, performance profile, sample-efficiency
  curve), the steps to reach the dense baseline's final return, and learning-curve PNGs.
"""

from sb3_dst.benchmark.report import write_report
from sb3_dst.benchmark.runner import plan_runs, run_campaign
from sb3_dst.benchmark.specs import ALGORITHMS, AlgoSpec, RunConfig

__all__ = ["ALGORITHMS", "AlgoSpec", "RunConfig", "plan_runs", "run_campaign", "write_report"]
