"""The report's rliable-style aggregates, learning speed, seed flags and paper column, against values computed by
hand on small fixed tables (no training: run directories are written by hand)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sb3_dst.benchmark.aggregates import (
    Interval,
    first_step_reaching,
    iqm,
    learning_speed,
    mean_of_task_means,
    performance_profile,
    probability_of_improvement,
    stratified_bootstrap,
)
from sb3_dst.benchmark.report import PAPER_COLUMN, load_runs, seed_shortfalls, write_report
from sb3_dst.benchmark.specs import RunConfig
from sb3_dst.benchmark.worker import EVAL_COLUMNS


def _write_run(
    out: Path, algo: str, seed: int, returns: list[float], env_id: str = "Fake-v0", total: int | None = None,
    finished: bool = True, seconds_per_eval: float = 0.0,
) -> Path:  # fmt: skip
    """A run directory written by hand: evaluations every 100 steps, ``total`` steps (default: 100 per evaluation),
    each evaluation ``seconds_per_eval`` of wall time after the one before."""
    config = RunConfig(algo, env_id, seed, total or 100 * len(returns), 100, 1, {})
    run_dir = out / "runs" / config.run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_json()))
    with open(run_dir / "evaluations.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(EVAL_COLUMNS)
        for i, value in enumerate(returns):
            writer.writerow([100 * (i + 1), value, 0, 1, 0, 0, seconds_per_eval * (i + 1), 0])
    if finished:
        wall_time = seconds_per_eval * len(returns) or 1
        done = {
            "network_size": 100,
            "flops": 1.0,
            "flops_paper": 1.0,
            "wall_time": wall_time,
            "train_steps_per_second": 9,
        }
        (run_dir / "done.json").write_text(json.dumps(done))
    return run_dir


# --- Estimators on hand-computed values ---------------------------------------------------------------------


def test_iqm_trims_a_quarter_of_the_pooled_runs_at_each_end() -> None:
    # 8 runs: the 2 lowest and the 2 highest go, the mean of 3, 4, 5, 6 is 4.5 (the outlier 100 does not count)
    assert iqm([np.array([1, 2, 3, 4, 5, 6, 7, 100])]) == pytest.approx(4.5)
    assert iqm([np.array([1, 2, 3, 4]), np.array([5, 6, 7, 100])]) == pytest.approx(4.5)  # pooled over tasks
    assert iqm([np.array([0, 1, 2, 3, 50])]) == pytest.approx(2.0)  # 5 runs: one cut at each end
    assert iqm([np.array([1, 2, 30])]) == pytest.approx(11.0)  # 3 runs: nothing trimmed, the mean


def test_mean_is_the_mean_of_task_means() -> None:
    assert mean_of_task_means([np.array([1, 3]), np.array([10, 20, 30])]) == pytest.approx((2 + 20) / 2)


def test_probability_of_improvement_counts_pairs_and_half_ties() -> None:
    # task 1: of the 6 pairs (x, y), x > y in 3 (3>2, 5>2, 5>4): 0.5
    # task 2: 2 vs 2 is a tie (0.5), 2>1, 3>2, 3>1: 3.5 / 4 = 0.875
    first = probability_of_improvement([np.array([1, 3, 5])], [np.array([2, 4])])
    assert first.value == pytest.approx(0.5)
    second = probability_of_improvement([np.array([2, 3])], [np.array([2, 1])])
    assert second.value == pytest.approx(0.875)
    both = probability_of_improvement([np.array([1, 3, 5]), np.array([2, 3])], [np.array([2, 4]), np.array([2, 1])])
    assert both.value == pytest.approx((0.5 + 0.875) / 2)
    assert 0.0 <= both.low <= both.value <= both.high <= 1.0
    # one run each, always ahead: every replicate gives 1
    assert probability_of_improvement([np.array([1.0])], [np.array([0.0])]) == Interval(1.0, 1.0, 1.0)


def test_stratified_bootstrap_interval_of_a_two_run_task() -> None:
    # Resampling [0, 1] gives mean 0 (1/4), 0.5 (1/2) or 1 (1/4): the 2.5th and 97.5th percentiles are 0 and 1.
    assert stratified_bootstrap([np.array([0.0, 1.0])], "mean") == Interval(0.5, 0.0, 1.0)
    # One run per task: nothing to resample, the interval is the point.
    assert stratified_bootstrap([np.array([3.0]), np.array([5.0])], "iqm") == Interval(4.0, 4.0, 4.0)


def test_stratified_bootstrap_resamples_within_tasks_and_is_reproducible() -> None:
    # Task A's runs are all 0, task B's all 10: a stratified replicate always holds 2 of each, so the mean of task
    # means is exactly 5 (an unstratified bootstrap over the pooled runs would vary).
    tasks = [np.zeros(2), np.full(2, 10.0)]
    assert stratified_bootstrap(tasks, "mean") == Interval(5.0, 5.0, 5.0)
    scores = [np.array([1.0, 4.0, 2.0, 8.0, 5.0]), np.array([3.0, 9.0, 6.0])]
    first, again = stratified_bootstrap(scores, "iqm"), stratified_bootstrap(scores, "iqm")
    assert first == again  # fixed seed
    assert 1.0 <= first.low < first.value < first.high <= 9.0


def test_performance_profile_averages_each_task_fraction() -> None:
    # task 1 [0.5, 1.5]: above 0 both, above 1 half, above 2 none; task 2 [2.0]: 1, 1, 0 (strictly above τ)
    value, low, high = performance_profile([np.array([0.5, 1.5]), np.array([2.0])], np.array([0.0, 1.0, 2.0]))
    assert value == pytest.approx([1.0, 0.75, 0.0])
    assert np.all(low <= value) and np.all(value <= high)


def test_first_step_reaching_and_learning_speed() -> None:
    steps, returns = [5000, 10000, 15000, 20000], [1.0, 5.0, 4.0, 9.0]
    assert first_step_reaching(steps, returns, 4.5) == 10000  # the first evaluation at or above the target
    assert first_step_reaching(steps, returns, 9.0) == 20000
    assert math.isinf(first_step_reaching(steps, returns, 10.0))  # never
    # median of 10k, 20k and never is 20k; a resample's median is 10k or never with probability 7/27 each
    assert learning_speed([10000, 20000, math.inf]) == Interval(20000.0, 10000.0, math.inf)
    assert learning_speed([300.0, 300.0]) == Interval(300.0, 300.0, 300.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: iqm([]), "no task"),
        (lambda: iqm([np.array([])]), "task 0 has no run"),
        (lambda: stratified_bootstrap([np.array([1.0, float("nan")])]), "not a finite number"),
        (lambda: probability_of_improvement([np.ones(2)], [np.ones(2), np.ones(2)]), "X has 1 tasks, Y has 2"),
        (lambda: stratified_bootstrap([np.ones(2)], reps=0), "at least one replicate"),
        (lambda: learning_speed([]), "one step count"),
        (lambda: first_step_reaching([1, 2], [1.0], 0.0), "2 evaluation steps but 1 returns"),
    ],
)
def test_bad_input_is_a_clear_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --- The report ---------------------------------------------------------------------------------------------


def test_report_normalizes_to_the_dense_baseline(tmp_path: Path) -> None:
    for seed, value in enumerate([10.0, 20.0, 30.0]):  # dense mean 20
        _write_run(tmp_path, "TD3", seed, [value] * 10)
    for seed, value in enumerate([10.0, 30.0, 40.0]):  # normalized 0.5, 1.5, 2.0
        _write_run(tmp_path, "DS-TD3", seed, [value] * 10)
    report = write_report(tmp_path).read_text()
    # IQM of 3 runs = their mean 4/3; P(DS-TD3 > TD3): 10 vs 10/20/30 gives 0.5 + 0 + 0, 30 gives 1 + 1 + 0.5,
    # 40 gives 3: 6 of 9 pairs
    assert "| DS-TD3 | TD3 | 1 | 3 | 1.33 [" in report and "| 0.67 [" in report
    assert "| undecided (CI contains 0.5) |" in report  # 3 seeds each, overlapping
    assert "| TD3 | TD3 | 1 | 3 | 1.00 [" in report and "– (the baseline)" in report
    assert "| Fake-v0 | DS-TD3 | 3 | 27 ± 12 | 27 [" in report  # per task: mean ± std and the interval
    assert (tmp_path / "performance_profile.png").stat().st_size > 10_000
    assert (tmp_path / "sample_efficiency.png").stat().st_size > 10_000
    assert "shaded bands: 95 % stratified-bootstrap confidence intervals" in report
    assert "shaded bands: ± 1 std over seeds" in report
    assert "bars: ± 1 std over seeds (population std); small dots: the seeds" in report  # return vs FLOPs
    assert "bootstrap seed 0" in report and "2,000 replicates" in report
    assert write_report(tmp_path).read_text() == report  # regenerates identically


def test_probability_of_improvement_reading(tmp_path: Path) -> None:
    for seed in range(3):
        _write_run(tmp_path, "TD3", seed, [10.0 + seed] * 10)
        _write_run(tmp_path, "DS-TD3", seed, [20.0 + seed] * 10)  # every run above every dense run
        _write_run(tmp_path, "Static-TD3", seed, [1.0 + seed] * 10)  # every run below
    report = write_report(tmp_path).read_text()
    assert "| DS-TD3 | TD3 | 1 | 3 | 1.91 [" in report  # 21 / 11
    assert "| 1.00 [1.00, 1.00] | above dense |" in report
    assert "| 0.00 [0.00, 0.00] | below dense |" in report


def test_learning_speed_in_the_report(tmp_path: Path) -> None:
    # 12 evaluations every 100 steps; TD3's final return (mean of the last 10) is 20 in both seeds
    for seed in range(2):
        _write_run(tmp_path, "TD3", seed, [0.0, 0.0, *[20.0] * 10])
    _write_run(tmp_path, "DS-TD3", 0, [0.0, 19.0, *[21.0] * 10])  # 90 % (18) at step 200, 100 % at step 300
    _write_run(tmp_path, "DS-TD3", 1, [0.0] * 12)  # never
    for seed in range(2):
        _write_run(tmp_path, "Static-TD3", seed, [0.0] * 12)  # no seed ever reaches
    report = write_report(tmp_path).read_text()
    assert "| Fake-v0 | TD3 | 20 | 300, 300 | 300 [300, 300] | 25 % | 300, 300 | 300 [300, 300] | 25 % |" in report
    assert (
        "| Fake-v0 | DS-TD3 | 20 | 300, never | > 1.2k [300, > 1.2k], 1 of 2 seeds never | > 100 % | "
        "200, never | > 1.2k [200, > 1.2k], 1 of 2 seeds never | > 100 % |"
    ) in report
    assert "| Fake-v0 | Static-TD3 | 20 | never, never | > 1.2k, all 2 seeds never | > 100 % |" in report


def test_a_method_with_fewer_seeds_is_flagged(tmp_path: Path) -> None:
    for seed in range(3):
        _write_run(tmp_path, "TD3", seed, [10.0] * 10)
    for seed in range(2):  # seed 2 never started
        _write_run(tmp_path, "DS-TD3", seed, [10.0] * 10)
    _write_run(tmp_path, "Static-TD3", 0, [10.0] * 10)
    _write_run(tmp_path, "Static-TD3", 1, [10.0] * 3, finished=False)  # still running
    short = seed_shortfalls(load_runs(tmp_path), tmp_path)
    assert short == {("Fake-v0", "DS-TD3"): ([0, 1], [], [2]), ("Fake-v0", "Static-TD3"): ([0], [1], [2])}
    report = write_report(tmp_path).read_text()
    assert "| Fake-v0 | TD3 | 3 | 10 ± 0 |" in report
    assert "| Fake-v0 | DS-TD3 | 2 of 3 ⚠ | 10 ± 0 |" in report
    assert "| Fake-v0 | Static-TD3 | 1 of 3 ⚠ | 10 |" in report
    assert "DS-TD3 on Fake-v0: seeds 0, 1 finished; 2 not run" in report
    assert "Static-TD3 on Fake-v0: seed 0 finished; 1 not finished; 2 not run" in report


def test_all_seeds_alike_are_not_flagged(tmp_path: Path) -> None:
    for algo in ("TD3", "DS-TD3"):
        for seed in range(2):
            _write_run(tmp_path, algo, seed, [10.0] * 10)
    assert seed_shortfalls(load_runs(tmp_path), tmp_path) == {}
    assert "⚠" not in write_report(tmp_path).read_text()


def test_rough_edges_short_runs_and_a_negative_dense_return(tmp_path: Path) -> None:
    _write_run(tmp_path, "TD3", 0, [-5.0, -4.0, -3.0])  # 3 evaluations, dense mean -4
    _write_run(tmp_path, "DS-TD3", 0, [-2.0, -1.0, 0.0])
    report = write_report(tmp_path).read_text()
    assert "mean of the last 10 evaluations per seed where a run has them; 2 of 2 runs have fewer" in report
    assert "averages all of their 3 evaluations" in report
    assert "| Fake-v0 | DS-TD3 | 1 | -1 | –¹ |" in report
    assert "–¹ The dense baseline's mean final return (or LCA) on this task is zero or negative" in report
    assert "Left out of the normalized aggregates: Fake-v0" in report
    assert not (tmp_path / "performance_profile.png").exists()
    # POI needs no normalization, but the across-task table is about normalized scores; the learning speed still
    # has a target: DS-TD3 reaches -4 at its first evaluation (step 100), 90 % of a negative target is not computed
    assert "| Fake-v0 | DS-TD3 | -4 | 100 | 100 [100, 100] | 33 % | –¹ | –¹ | –¹ |" in report


def test_the_paper_column_appears_for_1m_step_runs(tmp_path: Path) -> None:
    _write_run(tmp_path, "TD3", 0, [5576.5] * 10, env_id="HalfCheetah-v5", total=1_000_000)
    _write_run(tmp_path, "DS-TD3", 0, [5730.0] * 10, env_id="HalfCheetah-v5", total=1_000_000)
    _write_run(tmp_path, "DS-TD3", 0, [100.0] * 10, env_id="Pendulum-v1", total=1_000_000)  # not in Table 1
    _write_run(tmp_path, "DS-TD3:sparsity=0.9", 0, [10.0] * 10, env_id="HalfCheetah-v5", total=1_000_000)
    report = write_report(tmp_path).read_text()
    assert "## Side by side with the paper's Table 1" in report and PAPER_COLUMN in report
    assert "| HalfCheetah-v5 | TD3 | 1 | 5576 | 5576 [5576, 5576] | 11153 | 50 % |" in report  # 5576.5 / 11153
    assert "| HalfCheetah-v5 | DS-TD3 | 1 | 5730 | 5730 [5730, 5730] | 11460 | 50 % |" in report
    _write_run(tmp_path, "Static-TD3", 0, [5292.0] * 10, env_id="HalfCheetah-v5", total=1_000_000)
    _write_run(tmp_path, "Static-TD3", 1, [5292.0] * 2, env_id="HalfCheetah-v5", total=1_000_000, finished=False)
    report = write_report(tmp_path).read_text()
    assert "| HalfCheetah-v5 | Static-TD3 | 1 of 2 ⚠ | 5292 | 5292 [5292, 5292] | 10584 | 50 % |" in report
    paper_section = report.split("## Side by side with the paper's Table 1")[1].split("\n## ")[0]
    assert "Pendulum" not in paper_section and "sparsity=0.9" not in paper_section


def test_no_paper_column_below_the_paper_budget(tmp_path: Path) -> None:
    _write_run(tmp_path, "DS-TD3", 0, [5730.0] * 10, env_id="HalfCheetah-v5", total=100_000)
    assert PAPER_COLUMN not in write_report(tmp_path).read_text()


def test_a_method_with_fewer_seeds_than_asked_is_flagged(tmp_path: Path) -> None:
    # Every method has the same finished seed, but commands.txt asked for three; Static-TD3 has no finished run.
    (tmp_path / "commands.txt").write_text(
        "# 2026-12-04 18:00 UTC, commit abc1234\n"
        "python -m sb3_dst.benchmark run --algos TD3 DS-TD3 Static-TD3 --envs Fake-v0 --seeds 0 1 2 --steps 1000 "
        f"--out {tmp_path} --title 'Fake'\n"
        f"python -m sb3_dst.benchmark report --out {tmp_path}\n"
        "not a command line at all\n"
    )
    _write_run(tmp_path, "TD3", 0, [10.0] * 10)
    _write_run(tmp_path, "DS-TD3", 0, [10.0] * 10)
    short = seed_shortfalls(load_runs(tmp_path), tmp_path)
    assert short == {
        ("Fake-v0", "TD3"): ([0], [], [1, 2]),
        ("Fake-v0", "DS-TD3"): ([0], [], [1, 2]),
        ("Fake-v0", "Static-TD3"): ([], [], [0, 1, 2]),
    }
    report = write_report(tmp_path).read_text()
    assert "| Fake-v0 | TD3 | 1 of 3 ⚠ |" in report and "| Fake-v0 | DS-TD3 | 1 of 3 ⚠ |" in report
    assert "Static-TD3 on Fake-v0: no run finished; 0, 1, 2 not run" in report


def test_requested_runs_of_run_and_ablation_command_lines() -> None:
    from sb3_dst.benchmark.__main__ import requested_runs

    run = requested_runs(["run", "--algos", "TD3", "--envs", "A-v0", "B-v0", "--seeds", "0", "1", "--steps", "10",
                          "--out", "x"])  # fmt: skip
    assert run == [("A-v0", "TD3", 0), ("A-v0", "TD3", 1), ("B-v0", "TD3", 0), ("B-v0", "TD3", 1)]
    ablation = requested_runs(["ablation", "sparsity", "--envs", "A-v0", "--seeds", "3", "--steps", "10", "--out", "x"])
    assert ablation == [("A-v0", algo, 3) for algo in
                        ["TD3", "DS-TD3:sparsity=0.25", "DS-TD3:sparsity=0.5", "DS-TD3:sparsity=0.8"]]  # fmt: skip
    assert requested_runs(["report", "--out", "x"]) == []
    with pytest.raises(ValueError, match="not a benchmark command line"):
        requested_runs(["run", "--envs", "A-v0"])


def test_costs_table_gives_each_run_s_wall_time_in_seed_order(tmp_path: Path) -> None:
    for seed, hours in [(1, 2.5), (0, 0.25)]:  # written out of order
        _write_run(tmp_path, "TD3", seed, [1.0] * 3, seconds_per_eval=hours * 3600 / 3)
    report = write_report(tmp_path).read_text()
    costs = report[report.index("## Costs") :]
    assert "| steps/s | wall time |" in costs
    assert "| 0.25, 2.50 h |" in costs


def test_learning_curves_against_wall_time_take_the_seeds_mean_time(tmp_path: Path, monkeypatch) -> None:
    from matplotlib.axes import Axes

    for seed, seconds_per_eval in [(0, 360.0), (1, 1080.0)]:  # 0.1 h and 0.3 h per evaluation
        _write_run(tmp_path, "TD3", seed, [1.0, 2.0, 3.0], seconds_per_eval=seconds_per_eval)
    drawn: list[np.ndarray] = []
    original = Axes.plot

    def record(self, x, *args, **kwargs):
        drawn.append(np.asarray(x, dtype=float))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", record)
    report = write_report(tmp_path).read_text()
    assert "![Fake-v0: return vs wall time](learning_curves_wall_Fake-v0.png)" in report
    assert (tmp_path / "learning_curves_wall_Fake-v0.png").stat().st_size > 10_000
    curves = [x for x in drawn if x.shape == (3,)]
    assert any(np.allclose(x, [0.2, 0.4, 0.6]) for x in curves), curves  # hours: mean of 0.1 and 0.3 h per step
    assert any(np.allclose(x, [100, 200, 300]) for x in curves)  # the steps plot is unchanged
