"""Training speed of each finished benchmark run over time: environment steps per second between evaluations.

Reads ``runs/*/evaluations.csv`` (``wall_time`` minus ``eval_time`` at each evaluation) of a ``sb3_dst.benchmark``
output directory and prints one row per run: the rate over each interval after ``learning_starts``, then the
median rate over the second half of the run. Slow neighbours on the machine lower single intervals; a
steady fall that only some algorithms show is theirs (see ``benchmarks/denormals.py``).

    python benchmarks/run_speed.py benchmarks/results/td3_100k > benchmarks/results/td3_100k/run_speed.txt
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path


def rates(evaluations: Path, learning_starts: int) -> list[tuple[int, float]]:
    """(timestep, steps/s over the interval ending there) for each interval after ``learning_starts``."""
    out, previous = [], None
    with evaluations.open() as f:
        for row in csv.DictReader(f):
            step, train_time = int(row["timesteps"]), float(row["wall_time"]) - float(row["eval_time"])
            if previous is not None and previous[0] >= learning_starts:
                out.append((step, (step - previous[0]) / max(train_time - previous[1], 1e-9)))
            previous = (step, train_time)
    return out


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("benchmarks/results/td3_100k")
    learning_starts = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    runs = sorted(d for d in (out_dir / "runs").iterdir() if (d / "done.json").exists())
    if not runs:
        sys.exit(f"error: no finished run under {out_dir / 'runs'}")
    print(f"steps/s between evaluations after {learning_starts} steps; last column: median over the second half")
    for run in runs:
        series = rates(run / "evaluations.csv", learning_starts)
        second_half = [r for step, r in series if step > series[-1][0] / 2]
        row = " ".join(f"{r:4.0f}" for _, r in series)
        print(f"{run.name:36s} {row}   | {statistics.median(second_half):4.0f}")


if __name__ == "__main__":
    main()
