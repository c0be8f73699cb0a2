"""The report of benchmarks/train_speed.py reads its timings honestly: provenance of each file, the "auto" rule's
worst choices and the comparison with SparseProp come from the numbers, not from prose."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"


@pytest.fixture(scope="module")
def train_speed() -> Any:
    spec = importlib.util.spec_from_file_location("train_speed", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _layer(width: int, batch: int, density: float, ours: float, theirs: float | None) -> tuple[str, dict[str, Any]]:
    key = f"{width}x{width} batch {batch} density {density}"
    return key, dict(width=width, batch=batch, density=density, ms={}, dense_over_sparse=ours,
                     dense_over_sparseprop=theirs)  # fmt: skip


def test_the_report_reads_the_rule_and_sparseprop_from_the_timings(train_speed: Any, tmp_path: Path) -> None:
    layers = dict(
        [
            _layer(1024, 256, 0.1, 2.5, 2.0),  # inside the rule, ours faster
            _layer(1024, 256, 0.05, 3.0, 3.5),  # inside the rule, SparseProp faster
            _layer(2048, 100, 0.1, 0.9, 1.5),  # inside the rule but slower than dense: must be flagged
            _layer(1024, 16, 0.02, 1.7, 1.2),  # outside the rule (batch 16): a forgone speed-up
        ]
    )
    (tmp_path / "layers.json").write_text(
        json.dumps(
            dict(
                layers=layers,
                models={},
                sb3_dst="0.1.0+abc",
                measured_utc="2026-12-06 05:00",
                denormals_flushed=True,
                machine={"cpu": "test"},
            )
        )
    )
    (tmp_path / "models.json").write_text(json.dumps(dict(models={}, layers={}, sb3_dst="0.1.0+def")))
    text = train_speed.write_report(tmp_path).read_text()
    # each file says which code measured it; a file from before the fields existed says so rather than guessing
    assert "`layers.json`: sb3-dst 0.1.0+abc, measured 2026-12-06 05:00, denormals flushed." in text
    assert "`models.json`: sb3-dst 0.1.0+def, measured on a date not recorded" in text
    assert "smallest speed-up among them is 0.90x (2048 wide, batch 100, d=0.1)" in text
    assert "1 were slower on the kernels than dense: the rule is wrong there" in text
    assert "largest speed-up it forgoes is 1.70x (1024 wide, batch 16, d=0.02)" in text
    assert "density 0.1: sb3-dst 2.50x dense, SparseProp 2.00x (1.25x SparseProp's speed)" in text
    assert "density 0.05: sb3-dst 3.00x dense, SparseProp 3.50x" in text
    assert "faster in 2 of 4 layers" in text
    assert "| 1024 | 256 | 0.05 (3.50x vs 3.00x) |" in text
    assert "| 2048 | 100 | 0.1 (1.50x vs 0.90x) |" in text


def test_without_sparseprop_the_report_says_there_is_no_comparison(train_speed: Any, tmp_path: Path) -> None:
    layers = dict([_layer(1024, 256, 0.1, 2.5, None)])
    (tmp_path / "layers.json").write_text(json.dumps(dict(layers=layers, models={})))
    text = train_speed.write_report(tmp_path).read_text()
    assert "SparseProp was not installed when the layers were timed" in text
    assert "## Against SparseProp" not in text


def _config(tmp: Path, campaign: str, run: str, algo: str, net_arch: Any) -> None:
    run_dir = tmp / campaign / "runs" / run
    run_dir.mkdir(parents=True)
    hyperparams = {"batch_size": 256, "policy_kwargs": {"net_arch": net_arch}}
    (run_dir / "config.json").write_text(json.dumps(dict(algo=algo, env_id="HalfCheetah-v5", hyperparams=hyperparams)))


def test_the_payoff_times_the_campaigns_agents_and_the_dense_wide_one_against_the_dense_narrow(
    train_speed: Any, tmp_path: Path
) -> None:
    campaign = "wide_sac_100k"
    wide = "DS-SAC:actor_sparsity='match:256-256'"
    _config(tmp_path, campaign, "HalfCheetah-v5__SAC__seed0", "SAC", [256, 256])
    _config(tmp_path, campaign, "HalfCheetah-v5__DS-SAC__seed0", "DS-SAC", [256, 256])
    _config(tmp_path, campaign, "HalfCheetah-v5__DS-SAC__wide__seed0", wide, [1024, 1024])
    _config(tmp_path, campaign, "HalfCheetah-v5__SAC__seed1", "SAC", [256, 256])  # seed 0's config stands for all
    (tmp_path / campaign / "labels.json").write_text(json.dumps({"SAC": "SAC 256 (dense)", wide: "DS-SAC 1024"}))
    specs = {spec["name"]: spec for spec in train_speed.payoff_specs(tmp_path)}
    assert sorted(specs) == [
        "wide_sac_100k: DS-SAC", "wide_sac_100k: DS-SAC 1024", "wide_sac_100k: SAC 1024 (dense, not run)",
        "wide_sac_100k: SAC 256 (dense)",
    ]  # fmt: skip
    assert specs["wide_sac_100k: SAC 256 (dense)"]["role"] == "dense"
    dense_wide = specs["wide_sac_100k: SAC 1024 (dense, not run)"]
    assert dense_wide["role"] == "dense wide" and dense_wide["config"]["algo"] == "SAC"
    assert dense_wide["config"]["hyperparams"]["policy_kwargs"]["net_arch"] == [1024, 1024]
    # the dense narrow agent's own config is untouched by the copy
    assert specs["wide_sac_100k: SAC 256 (dense)"]["config"]["hyperparams"]["policy_kwargs"]["net_arch"] == [256, 256]

    # the report's ratio is to the dense narrow agent, whatever the other names contain
    rows = {
        f"{campaign}: DS-SAC 1024 (sparse at dense 256 connections)": dict(role="sparse", ms_per_step=30.0),
        f"{campaign}: SAC 1024 (dense, not run)": dict(role="dense wide", ms_per_step=100.0),
        f"{campaign}: SAC 256 (dense)": dict(role="dense", ms_per_step=10.0),
    }
    for row in rows.values():
        row["campaign"] = campaign
    (tmp_path / "payoff.json").write_text(json.dumps(dict(payoff=rows)))
    text = train_speed.write_report(tmp_path).read_text()
    assert "| wide_sac_100k | DS-SAC 1024 (sparse at dense 256 connections) | 30.0 | 3.00x |" in text
    assert "| wide_sac_100k | SAC 1024 (dense, not run) | 100.0 | 10.00x |" in text
