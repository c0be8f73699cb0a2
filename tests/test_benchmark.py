"""The benchmark harness: configuration, report arithmetic, and an end-to-end run killed and resumed."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch as th

import sb3_dst
from sb3_dst.benchmark.__main__ import main
from sb3_dst.benchmark.report import (
    dense_counterpart,
    dense_share_by_sparsity,
    load_runs,
    read_labels,
    summarize_run,
    write_report,
)
from sb3_dst.benchmark.runner import describe_plan, plan_runs
from sb3_dst.benchmark.specs import (
    ALGORITHMS,
    AlgoSpec,
    RunConfig,
    default_hyperparams,
    family,
    resolve_hyperparams,
)
from sb3_dst.benchmark.worker import EVAL_COLUMNS, build_model
from sb3_dst.hyperparams import PAPER_SAC_TARGET_UPDATE

REPO = Path(__file__).resolve().parents[1]


def test_algo_spec_parsing() -> None:
    spec = AlgoSpec.parse("DS-TD3:evolution_interval=200,er_lambda=[3, 8]")
    assert spec.base == "DS-TD3"
    assert spec.overrides == (("evolution_interval", 200), ("er_lambda", [3, 8]))
    assert spec.label == "DS-TD3 (evolution_interval=200, er_lambda=[3, 8])"
    assert spec.slug == "DS-TD3__evolution_interval-200__er_lambda-3-8"
    assert AlgoSpec.parse("TD3").label == "TD3"
    with pytest.raises(ValueError, match="unknown algorithm"):
        AlgoSpec.parse("PPO")
    with pytest.raises(ValueError, match="key=value"):
        AlgoSpec.parse("DS-TD3:200")


def test_paper_hyperparameters() -> None:
    td3 = default_hyperparams("TD3", "HalfCheetah-v5")
    assert td3["batch_size"] == 100 and td3["learning_starts"] == 25_000 and td3["policy_delay"] == 2
    assert td3["policy_kwargs"] == {"net_arch": [256, 256], "optimizer_kwargs": {"weight_decay": 2e-4}}
    assert "er_lambda" not in td3
    ds = default_hyperparams("DS-TD3", "Hopper-v5")
    assert ds["er_lambda"] == [7, 64] and ds["drop_fraction"] == 0.05 and ds["evolution_interval"] == 1000
    assert default_hyperparams("DS-SAC", "Hopper-v5")["er_lambda"] == [7, 20]
    assert default_hyperparams("DS-SAC", "HalfCheetah-v5")["target_update_interval"] == 1000
    assert default_hyperparams("SAC", "HalfCheetah-v5")["target_update_interval"] == 1
    assert default_hyperparams("Static-TD3", "Pendulum-v1")["sparsity"] == 0.5
    assert "drop_fraction" not in default_hyperparams("Static-SAC", "Hopper-v5")
    # A variant's sparsity replaces the task's λ, and the other way round.
    swept = resolve_hyperparams(AlgoSpec.parse("DS-TD3:sparsity=0.8"), "HalfCheetah-v5", learning_starts=10_000)
    assert swept["sparsity"] == 0.8 and "er_lambda" not in swept and swept["learning_starts"] == 10_000


@pytest.mark.skipif(not (REPO / "hyperparams").is_dir(), reason="no rl-zoo3 hyperparameter files")
@pytest.mark.parametrize("algo", list(ALGORITHMS))
@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v4", "Ant-v5", "Humanoid-v5"])
def test_defaults_agree_with_zoo_files(algo: str, env_id: str) -> None:
    """The harness's built-in settings are the ones of the repository's rl-zoo3 files, except the target update
    of the sparse SAC variants: the harness keeps the paper's hard copy, the files use SB3's soft update (the
    paper's hard one is `-conf sb3_dst.hyperparams.ds_sac_paper` away)."""
    spec = AlgoSpec.parse(algo)
    from_files = resolve_hyperparams(spec, env_id, hyperparams_dir=REPO / "hyperparams")
    built_in = resolve_hyperparams(spec, env_id)
    if family(algo) == "SAC" and algo != "SAC":
        assert (from_files["tau"], from_files["target_update_interval"]) == (0.005, 1)
        from_files.update(PAPER_SAC_TARGET_UPDATE)
    assert from_files == built_in


@pytest.mark.skipif(not (REPO / "hyperparams").is_dir(), reason="no rl-zoo3 hyperparameter files")
@pytest.mark.parametrize("width", [256, 1024])
@pytest.mark.parametrize("algo", ["CrossQ", "DS-CrossQ"])
def test_contrib_campaign_crossq_files_change_only_the_critic_width(algo: str, width: int) -> None:
    """benchmarks/hyperparams/crossq_<width> (the contrib campaign's CrossQ settings) is the repository's
    HalfCheetah-v5 entry with <width>-wide critics: nothing else may drift from the zoo files."""
    spec, env_id = AlgoSpec.parse(algo), "HalfCheetah-v5"
    directory = REPO / "benchmarks" / "hyperparams" / f"crossq_{width}"
    campaign = resolve_hyperparams(spec, env_id, hyperparams_dir=directory)
    zoo = resolve_hyperparams(spec, env_id, hyperparams_dir=REPO / "hyperparams")
    assert zoo["policy_kwargs"]["net_arch"]["qf"] == [2048, 2048]
    assert campaign.pop("policy_kwargs") == {"net_arch": {"pi": [256, 256], "qf": [width, width]}}
    zoo.pop("policy_kwargs")
    assert campaign == zoo


def test_a_hyperparameter_directory_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    """A mistyped --hyperparams must not run every algorithm on the built-in defaults; a directory without a file
    for one algorithm still falls back to the defaults for that algorithm."""
    spec = AlgoSpec.parse("TD3")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_hyperparams(spec, "Pendulum-v1", hyperparams_dir=tmp_path / "hyperparms")
    defaults = resolve_hyperparams(spec, "Pendulum-v1")
    assert resolve_hyperparams(spec, "Pendulum-v1", hyperparams_dir=tmp_path) == defaults


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--algos", "DS-TD3:sparsity=1.5", "--envs", "Pendulum-v1"], "sparsity must be a number in"),
        (["--algos", "TD3", "--envs", "Hopper-v3"], "Hopper-v5"),
        (["--algos", "TD3", "--envs", "Pendulum-v1", "--hyperparams", "/no/such/dir"], "does not exist"),
    ],
)
def test_a_dry_run_fails_on_bad_input_as_the_run_would(tmp_path: Path, argv: list[str], message: str) -> None:
    out = tmp_path / "out"
    common = ["--seeds", "0", "--steps", "1000", "--eval-freq", "500", "--out", str(out), "--dry-run"]
    with pytest.raises(ValueError, match=message):
        main(["run", *argv, *common])
    assert not out.exists()


def test_plan_runs_checks_budget() -> None:
    configs = plan_runs(["TD3", "DS-TD3"], ["Pendulum-v1"], [0, 1], 1000, 500, 2)
    assert [c.run_id for c in configs] == [
        f"Pendulum-v1__{algo}__seed{seed}" for seed in (0, 1) for algo in ("TD3", "DS-TD3")
    ]
    with pytest.raises(ValueError, match="multiple"):
        plan_runs(["TD3"], ["Pendulum-v1"], [0], 1000, 300, 2)


def test_build_model_turns_zoo_keys_into_arguments() -> None:
    import gymnasium as gym

    params = resolve_hyperparams(AlgoSpec.parse("DS-TD3"), "Pendulum-v1", net_arch=[8, 8])
    config = RunConfig("DS-TD3", "Pendulum-v1", 0, 1000, 500, 2, {**params, "buffer_size": 100})
    model = build_model(config, gym.make("Pendulum-v1"))
    assert type(model).__name__ == "DSTD3"
    assert model.action_noise is not None and np.allclose(model.action_noise._sigma, 0.1)
    assert model.sparsity == 0.5 and model.evolution_interval == 1000
    assert model.actor.optimizer.param_groups[0]["weight_decay"] == 2e-4


@pytest.mark.parametrize(
    ("algo", "cls", "attrs"),
    [
        ("Pruned-TD3:sparsity=0.9", "PrunedTD3", dict(sparsity=0.9, evolution_interval=1000)),
        ("Pruned-SAC:sparsity=0.9", "PrunedSAC", dict(sparsity=0.9, evolution_interval=1000, tau=1.0)),
        (
            "DS-TD3:sparsity=0.9,growth='gradient',drop_fraction=0.1,drop_fraction_schedule='cosine'",
            "DSTD3",
            dict(sparsity=0.9, growth="gradient", drop_fraction=0.1, drop_fraction_schedule="cosine"),
        ),
    ],
)
def test_harness_builds_the_methods_beyond_the_paper(algo: str, cls: str, attrs: dict) -> None:
    import gymnasium as gym

    params = resolve_hyperparams(AlgoSpec.parse(algo), "Pendulum-v1", net_arch=[8, 8])
    model = build_model(
        RunConfig(algo, "Pendulum-v1", 0, 1000, 500, 2, {**params, "buffer_size": 100}), gym.make("Pendulum-v1")
    )
    assert type(model).__name__ == cls
    assert {key: getattr(model, key) for key in attrs} == attrs


def _fake_run(out: Path, algo: str, seed: int, returns: list[float], flops: float, size: int) -> None:
    """A finished run directory written by hand."""
    config = RunConfig(algo, "Fake-v0", seed, 100 * len(returns), 100, 1, {})
    run_dir = out / "runs" / config.run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_json()))
    with open(run_dir / "evaluations.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(EVAL_COLUMNS)
        for i, value in enumerate(returns):
            writer.writerow([100 * (i + 1), value, 0, 1, 0, 0, 0, 0])
    done = {"network_size": size, "flops": flops, "flops_paper": flops, "wall_time": 1, "train_steps_per_second": 9}
    (run_dir / "done.json").write_text(json.dumps(done))


def test_dry_run_estimate_uses_the_median_speed_of_the_family(tmp_path: Path) -> None:
    # Three finished TD3 runs of 1000 steps: two took 10 s (100 steps/s), one was slowed to 100 s (10 steps/s).
    finished = [RunConfig("TD3", "Fake-v0", seed, 1000, 100, 1, {}) for seed in range(3)]
    for config, wall_time in zip(finished, [10.0, 10.0, 100.0], strict=True):
        run_dir = tmp_path / "runs" / config.run_id
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text(json.dumps(config.to_json()))
        (run_dir / "done.json").write_text(json.dumps({"num_timesteps": 1000, "wall_time": wall_time}))
    pending = RunConfig("DS-TD3", "Fake-v0", 0, 720_000, 100, 1, {})  # same family: 7200 s at 100 steps/s
    plan = describe_plan([*finished, pending], tmp_path)
    assert f"starts  {pending.run_id}" in plan and "finished  Fake-v0__TD3__seed2" in plan
    # The mean speed (70 steps/s) would say 2.9 core-hours.
    assert plan.endswith(
        "4 runs in " + str(tmp_path) + ": 3 finished, 1 to run; about 2.0 core-hours left at the "
        "median speed of the finished runs"
    )


def test_report_arithmetic(tmp_path: Path) -> None:
    returns = [float(v) for v in range(1, 13)]  # 12 evaluations: the final return averages the last 10
    _fake_run(tmp_path, "TD3", 0, returns, flops=200.0, size=1000)
    _fake_run(tmp_path, "TD3", 1, [r + 2 for r in returns], flops=200.0, size=1000)
    _fake_run(tmp_path, "DS-TD3", 0, returns, flops=98.0, size=490)
    run = summarize_run(tmp_path / "runs" / "Fake-v0__TD3__seed0")
    assert run["final_return"] == pytest.approx(np.mean(range(3, 13)))  # 7.5
    assert run["lca"] == pytest.approx(sum(range(1, 13)) / 1200)
    report = write_report(tmp_path).read_text()
    assert "| Fake-v0 | 8.5 ± 1.0 | 7.5 |" in report  # TD3 seeds 7.5 and 9.5
    assert "| Fake-v0 | DS-TD3 | 98 | 0.49× | 490 | 7.5 | 9 |" in report
    assert "| Fake-v0 | TD3 | 200 | 1× (200) | 1,000 | 8.5 ± 1.0 | 9 |" in report
    # Summary: DS-TD3's 7.5 is 88 % of TD3's mean 8.5; its LCA 78/1200 = 0.065 is 78/90 = 87 % of TD3's.
    # DS-TD3 has one seed where TD3 has two: flagged
    assert "| Fake-v0 | DS-TD3 | 1 of 2 ⚠ | 8 | 88 % | 0.065 | 87 % | 0.49× | 490 |" in report
    assert "| Fake-v0 | TD3 | 2 | 8 ± 1 | 100 % | 0.075 ± 0.010 | 100 % | 1.00× | 1,000 |" in report
    assert (tmp_path / "learning_curves_Fake-v0.png").stat().st_size > 10_000


def test_dense_share_by_sparsity(tmp_path: Path) -> None:
    flat = [2.0] * 10  # final return = value, LCA = value * 10 evaluations / 1000 steps
    _fake_run(tmp_path, "TD3", 0, [8.0] * 10, flops=200.0, size=1000)
    _fake_run(tmp_path, "TD3", 1, [12.0] * 10, flops=200.0, size=1000)  # dense mean: R 10, LCA 0.1
    _fake_run(tmp_path, "DS-TD3:sparsity=0.9", 0, [5.0] * 10, flops=20.0, size=90)
    _fake_run(tmp_path, "DS-TD3:sparsity=0.9", 1, [7.0] * 10, flops=20.0, size=130)
    _fake_run(tmp_path, "DS-TD3:sparsity=0.5", 0, [9.0] * 10, flops=100.0, size=500)
    _fake_run(tmp_path, "DS-TD3:sparsity=0.9,growth='gradient'", 0, flat, flops=20.0, size=100)  # one level only
    _fake_run(tmp_path, "DS-TD3", 0, flat, flops=100.0, size=500)  # no sparsity keyword: not a point
    runs = load_runs(tmp_path)
    algos = sorted({r["algo"] for r in runs})
    data = dense_share_by_sparsity(runs, "Fake-v0", algos)
    assert list(data) == ["DS-TD3 (sparsity=…)"]
    low, high = data["DS-TD3 (sparsity=…)"]  # in order of sparsity
    assert low == pytest.approx({"sparsity": 0.5, "r_mean": 0.9, "r_std": 0.0, "lca_mean": 0.9, "lca_std": 0.0, "n": 1})
    # measured, not nominal: 1 - mean S 110 / 1000; the seeds keep 5/10 and 7/10 of dense TD3's mean return
    expected = {"sparsity": 0.89, "r_mean": 0.6, "r_std": 0.1, "lca_mean": 0.6, "lca_std": 0.1, "n": 2}
    assert high == pytest.approx(expected)
    report = write_report(tmp_path).read_text()
    assert "![Fake-v0: share of dense vs sparsity](dense_share_Fake-v0.png)" in report
    assert (tmp_path / "dense_share_Fake-v0.png").stat().st_size > 10_000


def test_dense_share_plot_needs_two_sparsity_levels(tmp_path: Path) -> None:
    _fake_run(tmp_path, "TD3", 0, [8.0] * 10, flops=200.0, size=1000)
    _fake_run(tmp_path, "DS-TD3:sparsity=0.9", 0, [5.0] * 10, flops=20.0, size=100)
    report = write_report(tmp_path).read_text()
    assert "share of dense vs sparsity" not in report and not (tmp_path / "dense_share_Fake-v0.png").exists()


def test_labels_name_variants_in_tables_and_plots_and_persist(tmp_path: Path) -> None:
    rigl = "DS-TD3:sparsity=0.9,growth='gradient'"
    _fake_run(tmp_path, "TD3", 0, [10.0] * 10, flops=200.0, size=1000)
    _fake_run(tmp_path, rigl, 0, [6.0] * 10, flops=20.0, size=100)
    _fake_run(tmp_path, "DS-TD3:sparsity=0.95, growth='gradient'", 0, [4.0] * 10, flops=10.0, size=50)
    unlabeled = write_report(tmp_path).read_text()
    assert "| Fake-v0 | DS-TD3 (sparsity=0.9, growth='gradient') | 1 | 6 | 60 % |" in unlabeled
    # Spacing does not matter; the sparsity=* variant names the method in the dense-share plot.
    main(["report", "--out", str(tmp_path), "--label", "DS-TD3:sparsity=0.9,growth='gradient'", "RigL 90 %"])
    main(["report", "--out", str(tmp_path), "--label", "DS-TD3:sparsity=*,growth='gradient'", "RigL"])
    assert read_labels(tmp_path) == {
        "DS-TD3 (sparsity=0.9, growth='gradient')": "RigL 90 %",
        "DS-TD3 (sparsity='*', growth='gradient')": "RigL",
    }
    report = write_report(tmp_path).read_text()  # no --label: labels.json is read again
    assert "| Fake-v0 | RigL 90 % | 1 | 6 | 60 % |" in report
    assert "| Fake-v0 | RigL 90 % | 20 | 0.10× | 100 | 6.0 | 9 |" in report
    assert "DS-TD3 (sparsity=0.9, growth='gradient') |" not in report
    assert f"- RigL 90 % (`{rigl}`): `{{}}`" in report  # the settings say which variant a name stands for
    assert "| Fake-v0 | DS-TD3 (sparsity=0.95, growth='gradient') | 1 | 4 | 40 % |" in report  # not named
    runs = load_runs(tmp_path)
    data = dense_share_by_sparsity(runs, "Fake-v0", sorted({r["algo"] for r in runs}), read_labels(tmp_path))
    assert list(data) == ["RigL"]
    assert {p.name for p in (tmp_path / "runs").iterdir()} == {  # run directories keep their names
        "Fake-v0__DS-TD3__sparsity-0.9__growth-gradient__seed0",
        "Fake-v0__DS-TD3__sparsity-0.95__growth-gradient__seed0",
        "Fake-v0__TD3__seed0",
    }


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (["DS-TD3:sparsity=0.5", "Half"], "not one of the variants here"),
        (["DS-TD3:sparsity=*", "Any"], "not one of the variants here"),  # no variant here sets sparsity
        (["DS-TD3", "  "], "empty name"),
        (["Bogus-TD3", "X"], "unknown algorithm 'Bogus-TD3'"),
    ],
)
def test_bad_labels_fail_before_anything_is_written(tmp_path: Path, label: list[str], message: str) -> None:
    args = ["run", "--algos", "TD3", "DS-TD3", "--envs", "Pendulum-v1", "--seeds", "0", "--steps", "1000",
            "--eval-freq", "500", "--out", str(tmp_path / "out"), "--label", *label]  # fmt: skip
    with pytest.raises(ValueError, match=message):
        main(args)
    assert not (tmp_path / "out").exists()


def test_one_name_for_two_variants_is_refused(tmp_path: Path) -> None:
    _fake_run(tmp_path, "TD3", 0, [10.0] * 10, flops=200.0, size=1000)
    _fake_run(tmp_path, "DS-TD3", 0, [6.0] * 10, flops=20.0, size=100)
    main(["report", "--out", str(tmp_path), "--label", "TD3", "Dense"])
    with pytest.raises(ValueError, match="the name 'Dense' to two variants"):
        main(["report", "--out", str(tmp_path), "--label", "DS-TD3", "Dense"])
    assert read_labels(tmp_path) == {"TD3": "Dense"}  # the refused label was not saved


@pytest.mark.parametrize("text", ["{broken", '["TD3", "Dense"]', '{"TD3": 1}'])
def test_a_corrupt_labels_file_is_named_and_nothing_is_overwritten(tmp_path: Path, text: str) -> None:
    _fake_run(tmp_path, "TD3", 0, [10.0] * 10, flops=200.0, size=1000)
    (tmp_path / "labels.json").write_text(text)
    with pytest.raises(ValueError, match=r"labels\.json (is not valid JSON|must map variant texts to names)"):
        main(["report", "--out", str(tmp_path), "--label", "TD3", "Dense"])
    assert (tmp_path / "labels.json").read_text() == text
    assert not (tmp_path / "report.md").exists()


def test_an_interrupted_labels_write_keeps_the_old_names_whole(tmp_path: Path, monkeypatch) -> None:
    _fake_run(tmp_path, "TD3", 0, [10.0] * 10, flops=200.0, size=1000)
    main(["report", "--out", str(tmp_path), "--label", "TD3", "Dense"])
    before = (tmp_path / "labels.json").read_text()

    def interrupted(fd: int) -> None:  # the new names are partly written when the process is stopped
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["report", "--out", str(tmp_path), "--label", "TD3", "Dense TD3 with a much longer name"])
    assert (tmp_path / "labels.json").read_text() == before
    monkeypatch.undo()
    main(["report", "--out", str(tmp_path), "--label", "TD3", "Dense TD3 with a much longer name"])
    assert read_labels(tmp_path) == {"TD3": "Dense TD3 with a much longer name"}


def test_a_variant_with_shared_overrides_is_compared_with_the_dense_run_that_has_them(tmp_path: Path) -> None:
    _fake_run(tmp_path, "TD3", 0, [10.0] * 10, flops=200.0, size=1000)
    _fake_run(tmp_path, "TD3:learning_rate=0.0003", 0, [20.0] * 10, flops=200.0, size=1000)
    _fake_run(tmp_path, "DS-TD3:sparsity=0.9,learning_rate=0.0003", 0, [15.0] * 10, flops=20.0, size=100)
    _fake_run(tmp_path, "DS-TD3:sparsity=0.9", 0, [6.0] * 10, flops=20.0, size=100)  # DST keywords only: plain TD3
    _fake_run(tmp_path, "DS-TD3:batch_size=64", 0, [5.0] * 10, flops=50.0, size=500)  # no TD3 with batch_size=64
    _fake_run(tmp_path, "DS-TD3:tau=0.005", 0, [8.0] * 10, flops=50.0, size=500)  # plain TD3 has it: no note
    config_path = tmp_path / "runs" / "Fake-v0__TD3__seed0" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "hyperparams": {"tau": 0.005, "batch_size": 256}}))
    assert dense_counterpart("DS-TD3:sparsity=0.9,learning_rate=0.0003") == "TD3 (learning_rate=0.0003)"
    assert dense_counterpart("Pruned-SAC:pruning_end=0.5,sparsity=0.9,target_pruning='online_mask'") == "SAC"
    report = write_report(tmp_path).read_text()
    # 15 is 75 % of the dense run with the same learning rate (20), not 150 % of plain TD3's 10
    assert "| Fake-v0 | DS-TD3 (sparsity=0.9, learning_rate=0.0003) | 1 | 15 | 75 % |" in report
    assert "| Fake-v0 | DS-TD3 (sparsity=0.9) | 1 | 6 | 60 % |" in report
    assert "| Fake-v0 | DS-TD3 (batch_size=64) | 1 | 5 | 50 % |" in report  # falls back to plain TD3, and says so
    assert "DS-TD3 (batch_size=64) on Fake-v0 against TD3 (TD3 (batch_size=64) was not run)" in report
    assert "DS-TD3 (sparsity=0.9, learning_rate=0.0003) on Fake-v0 against TD3 (learning_rate=0.0003)." in report
    assert "| Fake-v0 | TD3 (learning_rate=0.0003) | 1 | 20 | 100 % |" in report  # a dense variant is its own baseline
    assert "| Fake-v0 | DS-TD3 (tau=0.005) | 1 | 8 | 80 % |" in report and "DS-TD3 (tau=0.005) on" not in report


# --- End to end -----------------------------------------------------------------------------------------

ARGS = [
    "run", "--algos", "TD3", "DS-TD3", "--envs", "Pendulum-v1", "--seeds", "0", "--steps", "1000",
    "--eval-freq", "250", "--eval-episodes", "1", "--learning-starts", "100", "--net-arch", "16", "16",
    "--jobs", "1",
]  # fmt: skip


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_end_to_end_kill_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    # A relative --out, as users type it (the workers run in their own directories).
    command = [sys.executable, "-m", "sb3_dst.benchmark", *ARGS, "--out", "bench"]
    td3_dir, ds_dir = out / "runs" / "Pendulum-v1__TD3__seed0", out / "runs" / "Pendulum-v1__DS-TD3__seed0"

    # 1. Start the campaign and SIGKILL the scheduler and its worker once DS-TD3 (the second run) has written
    #    its first evaluation: TD3 is finished then, DS-TD3 is not.
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 90
    while not _rows(ds_dir / "evaluations.csv"):
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.time() < deadline, "no evaluation row in time"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert (td3_dir / "done.json").exists()
    assert not (ds_dir / "done.json").exists()
    assert 1 <= len(_rows(ds_dir / "evaluations.csv")) < 4
    td3_done_stamp = (td3_dir / "done.json").stat().st_mtime_ns

    # 2. Resume: TD3 is skipped, DS-TD3 restarts from scratch and finishes with exactly one row per evaluation.
    assert main([*ARGS, "--out", str(out)]) == 0
    assert (td3_dir / "done.json").stat().st_mtime_ns == td3_done_stamp
    rows = _rows(ds_dir / "evaluations.csv")
    assert [int(r["timesteps"]) for r in rows] == [250, 500, 750, 1000]
    summary = _rows(out / "runs.csv")
    assert sorted(r["algo"] for r in summary) == ["DS-TD3", "TD3"]
    done = json.loads((ds_dir / "done.json").read_text())
    assert (
        done["num_timesteps"] == 1000
        and done["network_size"] < json.loads((td3_dir / "done.json").read_text())["network_size"]
    )
    assert done["sb3_dst"].startswith(sb3_dst.__version__)  # provenance: version (+ git commit in a checkout)
    machine = done["machine"]  # and what else the exact numbers depend on
    assert machine["cpu"] and machine["packages"]["torch"] == th.__version__
    assert machine["torch_cpu_capability"] == th.backends.cpu.get_cpu_capability()
    # the last evaluation runs after the last environment step, before that step's gradient update
    assert int(rows[-1]["n_updates"]) == done["n_updates"] - 1
    flops = [float(r["flops"]) for r in rows] + [done["flops"]]
    assert flops == sorted(flops) and flops[0] > 0

    # 3. A third call has nothing to do, and is not added to the commands that produced the results (the killed
    #    call and the resume are); the report and the curves are there.
    def recorded_commands() -> list[str]:
        return [line for line in (out / "commands.txt").read_text().splitlines() if line.startswith("python -m")]

    assert len(recorded_commands()) == 2
    assert main([*ARGS, "--out", str(out)]) == 0
    assert len(_rows(out / "runs.csv")) == 2
    assert len(recorded_commands()) == 2
    report = (out / "report.md").read_text()
    assert "| Pendulum-v1 | DS-TD3 |" in report and "--steps 1000" in report
    assert (out / "learning_curves_Pendulum-v1.png").stat().st_size > 10_000
    assert "![Pendulum-v1: return vs FLOPs](return_vs_flops_Pendulum-v1.png)" in report
    assert (out / "return_vs_flops_Pendulum-v1.png").stat().st_size > 10_000

    # 4. Asking for another configuration of an existing run is refused.
    with pytest.raises(ValueError, match="another configuration"):
        main([*[a if a != "250" else "500" for a in ARGS], "--out", str(out)])
    assert len(recorded_commands()) == 2


@pytest.mark.parametrize(
    ("algos", "env_id", "message"),
    [
        (["TD3"], "Walker2d-v3", "Use Walker2d-v4 or Walker2d-v5"),
        (["TD3"], "NoSuchEnv-v0", "cannot make 'NoSuchEnv-v0'"),
        (["DS-TD3:drop_fraction=2"], "Pendulum-v1", r"drop_fraction \(η\) must be in \(0, 1\)"),
        (["DS-TD3:bogus=1"], "Pendulum-v1", "unexpected keyword argument 'bogus'"),
    ],
)
def test_bad_input_fails_before_any_run_starts(tmp_path: Path, algos, env_id, message) -> None:
    args = ["run", "--algos", *algos, "--envs", env_id, "--seeds", "0", "--steps", "1000", "--eval-freq", "500"]
    with pytest.raises(ValueError, match=message):
        main([*args, "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "runs").exists()


def test_command_line_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "sb3_dst.benchmark", "run", "--algos", "TD3", "--envs", "Hopper-v3",
               "--seeds", "0", "--steps", "1000", "--eval-freq", "500", "--out", str(tmp_path / "out")]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO))
    )
    assert result.returncode == 2
    assert "error: Hopper-v3 is a MuJoCo v3 environment" in result.stderr and "Traceback" not in result.stderr


def test_a_corrupt_run_config_is_named_and_nothing_is_deleted(tmp_path: Path) -> None:
    args = ["run", "--algos", "TD3", "--envs", "Pendulum-v1", "--seeds", "0", "--steps", "1000", "--eval-freq", "500"]
    run_dir = tmp_path / "out" / "runs" / "Pendulum-v1__TD3__seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text('{"algo": "TD3", broken')
    (run_dir / "evaluations.csv").write_text("timesteps,mean_return\n500,-1200.0\n")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON .*delete .*Pendulum-v1__TD3__seed0"):
        main([*args, "--out", str(tmp_path / "out")])
    with pytest.raises(ValueError, match=r"Pendulum-v1__TD3__seed0.config\.json is not valid JSON"):
        main(["report", "--out", str(tmp_path / "out")])  # the report names the file too
    assert (run_dir / "evaluations.csv").read_text().endswith("-1200.0\n")


def test_sparsity_ablation_runs_each_level_and_the_dense_baseline_with_denormals_flushed(tmp_path: Path) -> None:
    out = tmp_path / "ablation"
    argv = [
        "ablation", "sparsity", "--values", "0.25", "0.75", "--envs", "Pendulum-v1", "--seeds", "0", "--steps", "300",
        "--eval-freq", "150", "--eval-episodes", "1", "--learning-starts", "100", "--net-arch", "16", "16",
        "--jobs", "1", "--flush-denormal", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    summary = {r["algo"]: r for r in _rows(out / "runs.csv")}
    assert sorted(summary) == ["DS-TD3:sparsity=0.25", "DS-TD3:sparsity=0.75", "TD3"]
    sizes = [int(summary[name]["network_size"]) for name in ("TD3", "DS-TD3:sparsity=0.25", "DS-TD3:sparsity=0.75")]
    assert sizes[0] > sizes[1] > sizes[2]  # each level really ran at its own sparsity
    report = (out / "report.md").read_text()
    assert "Ablation: DS-TD3 sparsity" in report and "DS-TD3 (sparsity=0.75)" in report
    assert "flushed to zero in every run" in report
    assert all(json.loads(done.read_text())["flush_denormal"] for done in out.glob("runs/*/done.json"))


def test_flush_denormal_is_part_of_a_run_config_without_changing_older_digests() -> None:
    older = RunConfig("TD3", "Pendulum-v1", 0, 1000, 250, 1, {"learning_starts": 100})
    assert "flush_denormal" not in older.to_json()  # the configs (and digests) of runs made before the option
    flushed = RunConfig("TD3", "Pendulum-v1", 0, 1000, 250, 1, {"learning_starts": 100}, flush_denormal=True)
    assert flushed.digest() != older.digest() and flushed.run_id == older.run_id
    assert RunConfig.from_json(flushed.to_json()) == flushed and RunConfig.from_json(older.to_json()) == older
    plan = plan_runs(["TD3"], ["Pendulum-v1"], [0], 1000, 250, 1, flush_denormal=True)
    assert all(config.flush_denormal for config in plan)


# --- Checkpoints: a run killed mid-way resumes bit for bit ----------------------------------------------------

DETERMINISTIC_COLUMNS = [c for c in EVAL_COLUMNS if c not in ("wall_time", "eval_time")]
RIGL_COSINE = "DS-TD3:sparsity=0.9,growth='gradient',drop_fraction_schedule='cosine',evolution_interval=40"


def _worker_dir(root: Path, algo: str, env_id: str) -> Path:
    (config,) = plan_runs([algo], [env_id], [0], 1200, 300, 2, learning_starts=200, net_arch=[32, 32])
    run_dir = root / config.run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_json()))
    return run_dir


def _checkpoint_step(run_dir: Path) -> int:
    from sb3_dst.benchmark.checkpoint import POINTER

    pointer = run_dir / POINTER
    return int(json.loads(pointer.read_text())["steps"]) if pointer.exists() else 0


@pytest.mark.parametrize(
    ("algo", "env_id"),
    [(RIGL_COSINE, "InvertedPendulum-v5"), ("DS-SAC:evolution_interval=40", "Pendulum-v1")],
    ids=["ds_td3_rigl_cosine-mujoco", "ds_sac-pendulum"],
)
def test_a_run_killed_after_a_checkpoint_resumes_bit_for_bit(
    tmp_path: Path, algo: str, env_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sb3_dst.benchmark.checkpoint import POINTER
    from sb3_dst.benchmark.worker import run_worker

    # Reference: one uninterrupted process, without checkpoints.
    reference = _worker_dir(tmp_path / "reference", algo, env_id)
    assert run_worker(reference, checkpoint_freq=0) == 0

    # The same run with a checkpoint every 250 steps, SIGKILLed once a checkpoint past step 500 exists: killed
    # mid-episode (InvertedPendulum's episodes end at random steps, Pendulum's every 200 steps) and, most of the
    # time, after more evaluation rows were written than the checkpoint covers.
    run_dir = _worker_dir(tmp_path / "killed" / "runs", algo, env_id)
    command = [sys.executable, "-m", "sb3_dst.benchmark", "worker", str(run_dir), "--checkpoint-freq", "250"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    process = subprocess.Popen(command, cwd=run_dir, env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _checkpoint_step(run_dir) < 500:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.02)
    process.kill()
    process.wait()
    checkpoint_step = _checkpoint_step(run_dir)
    assert not (run_dir / "done.json").exists() and checkpoint_step < 1200

    # Resumed by the scheduler, which keeps a run directory that has a checkpoint of the requested configuration.
    argv = [
        "run", "--algos", algo, "--envs", env_id, "--seeds", "0", "--steps", "1200", "--eval-freq", "300",
        "--eval-episodes", "2", "--learning-starts", "200", "--net-arch", "32", "32", "--jobs", "1",
        "--checkpoint-freq", "250", "--no-report", "--out", str(tmp_path / "killed"),
    ]  # fmt: skip
    # --dry-run says so, and changes nothing.
    assert main([*argv, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert f"resumes at step {checkpoint_step}  {run_dir.name}" in plan and "0 finished, 1 to run" in plan
    assert not (tmp_path / "killed" / "commands.txt").exists() and not (run_dir / "log.txt").exists()
    assert main(argv) == 0
    assert f"resuming from checkpoint_{checkpoint_step}" in (run_dir / "log.txt").read_text()
    assert main([*argv, "--dry-run"]) == 0
    assert f"finished  {run_dir.name}" in capsys.readouterr().out
    done, reference_done = (json.loads((d / "done.json").read_text()) for d in (run_dir, reference))
    assert done["resumed_at"] == [checkpoint_step] and reference_done["resumed_at"] == []
    rows, reference_rows = _rows(run_dir / "evaluations.csv"), _rows(reference / "evaluations.csv")
    assert [int(r["timesteps"]) for r in rows] == [300, 600, 900, 1200]
    assert [[r[c] for c in DETERMINISTIC_COLUMNS] for r in rows] == [
        [r[c] for c in DETERMINISTIC_COLUMNS] for r in reference_rows
    ]
    for key in ("n_updates", "network_size", "flops", "num_evolutions", "parameters_digest"):
        assert done[key] == reference_done[key], key
    assert not (run_dir / POINTER).exists() and not list(run_dir.glob("checkpoint_*"))  # cleaned up when done


@pytest.mark.parametrize(
    "algo",
    [
        "TD3",
        "SAC",
        "Pruned-TD3:sparsity=0.8,evolution_interval=50",
        "DS-TQC:evolution_interval=50",
        "DS-CrossQ:evolution_interval=50",
    ],
)
def test_every_family_resumes_bit_for_bit_from_a_checkpoint(tmp_path: Path, algo: str) -> None:
    """In one process: the first attempt stops at step 500 (it believes its scheduler gone), the second resumes
    from the checkpoint at step 250 and must end exactly where an uninterrupted run ends."""
    from sb3_dst.benchmark.worker import run_worker

    reference = _worker_dir(tmp_path / "reference", algo, "Pendulum-v1")
    assert run_worker(reference) == 0
    run_dir = _worker_dir(tmp_path / "stopped", algo, "Pendulum-v1")
    assert run_worker(run_dir, parent_pid=-1, checkpoint_freq=250) == 3  # stops at its first progress check
    assert _checkpoint_step(run_dir) == 250 and not (run_dir / "done.json").exists()
    assert run_worker(run_dir, checkpoint_freq=250) == 0
    done, reference_done = (json.loads((d / "done.json").read_text()) for d in (run_dir, reference))
    assert done["resumed_at"] == [250]
    for key in ("n_updates", "network_size", "flops", "num_evolutions", "parameters_digest"):
        assert done[key] == reference_done[key], key
    rows, reference_rows = _rows(run_dir / "evaluations.csv"), _rows(reference / "evaluations.csv")
    assert [[r[c] for c in DETERMINISTIC_COLUMNS] for r in rows] == [
        [r[c] for c in DETERMINISTIC_COLUMNS] for r in reference_rows
    ]


@pytest.mark.parametrize("her", [False, True], ids=["replay_buffer", "her"])
def test_checkpointed_replay_buffers_come_back_equal(her: bool) -> None:
    """The filled rows of a plain buffer (or a HER buffer, pickled whole) restored into a fresh model's buffer."""
    import pickle

    from stable_baselines3 import HerReplayBuffer
    from stable_baselines3.common.envs import BitFlippingEnv

    from sb3_dst import DSTD3
    from sb3_dst.benchmark.checkpoint import _buffer_state, _restore_buffer

    def make() -> DSTD3:
        if her:
            env = BitFlippingEnv(n_bits=4, continuous=True, max_steps=4)
            extra: dict = dict(replay_buffer_class=HerReplayBuffer, replay_buffer_kwargs=dict(n_sampled_goal=2))
            return DSTD3("MultiInputPolicy", env, learning_starts=20, buffer_size=500, seed=0, **extra)
        return DSTD3("MlpPolicy", "Pendulum-v1", sparsity=0.5, learning_starts=20, buffer_size=500, seed=0)

    model = make()
    model.learn(130)
    state = pickle.loads(pickle.dumps(_buffer_state(model.replay_buffer)))
    fresh = make()
    _restore_buffer(fresh.replay_buffer, state)
    original, restored = vars(model.replay_buffer), vars(fresh.replay_buffer)
    assert restored["pos"] == original["pos"] > 0 and restored["full"] == original["full"]
    for name, value in original.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(restored[name], value, err_msg=name)
        elif isinstance(value, dict) and all(isinstance(v, np.ndarray) for v in value.values()):
            for key in value:
                np.testing.assert_array_equal(restored[name][key], value[key], err_msg=f"{name}[{key}]")
    if her:
        assert fresh.replay_buffer.env is fresh.env  # kept: HER samples new goals through it
        fresh.replay_buffer.sample(8, env=None)


def test_an_unreadable_checkpoint_means_a_fresh_start_not_a_failed_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sb3_dst.benchmark.worker import run_worker

    run_dir = _worker_dir(tmp_path, "TD3", "Pendulum-v1")
    assert run_worker(run_dir, parent_pid=-1, checkpoint_freq=250) == 3
    (checkpoint_dir,) = run_dir.glob("checkpoint_*")
    (checkpoint_dir / "model.zip").write_bytes(b"not a zip file")  # e.g. written by an incompatible version
    capsys.readouterr()
    assert run_worker(run_dir, checkpoint_freq=250) == 0
    assert "cannot resume from checkpoint_250" in capsys.readouterr().out
    assert json.loads((run_dir / "done.json").read_text())["resumed_at"] == []
    assert [int(r["timesteps"]) for r in _rows(run_dir / "evaluations.csv")] == [300, 600, 900, 1200]


def test_checkpoints_outside_the_work_tree_resume_a_run_whose_directory_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--checkpoint-dir: a run stopped twice (last checkpoint at step 280) resumes bit for bit in a fresh output
    directory, as after a fresh clone, from the checkpoint kept outside it."""
    from sb3_dst.benchmark.checkpoint import POINTER
    from sb3_dst.benchmark.worker import run_worker

    algo, env_id = "DS-TD3:evolution_interval=50", "Pendulum-v1"
    reference = _worker_dir(tmp_path / "reference", algo, env_id)
    assert run_worker(reference) == 0

    cache = tmp_path / "cache"
    run_dir = _worker_dir(tmp_path / "tree" / "runs", algo, env_id)
    assert run_worker(run_dir, parent_pid=-1, checkpoint_freq=250, checkpoint_dir=cache) == 3  # stops at 300
    assert not (run_dir / POINTER).exists()  # nothing of the checkpoint in the run directory
    (home,) = cache.iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert home.name == f"{run_dir.name}-{RunConfig.from_json(config).digest()}"
    assert _checkpoint_step(home) == 250
    # resumes at 250, checkpoints at 260 and 280, stops at its progress check at 300
    assert run_worker(run_dir, parent_pid=-1, checkpoint_freq=20, checkpoint_dir=cache) == 3
    assert _checkpoint_step(home) == 280

    shutil.rmtree(tmp_path / "tree")  # the work tree is laid anew: only the checkpoint outside it is left
    out = tmp_path / "fresh"
    argv = [
        "run", "--algos", algo, "--envs", env_id, "--seeds", "0", "--steps", "1200", "--eval-freq", "300",
        "--eval-episodes", "2", "--learning-starts", "200", "--net-arch", "32", "32", "--jobs", "1",
        "--checkpoint-freq", "250", "--no-report", "--out", str(out), "--checkpoint-dir", str(cache),
    ]  # fmt: skip
    assert main([*argv, "--dry-run"]) == 0
    assert f"resumes at step 280  {run_dir.name}" in capsys.readouterr().out
    assert main(argv) == 0
    new_dir = out / "runs" / run_dir.name
    assert "resuming from checkpoint_280" in (new_dir / "log.txt").read_text()
    done, reference_done = (json.loads((d / "done.json").read_text()) for d in (new_dir, reference))
    assert done["resumed_at"] == [250, 280]  # the history of resumptions travels with the checkpoint
    for key in ("n_updates", "network_size", "flops", "num_evolutions", "parameters_digest"):
        assert done[key] == reference_done[key], key
    rows, reference_rows = _rows(new_dir / "evaluations.csv"), _rows(reference / "evaluations.csv")
    assert [int(r["timesteps"]) for r in rows] == [300, 600, 900, 1200]
    assert [[r[c] for c in DETERMINISTIC_COLUMNS] for r in rows] == [
        [r[c] for c in DETERMINISTIC_COLUMNS] for r in reference_rows
    ]
    assert not home.exists() and not list(cache.iterdir())  # removed once the run is finished
