"""Training speed of each finished benchmark run over time: environment steps per second between evaluations.

Reads ``runs/*/evaluations.csv`` (``wall_time`` minus ``eval_time`` at each evaluation) of a ``sb3_dst.benchmark``
output directory and prints one row per finished run: the rate over each interval after the run's
``learning_starts``, then the median rate over the second half of the run. Slow neighbours on the machine lower
single intervals; a steady fall that only some algorithms show is theirs (see ``benchmarks/denormals.py``).

    python benchmarks/run_speed.py benchmarks/results/td3_100k > benchmarks/results/td3_100k/run_speed.txt
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from sb3_dst.benchmark.report import read_evaluations
from sb3_dst.benchmark.specs import RunConfig
from sb3_dst.benchmark.worker import CONFIG, DONE


def rates(run_dir: Path) -> list[tuple[int, float]]:
    """(timestep, steps/s over the interval ending there) for each interval after the run's ``learning_starts``."""
    config = RunConfig.from_json(json.loads((run_dir / CONFIG).read_text()))
    learning_starts = int(config.hyperparams.get("learning_starts", 0))
    evals = read_evaluations(run_dir)
    steps, train_time = evals["timesteps"], evals["wall_time"] - evals["eval_time"]
    return [
        (int(steps[i]), (steps[i] - steps[i - 1]) / max(train_time[i] - train_time[i - 1], 1e-9))
        for i in range(1, len(steps))
        if steps[i - 1] >= learning_starts
    ]


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("benchmarks/results/td3_100k")
    if not (out_dir / "runs").is_dir():
        sys.exit(f"error: {out_dir} is not a benchmark output directory (no runs/ in it)")
    runs = sorted(d for d in (out_dir / "runs").iterdir() if (d / DONE).exists())
    if not runs:
        sys.exit(f"error: no finished run under {out_dir / 'runs'}")
    print("steps/s between evaluations after learning_starts; last column: median over the second half")
    for run in runs:
        series = rates(run)
        second_half = [r for step, r in series if step > series[-1][0] / 2]
        row = " ".join(f"{r:4.0f}" for _, r in series)
        print(f"{run.name:36s} {row}   | {statistics.median(second_half):4.0f}")


if __name__ == "__main__":
    main()
