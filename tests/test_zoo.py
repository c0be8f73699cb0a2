"""rl-zoo3 and Optuna integration (sb3_dst.zoo): the commands users type, in subprocesses, and the glue in-process.

The subprocess tests run ``python -m rl_zoo3.train`` / ``rl_zoo3.enjoy`` / ``sb3_dst.train`` exactly as documented,
with the interpreter of this virtual environment, on Pendulum-v1 with tiny budgets and 32-32 networks.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import optuna
import pytest

from sb3_dst import (
    DSSAC,
    DSTD3,
    DSTQC,
    DSCrossQ,
    PrunedSAC,
    PrunedTD3,
    StaticSAC,
    StaticTD3,
)
from sb3_dst.common.masking import MASK_NAME, sparse_linears
from sb3_dst.families import FAMILIES
from sb3_dst.hyperparams import ALGOS_WITH_FILES, hyperparams_dir, hyperparams_file, load
from sb3_dst.zoo import (
    LAMBDA_MAX_ATTR,
    PRUNED_REASON_ATTR,
    SAMPLERS,
    TD3_ALGOS,
    ZOO_ALGOS,
    MujocoPyRequiredError,
    _make_objective,
    _TrialIndex,
    check_env_id,
    convert_dst_params,
    make_heartbeat_storage,
    max_er_lambdas,
)
from sb3_dst.zoo.registry import CROSSQ_ALGOS, DDPG_ALGOS, TQC_ALGOS
from sb3_dst.zoo.samplers import FILE_POLICY_KWARGS, HER_KEYS, SPARSITY_RANGE, critic_outputs, default_net_arch

TESTS_DIR = Path(__file__).resolve().parent
#: rl-zoo3 name -> sparse class, from the family table (tests/test_families.py checks the registry against it).
CLASSES = {row.zoo_name(variant): row.cls(variant) for row in FAMILIES for variant in ("ds", "static", "pruned")}
#: Files with the paper's settings (TD3 and SAC families); the others hold rl-zoo3's tuned values.
PAPER_FILES = tuple(stem for row in FAMILIES if row.name in ("TD3", "SAC") for stem in row.hyperparams_files)
#: Dense algorithm of each file built on rl-zoo3's tuned values.
ZOO_TUNED_FILES = {
    stem: row.stem for row in FAMILIES if row.name not in ("TD3", "SAC") for stem in row.hyperparams_files
}
PAPER_ENVS = [f"{name}-v{v}" for name in ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid") for v in (4, 5)]
#: Tiny budget that fits Pendulum-v1 (obs 3, act 1): λ1 <= 3·32/35 = 2.74, λ2 <= 16.
TINY = [
    "n_timesteps:600",
    "learning_starts:200",
    "policy_kwargs:dict(net_arch=[32, 32])",
]


def run(args: list[str], cwd: Path, timeout: float = 150, extra_env: dict[str, str] | None = None):
    """Run ``python <args>`` as a user would; return the completed process (output in .stdout)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("SB3_DST_NO_ZOO_HOOK", None)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def check(process: subprocess.CompletedProcess, returncode: int = 0) -> str:
    assert process.returncode == returncode, f"exit code {process.returncode}\n{process.stdout[-6000:]}"
    return process.stdout


# ----------------------------------------------------------------------------------------------------------------
# Start-up hook
# ----------------------------------------------------------------------------------------------------------------


def test_startup_hook_is_cheap_and_registers_on_import(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "heavy = [m for m in ('torch', 'stable_baselines3', 'sb3_dst', 'rl_zoo3') if m in sys.modules]\n"
        "hooked = any(type(f).__name__ == 'RLZooFinder' for f in sys.meta_path)\n"
        "from rl_zoo3 import ALGOS\n"
        "from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER\n"
        "print(heavy, hooked, sorted(k for k in ALGOS if k.startswith(('ds_', 'static_', 'pruned_'))),"
        " 'ds_sac' in HYPERPARAMS_SAMPLER)\n"
    )
    out = check(run(["-c", code], tmp_path))
    expected = sorted(ZOO_ALGOS)
    assert f"[] True {expected} True" in out


# ----------------------------------------------------------------------------------------------------------------
# Hyperparameter files
# ----------------------------------------------------------------------------------------------------------------


def test_every_file_is_listed() -> None:
    assert set(ALGOS_WITH_FILES) == set(PAPER_FILES) | set(ZOO_TUNED_FILES)
    assert set(ZOO_ALGOS) < set(ALGOS_WITH_FILES)
    assert {path.stem for path in hyperparams_dir().glob("*.yml")} == set(ALGOS_WITH_FILES)  # none left out


@pytest.mark.parametrize("algo", PAPER_FILES)
def test_files_have_every_paper_task_in_v4_and_v5(algo: str) -> None:
    entries = load(algo)
    assert set(entries) == {"default", *PAPER_ENVS}
    for env_id, hp in entries.items():
        assert hp["n_timesteps"] == 1e6 and hp["policy"] == "MlpPolicy", env_id
        assert eval(hp["policy_kwargs"])["net_arch"] == [256, 256], env_id
        if "td3" in algo:
            assert (hp["learning_rate"], hp["batch_size"], hp["tau"], hp["policy_delay"]) == (1e-3, 100, 0.005, 2)
            assert (hp["target_policy_noise"], hp["target_noise_clip"]) == (0.2, 0.5)
            assert (hp["noise_type"], hp["noise_std"], hp["learning_starts"]) == ("normal", 0.1, 25000)
            assert eval(hp["policy_kwargs"])["optimizer_kwargs"] == {"weight_decay": 2e-4}
        else:
            assert (hp["learning_rate"], hp["batch_size"], hp["ent_coef"]) == (3e-4, 256, 0.2)
            # SB3's soft update in every SAC file; the paper's hard one: -conf sb3_dst.hyperparams.*_sac_paper
            assert (hp["tau"], hp["target_update_interval"]) == (0.005, 1)
        if algo in ("ds_td3", "ds_sac"):
            assert hp["drop_fraction"] == (0.05 if algo == "ds_td3" else 0.1)
            assert hp["evolution_interval"] == 1000
        if algo in ("td3", "sac"):
            assert not {"er_lambda", "sparsity", "drop_fraction", "evolution_interval"} & set(hp)


def _rl_zoo3_file(dense: str) -> dict[str, dict[str, Any]]:
    import rl_zoo3
    import yaml

    with open(Path(rl_zoo3.__file__).parent / "hyperparams" / f"{dense}.yml") as file:
        return yaml.safe_load(file)


@pytest.mark.parametrize("algo", list(ZOO_TUNED_FILES))
def test_tqc_crossq_ddpg_files_hold_rl_zoo3s_tuned_values(algo: str) -> None:
    """Every key rl-zoo3's tuned v4 entry sets has its value in our v4 and v5 entries; the DST keys on top."""
    dense = ZOO_TUNED_FILES[algo]
    tuned = _rl_zoo3_file(dense)
    entries = load(algo)
    assert set(entries) == {"default", *PAPER_ENVS}
    dense_entries = load(dense)
    dst_keys = {"er_lambda", "sparsity", "drop_fraction", "evolution_interval"}
    for env_id, hp in entries.items():
        reference = tuned[env_id if env_id == "default" else env_id.replace("-v5", "-v4")]
        for key, value in reference.items():
            if key == "policy_kwargs":
                assert eval(hp[key]) == eval(value), env_id
            else:
                assert hp[key] == value, (env_id, key)
        assert {k: v for k, v in hp.items() if k not in dst_keys} == dense_entries[env_id], env_id
        assert ("drop_fraction" in hp) == algo.startswith("ds_") and ("evolution_interval" in hp) == (
            algo.startswith(("ds_", "pruned_"))
        )
        if dense == "ddpg":
            assert not {"policy_delay", "target_policy_noise", "target_noise_clip"} & set(hp)
        if dense == "crossq":
            assert not {"tau", "target_update_interval"} & set(hp)
        if dense == "tqc":
            assert eval(hp["policy_kwargs"])["n_quantiles"] == 25
            assert hp["top_quantiles_to_drop_per_net"] == (5 if env_id.startswith("Hopper") else 2)
        if algo == dense:
            assert not dst_keys & set(hp)


def _first_layer_density(er_lambda: float, obs: int, act: int, hidden: int = 256) -> float:
    """Fraction of weights kept by the first sparse layers of the actor and both critics together."""
    shapes = [(obs, hidden), (obs + act, hidden), (obs + act, hidden)]
    return er_lambda * sum(i + o for i, o in shapes) / sum(i * o for i, o in shapes)


# λ of the paper (v3 ids) and the v3 sizes they were chosen for.
PAPER_LAMBDAS = {
    "ds_td3": {"HalfCheetah": (7, 64), "Hopper": (7, 64), "Walker2d": (7, 64), "Ant": (40, 64), "Humanoid": (61, 64)},
    "ds_sac": {"HalfCheetah": (12, 80), "Hopper": (7, 20), "Walker2d": (12, 80), "Ant": (30, 64), "Humanoid": (61, 64)},
}
V3_SIZES = {"HalfCheetah": (17, 6), "Hopper": (11, 3), "Walker2d": (17, 6), "Ant": (111, 8), "Humanoid": (376, 17)}


@pytest.mark.parametrize("algo", list(CLASSES))
def test_sparse_files_keep_the_papers_sparsity_on_v4_and_v5(algo: str) -> None:
    """λ2 as in the paper; λ1 rescaled where the observation size changed so the first-layer density stays.

    TQC's networks are SAC's: DS-SAC's λ. DDPG (400-300) and CrossQ (critics 4-8x wider than the actor) ask for
    the paper's overall level, 50 %, on every task.
    """
    if algo in CROSSQ_ALGOS | DDPG_ALGOS:
        assert all(hp["sparsity"] == 0.5 and "er_lambda" not in hp for hp in load(algo).values())
        return
    paper = PAPER_LAMBDAS["ds_td3" if "td3" in algo else "ds_sac"]
    for env_id, hp in load(algo).items():
        if env_id == "default":
            assert hp["sparsity"] == 0.5 and "er_lambda" not in hp
            continue
        name = env_id.split("-")[0]
        env = gym.make(env_id)
        obs, act = env.observation_space.shape[0], env.action_space.shape[0]
        env.close()
        lambda1, lambda2 = hp["er_lambda"]
        assert lambda2 == paper[name][1]
        wanted = _first_layer_density(paper[name][0], *V3_SIZES[name])
        assert _first_layer_density(lambda1, obs, act) == pytest.approx(wanted, abs=3e-4), env_id  # λ has 2 decimals
        assert (lambda1 == paper[name][0]) == ((obs, act) == V3_SIZES[name]), env_id


@pytest.mark.parametrize("algo", list(CLASSES))
def test_every_entry_builds_its_model(algo: str) -> None:
    """Each entry's keys are accepted by the algorithm and its λ fits every layer of that task."""
    for env_id, hp in load(algo).items():
        env = gym.make("Pendulum-v1" if env_id == "default" else env_id)
        kwargs = {k: v for k, v in hp.items() if k not in ("n_timesteps", "noise_type", "noise_std")}
        kwargs.update(policy_kwargs=eval(kwargs["policy_kwargs"]), buffer_size=1)
        model = CLASSES[algo](env=env, **kwargs)
        layers = sparse_linears(model.actor) + sparse_linears(model.critic)
        # Pruned-* start dense and reach their budget by the end of pruning: check the budget.
        kept = [
            layer.connection_budget if algo.startswith("pruned_") else int(getattr(layer, MASK_NAME).sum())
            for layer in layers
        ]
        if "sparsity" in hp:  # 50 % overall; ERK makes small layers (Pendulum's 3-input first layers, CrossQ's
            # actor next to its 2048-wide critics) dense
            assert sum(kept) / sum(layer.weight.numel() for layer in layers) == pytest.approx(0.5, abs=0.01), env_id
        else:
            assert all(k < layer.weight.numel() for k, layer in zip(kept, layers, strict=True)), env_id
        env.close()


def test_dense_files_are_importable_as_conf_modules() -> None:
    from sb3_dst.hyperparams import crossq, ddpg, sac, td3, tqc

    assert td3.hyperparams == load("td3") and sac.hyperparams == load("sac")
    assert tqc.hyperparams == load("tqc") and crossq.hyperparams == load("crossq") and ddpg.hyperparams == load("ddpg")
    assert hyperparams_file("ds_td3").name == "ds_td3.yml"


# ----------------------------------------------------------------------------------------------------------------
# v3 ids
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["Walker2d-v3", "Humanoid-v3", "Ant-v2"])
def test_v3_ids_are_refused_with_the_ids_to_use(env_id: str) -> None:
    name = env_id.split("-")[0]
    with pytest.raises(MujocoPyRequiredError, match="mujoco-py") as error:
        check_env_id(env_id)
    assert f"{name}-v4" in str(error.value) and f"{name}-v5" in str(error.value)


@pytest.mark.parametrize("env_id", ["Walker2d-v4", "Walker2d-v5", "Pendulum-v1", "LunarLander-v3", "NotAnEnv-v0"])
def test_other_ids_pass(env_id: str) -> None:
    check_env_id(env_id)


# ----------------------------------------------------------------------------------------------------------------
# Optuna samplers, converters, objective, storage
# ----------------------------------------------------------------------------------------------------------------


def test_lambda_bounds_make_each_layer_at_most_dense() -> None:
    pendulum = gym.make("Pendulum-v1")
    bounds = max_er_lambdas(pendulum.observation_space, pendulum.action_space, [32, 32])
    assert bounds == pytest.approx([3 * 32 / 35, 32 * 32 / 64])
    cheetah = gym.make("HalfCheetah-v5")
    assert max_er_lambdas(cheetah.observation_space, cheetah.action_space) == pytest.approx([17 * 256 / 273, 128])
    split = max_er_lambdas(pendulum.observation_space, pendulum.action_space, dict(pi=[8], qf=[32, 32]), True)
    assert split == pytest.approx([3 * 8 / 11, min(8 / 9, 32 * 32 / 64), 32 / 33])
    # CrossQ's own networks when the file gives none; TQC's critics end in n_quantiles outputs.
    assert default_net_arch("ds_crossq") == {"pi": [256, 256], "qf": [1024, 1024]}
    assert default_net_arch("ds_tqc") == default_net_arch("ds_ddpg") == [256, 256]
    crossq = max_er_lambdas(cheetah.observation_space, cheetah.action_space, default_net_arch("ds_crossq"))
    assert crossq == pytest.approx([17 * 256 / 273, 128])  # the actor's layers are the smaller ones
    assert critic_outputs("ds_tqc", {"n_quantiles": 10}) == 10 and critic_outputs("ds_tqc", None) == 25
    assert critic_outputs("ds_sac", {"n_quantiles": 10}) == 1
    quantiles = max_er_lambdas(pendulum.observation_space, pendulum.action_space, [32, 32], True, 25)
    assert quantiles[-1] == pytest.approx(min(32 / 33, 32 * 25 / 57))


def _build(algo: str, env: gym.Env, kwargs: dict[str, Any]) -> Any:
    """The sampled keywords on a 32-32 network (TQC's sampled n_quantiles is in the sampled policy_kwargs)."""
    policy_kwargs = {**kwargs.pop("policy_kwargs", {}), "net_arch": [32, 32]}
    return CLASSES[algo]("MlpPolicy", env, policy_kwargs=policy_kwargs, buffer_size=1, **kwargs)


@pytest.mark.parametrize("algo", sorted(CROSSQ_ALGOS))
def test_crossq_search_space_holds_its_files_settings(algo: str) -> None:
    """The sweep can reach the sparsity the CrossQ files use (a λ list capped by the actor could not)."""
    levels = {entry["sparsity"] for entry in load(algo).values()}
    assert levels and all(SPARSITY_RANGE[0] <= level <= SPARSITY_RANGE[1] for level in levels), levels


@pytest.mark.parametrize("algo", list(SAMPLERS))
def test_samples_build_valid_models_and_convert_back(algo: str) -> None:
    """Every sample within the documented ranges gives a model with exactly those DST hyperparameters."""
    env = gym.make("Pendulum-v1")
    bounds = max_er_lambdas(env.observation_space, env.action_space, [32, 32])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    targets: set[str] = set()
    for _ in range(12):
        trial = study.ask()
        trial.set_user_attr(LAMBDA_MAX_ATTR, bounds)
        token = FILE_POLICY_KWARGS.set({"net_arch": [32, 32], "n_critics": 2})  # as sb3-dst's objective does
        try:
            kwargs = SAMPLERS[algo](trial, 1, 1, {"using_her_replay_buffer": False, "her_kwargs": {}})
        finally:
            FILE_POLICY_KWARGS.reset(token)
        if algo in CROSSQ_ALGOS:  # one level: λ bounds set by the narrow actor would cap the wide critics
            assert kwargs["er_lambda"] is None and 0.5 <= kwargs["sparsity"] <= 0.98
            assert not any(key.startswith("er_lambda") for key in trial.params)
        else:
            assert len(kwargs["er_lambda"]) == 2 and kwargs["sparsity"] is None
            assert all(high / 20 <= lam <= high for lam, high in zip(kwargs["er_lambda"], bounds, strict=True))
        if algo in TQC_ALGOS:  # merged into the file's policy_kwargs, which rl-zoo3 would otherwise replace
            n_quantiles = trial.params["n_quantiles"]
            assert kwargs["policy_kwargs"] == {"net_arch": [32, 32], "n_critics": 2, "n_quantiles": n_quantiles}
            assert 5 <= n_quantiles <= 50
            assert 0 <= kwargs["top_quantiles_to_drop_per_net"] <= min(n_quantiles - 1, 5)
        else:
            assert "policy_kwargs" not in kwargs
        model = _build(algo, env, dict(kwargs))
        assert (model.er_lambda, model.sparsity) == (kwargs["er_lambda"], kwargs["sparsity"])
        assert model.gamma == pytest.approx(1 - trial.params["one_minus_gamma"])
        if algo in TQC_ALGOS:
            assert model.policy_kwargs["n_quantiles"] == trial.params["n_quantiles"]
            assert model.top_quantiles_to_drop_per_net == trial.params["top_quantiles_to_drop_per_net"]
        if algo in DDPG_ALGOS:
            assert not {"policy_delay", "target_policy_noise"} & set(trial.params)
        if algo in TQC_ALGOS | CROSSQ_ALGOS:
            assert not {"tau", "target_update", "target_update_interval"} & set(trial.params)
        elif algo not in TD3_ALGOS:  # SAC: a consistent pair whatever the file's target update
            soft = trial.params["target_update"] == "soft"
            targets.add(trial.params["target_update"])
            expected = (trial.params["tau"], 1) if soft else (1.0, trial.params["target_update_interval"])
            assert (model.tau, model.target_update_interval) == expected
            assert 0.001 <= model.tau <= 0.02 if soft else 100 <= model.target_update_interval <= 5000
            assert (kwargs["tau"], kwargs["target_update_interval"]) == expected
        if algo.startswith("ds_"):
            assert model.drop_fraction == trial.params["drop_fraction"]
            assert model.evolution_interval == trial.params["evolution_interval"]
            assert 0.01 <= model.drop_fraction <= 0.5 and 100 <= model.evolution_interval <= 10_000
        else:
            assert "drop_fraction" not in trial.params
        if algo.startswith("pruned_"):
            assert model.evolution_interval == trial.params["evolution_interval"]
        assert "growth" not in trial.params  # beyond-the-paper dimensions only when asked for
        if algo in TD3_ALGOS:
            assert model.action_noise is not None and model.action_noise._sigma[0] == trial.params["noise_std"]
        converted = convert_dst_params(trial.params)  # what `--trial-id` feeds back into the zoo
        assert (converted["er_lambda"], converted["sparsity"]) == (kwargs["er_lambda"], kwargs["sparsity"])
        assert ("noise_type" in converted) == (algo in TD3_ALGOS)
        if algo in TQC_ALGOS:
            assert converted["policy_kwargs"] == {"n_quantiles": trial.params["n_quantiles"]}
        if "target_update" in trial.params:
            assert (converted["tau"], converted["target_update_interval"]) == expected
            assert "target_update" not in converted
        study.tell(trial, 0.0)
    assert targets == ({"soft", "hard"} if algo in {"ds_sac", "static_sac", "pruned_sac"} else set())


@pytest.mark.parametrize("algo", ["ds_td3", "ds_sac", "pruned_td3", "static_sac", "ds_tqc", "ds_crossq", "ds_ddpg"])
def test_opt_in_search_samples_the_methods_beyond_the_paper(algo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SB3_DST_SEARCH adds sparsity, its distribution, growth, η schedule and target pruning to the samples."""
    monkeypatch.setenv("SB3_DST_SEARCH", "sparsity,sparsity_distribution,growth,drop_fraction_schedule,target_pruning")
    env = gym.make("Pendulum-v1")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), direction="maximize")
    seen = set()
    for _ in range(16):
        trial = study.ask()
        kwargs = SAMPLERS[algo](trial, 1, 1, {"using_her_replay_buffer": False, "her_kwargs": {}})
        model = _build(algo, env, kwargs)
        assert 0.5 <= model.sparsity <= 0.98 and model.er_lambda is None and "er_lambda_1" not in trial.params
        assert model.sparsity_distribution == trial.params["sparsity_distribution"]
        if algo in CROSSQ_ALGOS:  # no target networks: nothing to choose
            assert "target_pruning" not in trial.params
        else:
            assert model.target_pruning == trial.params["target_pruning"]
        if algo.startswith("ds_"):
            assert (model.growth, model.drop_fraction_schedule) == (
                trial.params["growth"],
                trial.params["drop_fraction_schedule"],
            )
            seen.add((model.growth, model.drop_fraction_schedule))
        else:
            assert "growth" not in trial.params
        converted = convert_dst_params(trial.params)
        assert converted["er_lambda"] is None and converted["sparsity"] == model.sparsity
        study.tell(trial, 0.0)
    assert len(seen) == 4 or not algo.startswith("ds_")


@pytest.mark.parametrize("algo", ["ds_tqc", "static_ddpg", "ds_sac"])
def test_with_a_her_buffer_rl_zoos_her_parameters_are_sampled_too(algo: str) -> None:
    from stable_baselines3 import HerReplayBuffer
    from stable_baselines3.common.envs import BitFlippingEnv

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plain = SAMPLERS[algo](study.ask(), 1, 1, {"using_her_replay_buffer": False, "her_kwargs": {}})
    assert "replay_buffer_kwargs" not in plain and not set(HER_KEYS) & set(study.trials[-1].params)
    file_her = {"n_sampled_goal": 4, "goal_selection_strategy": "future", "copy_info_dict": False}
    strategies = set()
    for _ in range(8):
        trial = study.ask()
        kwargs = SAMPLERS[algo](trial, 1, 1, {"using_her_replay_buffer": True, "her_kwargs": dict(file_her)})
        sampled = {key: trial.params[key] for key in HER_KEYS}
        assert kwargs["replay_buffer_kwargs"] == {"copy_info_dict": False, **sampled}  # the file's others kept
        assert 1 <= sampled["n_sampled_goal"] <= 5 and sampled["goal_selection_strategy"] in (
            "final",
            "episode",
            "future",
        )
        strategies.add(sampled["goal_selection_strategy"])
        converted = convert_dst_params(trial.params)  # --trial-id
        assert converted["replay_buffer_kwargs"] == sampled and not set(HER_KEYS) & set(converted)
    assert len(strategies) > 1
    env = BitFlippingEnv(n_bits=4, continuous=True, max_steps=4)
    model = CLASSES[algo](
        "MultiInputPolicy", env, sparsity=0.5, policy_kwargs=dict(net_arch=[32, 32]), learning_starts=8, batch_size=8,
        replay_buffer_class=HerReplayBuffer, replay_buffer_kwargs=kwargs["replay_buffer_kwargs"],
    )  # fmt: skip
    model.learn(24)
    assert model.replay_buffer.n_sampled_goal == sampled["n_sampled_goal"]


def test_unknown_search_dimension_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SB3_DST_SEARCH", "growht")
    trial = optuna.create_study().ask()
    with pytest.raises(ValueError, match="growht"):
        SAMPLERS["ds_td3"](trial, 1, 1, {})


def test_a_distribution_without_a_sampled_sparsity_is_refused_except_for_crossq(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SB3_DST_SEARCH", "sparsity_distribution")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.raises(ValueError, match="add sparsity too"):
        SAMPLERS["ds_td3"](study.ask(), 1, 1, {})
    trial = study.ask()  # CrossQ samples a sparsity level anyway
    kwargs = SAMPLERS["ds_crossq"](trial, 1, 1, {})
    assert kwargs["sparsity_distribution"] == trial.params["sparsity_distribution"] in ("erk", "uniform")


class _FakeManager:
    def __init__(self) -> None:
        self.algo = "ds_td3"
        self._sb3_dst_lambda_max = [2.0, 16.0]


def test_bad_hyperparameters_and_divergence_prune_with_a_reason_and_the_study_goes_on() -> None:
    outcomes: list[Any] = [
        ValueError("er_lambda=9 gives actor layer 0 (3x32) 315 connections, more than the 96 possible"),
        float("nan"),
        AssertionError("The reward was NaN"),
        1.5,
    ]

    def original(manager: Any, trial: optuna.Trial) -> float:
        outcome = outcomes[trial.number]
        if isinstance(outcome, ValueError):
            raise outcome
        if isinstance(outcome, AssertionError):  # what rl-zoo3 does when learn() fails on NaN
            raise optuna.TrialPruned() from outcome
        return outcome

    objective = _make_objective(original)
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda trial: objective(_FakeManager(), trial), n_trials=4)
    states = [trial.state for trial in study.trials]
    assert states == [optuna.trial.TrialState.PRUNED] * 3 + [optuna.trial.TrialState.COMPLETE]
    reasons = [trial.user_attrs.get(PRUNED_REASON_ATTR, "") for trial in study.trials]
    assert reasons[0].startswith("invalid hyperparameters: ValueError: er_lambda=9")
    assert reasons[1] == "diverged: the mean evaluation return is nan"
    assert "The reward was NaN" in reasons[2]
    assert study.best_value == 1.5 and study.trials[3].user_attrs[LAMBDA_MAX_ATTR] == [2.0, 16.0]


def test_database_storage_has_heartbeat_retry_and_passes_the_zoo_journal_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SB3_DST_HEARTBEAT_INTERVAL", "7")
    monkeypatch.setenv("SB3_DST_MAX_RETRY", "3")
    storage = make_heartbeat_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert storage.get_heartbeat_interval() == 7 and storage.grace_period == 28
    assert storage.get_heartbeat_stale_trial_callback() is not None
    assert not storage.endswith(".log")
    assert "secret" not in str(make_heartbeat_storage(f"sqlite:///{tmp_path / 'x.db'}").url.replace("x", ""))
    from sb3_dst.zoo import _hide_password

    assert _hide_password("postgresql://me:secret@db:5432/optuna") == "postgresql://me:***@db:5432/optuna"
    monkeypatch.setenv("SB3_DST_HEARTBEAT_INTERVAL", "soon")
    with pytest.raises(ValueError, match="SB3_DST_HEARTBEAT_INTERVAL"):
        make_heartbeat_storage(f"sqlite:///{tmp_path / 'study.db'}")


def test_trial_index_zero_is_true() -> None:
    assert _TrialIndex(0) and _TrialIndex(0) == 0 and [10, 11][_TrialIndex(1)] == 11


def _manager(tmp_path: Path, hyperparams: dict[str, Any], **kwargs: Any) -> Any:
    """rl-zoo3's ExperimentManager for ds_td3 on Pendulum-v1 with 32-32 networks, in this process."""
    import argparse

    from sb3_dst.zoo import register

    register()
    from rl_zoo3.exp_manager import ExperimentManager

    hyperparams = {"policy_kwargs": "dict(net_arch=[32, 32])", **hyperparams}
    return ExperimentManager(
        argparse.Namespace(), "ds_td3", "Pendulum-v1", str(tmp_path), hyperparams=hyperparams, **kwargs
    )


@pytest.mark.parametrize("optimize", [False, True])
def test_mistyped_dst_key_stops_with_a_short_message(tmp_path: Path, optimize: bool) -> None:
    manager = _manager(tmp_path, {"drop_fracton": 0.1}, n_timesteps=100, optimize_hyperparameters=optimize)
    with pytest.raises(SystemExit) as stop:
        manager.setup_experiment()
    message = str(stop.value)
    assert message.startswith("error: DSTD3 got an unexpected keyword argument 'drop_fracton'")
    assert "did you mean 'drop_fraction'?" in message and "evolution_interval" in message
    assert "ds_td3.yml or from -params" in message and "Traceback" not in message


@pytest.mark.parametrize(
    ("hyperparams", "expected"),
    [
        ({"sparsity": 1.5}, "error: sparsity must be a number in [0, 1), got 1.5"),
        ({"er_lambda": [50, 8]}, "error: er_lambda=50 gives actor layer 0 (3x32) 1750 connections, more than the 96"),
        ({"drop_fraction": 2}, "error: drop_fraction (η) must be in (0, 1), got 2"),
    ],
)
def test_bad_dst_value_stops_with_a_short_message(tmp_path: Path, hyperparams: dict, expected: str) -> None:
    """``-params sparsity:1.5`` and the like: one line naming the value, as for a mistyped key."""
    manager = _manager(tmp_path, hyperparams, n_timesteps=100)
    with pytest.raises(SystemExit) as stop:
        manager.setup_experiment()
    message = str(stop.value)
    assert message.startswith(expected), message
    assert "ds_td3.yml or from -params" in message and "Traceback" not in message


def test_mistyped_key_in_python_names_it_and_suggests_the_right_one() -> None:
    from sb3_dst.common.dst import UnknownKeywordError

    expected = r"DSTD3 got an unexpected keyword argument 'drop_fracton' \(did you mean 'drop_fraction'\?\)"
    with pytest.raises(TypeError, match=expected):
        DSTD3("MlpPolicy", "Pendulum-v1", drop_fracton=0.1)
    with pytest.raises(UnknownKeywordError, match=r"PrunedSAC .* 'pruning_strat' \(did you mean 'pruning_start'"):
        PrunedSAC("MlpPolicy", "Pendulum-v1", pruning_strat=10)
    with pytest.raises(TypeError, match="StaticTD3 takes no 'drop_fraction'"):  # a DST key of another algorithm
        StaticTD3("MlpPolicy", "Pendulum-v1", drop_fraction=0.1)


def test_database_storage_without_study_name_gets_the_default_name(tmp_path: Path) -> None:
    manager = _manager(tmp_path, {}, optimize_hyperparameters=True, storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert manager.study_name == "ds_td3_Pendulum-v1"
    given = _manager(tmp_path, {}, optimize_hyperparameters=True, storage="sqlite:///x.db", study_name="mine")
    assert given.study_name == "mine"


def test_optuna_budget_below_learning_starts_lowers_it_and_trials_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    updates: list[int] = []
    train = DSTD3.train

    def counting_train(self: Any, gradient_steps: int, batch_size: int = 100) -> None:
        updates.append(gradient_steps)
        train(self, gradient_steps, batch_size)

    monkeypatch.setattr(DSTD3, "train", counting_train)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    manager = _manager(
        tmp_path,
        {"learning_starts": 25000, "batch_size": 32},
        n_timesteps=200,
        optimize_hyperparameters=True,
        storage=storage,
        n_trials=1,
        n_evaluations=1,
        n_eval_episodes=1,
        sampler="random",
        pruner="none",
        no_optim_plots=True,
    )
    assert manager.setup_experiment() is None
    manager.hyperparameters_optimization()
    out = capsys.readouterr().out
    assert "learning_starts 25000 is not below the trial budget of 200 steps" in out and "learning_starts 20 " in out
    assert sum(updates) == 180  # steps 21 to 200 train
    study = optuna.load_study(study_name="ds_td3_Pendulum-v1", storage=storage)  # resumable under its default name
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]


# ----------------------------------------------------------------------------------------------------------------
# The commands, as users type them
# ----------------------------------------------------------------------------------------------------------------


def _load(path: Path, cls: type) -> Any:
    assert path.is_file(), f"{path} missing"
    return cls.load(path, device="cpu")


def test_train_then_enjoy_ds_td3_through_rl_zoo3(tmp_path: Path) -> None:
    out = check(
        run(
            [
                "-m",
                "rl_zoo3.train",
                "--algo",
                "ds_td3",
                "--env",
                "Pendulum-v1",
                "-f",
                "logs",
                "--seed",
                "1",
                "--num-threads",
                "1",
                "--eval-freq",
                "300",
                "--eval-episodes",
                "2",
                "--progress",
                "-params",
                *TINY,
                "er_lambda:[0.5, 8]",
                "drop_fraction:0.2",
                "evolution_interval:100",
            ],
            tmp_path,
        )
    )
    assert f"Loading hyperparameters from: {hyperparams_file('ds_td3')}" in out
    run_dir = tmp_path / "logs" / "ds_td3" / "Pendulum-v1_1"
    for name in ("Pendulum-v1.zip", "best_model.zip", "evaluations.npz", "Pendulum-v1/config.yml"):
        assert (run_dir / name).is_file(), name
    model = _load(run_dir / "Pendulum-v1.zip", DSTD3)
    assert (model.er_lambda, model.drop_fraction, model.evolution_interval) == ([0.5, 8], 0.2, 100)
    assert model.sparsity is None and model.num_evolutions >= 3  # 400 gradient steps, e = 100
    assert model.batch_size == 100 and model.policy_delay == 2  # the file's values for the rest
    assert len(np.load(run_dir / "evaluations.npz")["timesteps"]) == 2

    out = check(
        run(
            [
                "-m",
                "rl_zoo3.enjoy",
                "--algo",
                "ds_td3",
                "--env",
                "Pendulum-v1",
                "-f",
                "logs/",
                "--no-render",
                "-n",
                "400",
                "--num-threads",
                "1",
            ],
            tmp_path,
        )
    )
    assert "2 Episodes" in out and "Mean reward" in out

    # rl-zoo3's hub command imports (sb3-team-hf-integration 3.2 renamed a function it imports) and packages the
    # ds_td3 run up to the upload, which a stand-in Hugging Face API records instead of sending anywhere.
    record = tmp_path / "uploaded.json"
    out = check(
        run(
            [
                "-m",
                "rl_zoo3.push_to_hub",
                *("--algo", "ds_td3", "--env", "Pendulum-v1", "-f", "logs/", "-orga", "me"),
                *("--no-render", "--num-threads", "1"),
            ],
            tmp_path,
            extra_env=fake_hub(tmp_path / "fake_hub", record),
        )
    )
    uploaded = json.loads(record.read_text())
    assert uploaded["repo_id"] == "me/ds_td3-Pendulum-v1", out
    assert {"ds_td3-Pendulum-v1.zip", "config.yml", "results.json", "README.md"} <= set(uploaded["files"])
    assert "ds_td3" in uploaded["readme"] and "mean_reward" in uploaded["readme"]
    pushed = DSTD3.load(tmp_path / "hub" / "ds_td3-Pendulum-v1" / "ds_td3-Pendulum-v1.zip", device="cpu")
    assert pushed.er_lambda == [0.5, 8]


def fake_hub(folder: Path, record: Path) -> dict[str, str]:
    """Environment for a subprocess whose ``huggingface_hub.HfApi`` creates, downloads and uploads nothing: a
    ``sitecustomize`` module replaces those three methods, and the upload writes what it was given to ``record``."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import json, pathlib
            import huggingface_hub

            def create_repo(self, repo_id, **kwargs):
                return "https://huggingface.co/" + repo_id

            def snapshot_download(self, repo_id, local_dir, **kwargs):
                pathlib.Path(local_dir).mkdir(parents=True, exist_ok=True)
                return str(local_dir)

            def upload_folder(self, repo_id, folder_path, **kwargs):
                folder = pathlib.Path(folder_path)
                files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
                readme = (folder / "README.md").read_text() if (folder / "README.md").is_file() else ""
                pathlib.Path({str(record)!r}).write_text(
                    json.dumps(dict(repo_id=repo_id, files=files, readme=readme))
                )

            huggingface_hub.HfApi.create_repo = create_repo
            huggingface_hub.HfApi.snapshot_download = snapshot_download
            huggingface_hub.HfApi.upload_folder = upload_folder
            """
        )
    )
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize(
    ("module", "algo", "cls", "extra"),
    [
        ("sb3_dst.train", "ds_sac", DSSAC, ["sparsity:0.6"]),
        ("rl_zoo3.train", "static_td3", StaticTD3, ["er_lambda:[1, 4]"]),
        ("rl_zoo3.train", "static_sac", StaticSAC, []),
        ("rl_zoo3.train", "pruned_td3", PrunedTD3, ["sparsity:0.6", "evolution_interval:50"]),
        ("rl_zoo3.train", "ds_tqc", DSTQC, []),
        ("rl_zoo3.train", "ds_crossq", DSCrossQ, []),
    ],
)
def test_train_other_algorithms(tmp_path: Path, module: str, algo: str, cls: type, extra: list[str]) -> None:
    check(
        run(
            [
                "-m",
                module,
                "--algo",
                algo,
                "--env",
                "Pendulum-v1",
                "-f",
                "logs",
                "--seed",
                "2",
                "--num-threads",
                "1",
                "--eval-freq",
                "-1",
                "-params",
                *TINY,
                *extra,
            ],
            tmp_path,
        )
    )
    model = _load(tmp_path / "logs" / algo / "Pendulum-v1_1" / "Pendulum-v1.zip", cls)
    if extra and extra[0].startswith("sparsity"):
        assert (model.sparsity, model.er_lambda) == (0.6, None)
    elif extra:
        assert (model.er_lambda, model.sparsity) == ([1, 4], None)
    else:
        assert model.sparsity == 0.5  # the file's `default` entry
    if algo == "ds_sac":  # SB3's soft target update, not the paper's hard one (docs/families/sac.md)
        assert (model.drop_fraction, model.evolution_interval, model.tau, model.target_update_interval) == (
            0.1,
            1000,
            0.005,
            1,
        )
    if algo == "ds_tqc":  # the file's `default` entry: TQC's settings with DS-TQC's η
        assert (model.drop_fraction, model.top_quantiles_to_drop_per_net, model.tau, model.ent_coef) == (
            0.1,
            2,
            0.005,
            "auto",
        )
    if algo == "ds_crossq":
        assert (model.drop_fraction, model.policy_delay, model.lr_schedule(1.0)) == (0.1, 3, 1e-3)
    if algo == "pruned_td3":  # pruned from 20 % to 80 % of its 400 gradient steps: at its budget at the end
        layers = model._sparse_layers["actor"] + model._sparse_layers["critic"]
        assert [int(layer.weight_mask.sum()) for layer in layers] == [layer.connection_budget for layer in layers]
    assert isinstance(model, cls) and model.num_timesteps == 600


@pytest.mark.parametrize("algo", ["ds_sac", "static_sac"])
def test_paper_target_update_is_a_named_alternative(tmp_path: Path, algo: str) -> None:
    """``-conf sb3_dst.hyperparams.<algo>_paper``: the file's settings with the paper's hard target update."""
    module = importlib.import_module(f"sb3_dst.hyperparams.{algo}_paper")
    entries = load(algo)
    assert set(module.hyperparams) == set(entries)
    for env_id, entry in entries.items():
        assert (entry["tau"], entry["target_update_interval"]) == (0.005, 1)
        assert module.hyperparams[env_id] == {**entry, "tau": 1.0, "target_update_interval": 1000}
    conf = ["-conf", f"sb3_dst.hyperparams.{algo}_paper"]
    args = ["--algo", algo, "--env", "Pendulum-v1", "-f", "logs", "--num-threads", "1", "--eval-freq", "-1"]
    check(run(["-m", "rl_zoo3.train", *args, *conf, "-params", *TINY, "target_update_interval:50"], tmp_path))
    cls = DSSAC if algo == "ds_sac" else StaticSAC
    model = _load(tmp_path / "logs" / algo / "Pendulum-v1_1" / "Pendulum-v1.zip", cls)
    assert (model.tau, model.target_update_interval, model.sparsity) == (1.0, 50, 0.5)  # the `default` entry


def test_v3_id_stops_at_once_without_side_effects(tmp_path: Path) -> None:
    out = check(run(["-m", "rl_zoo3.train", "--algo", "ds_td3", "--env", "Walker2d-v3", "-f", "logs"], tmp_path), 1)
    assert "mujoco-py" in out and "Walker2d-v4" in out and "Walker2d-v5" in out
    assert "Traceback" not in out and not (tmp_path / "logs").exists()


def test_optimize_then_train_the_chosen_trial(tmp_path: Path) -> None:
    """Tiny local study (default journal storage), then `--trial-id 0` trains with trial 0's values."""
    common = ["--algo", "ds_td3", "--env", "Pendulum-v1", "-f", "logs", "--num-threads", "1"]
    out = check(
        run(
            [
                "-m",
                "rl_zoo3.train",
                *common,
                "-optimize",
                "--n-trials",
                "2",
                "--n-evaluations",
                "1",
                "--eval-episodes",
                "1",
                "--sampler",
                "random",
                "--pruner",
                "none",
                "--no-optim-plots",
                "--seed",
                "4",
                "-params",
                *TINY,
            ],
            tmp_path,
        )
    )
    journal = tmp_path / "logs" / "ds_td3" / "optuna" / "Pendulum-v1.log"
    assert journal.is_file() and "ds_td3_Pendulum-v1" in out
    assert list((tmp_path / "logs" / "ds_td3").glob("report_Pendulum-v1_2-trials-*.csv"))
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="ds_td3_Pendulum-v1", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    params = study.trials[0].params
    assert {"er_lambda_1", "er_lambda_2", "drop_fraction", "evolution_interval", "learning_rate"} <= set(params)
    assert study.trials[0].user_attrs[LAMBDA_MAX_ATTR] == pytest.approx([3 * 32 / 35, 16.0])

    train = [
        "-m",
        "rl_zoo3.train",
        *common,
        "--trial-id",
        "0",
        "--eval-freq",
        "-1",
        "-params",
        *TINY,
        "n_timesteps:250",
    ]
    check(run(train, tmp_path))
    model = _load(tmp_path / "logs" / "ds_td3" / "Pendulum-v1_2" / "Pendulum-v1.zip", DSTD3)
    assert model.er_lambda == [params["er_lambda_1"], params["er_lambda_2"]]
    assert (model.drop_fraction, model.evolution_interval) == (params["drop_fraction"], params["evolution_interval"])
    assert model.lr_schedule(1.0) == pytest.approx(params["learning_rate"]) and model.batch_size == params["batch_size"]


def test_optimize_prunes_diverging_and_invalid_trials_with_reasons(tmp_path: Path) -> None:
    def optimize(env_id: str, study: str, params: list[str], extra_env: dict[str, str] | None = None) -> list:
        out = check(
            run(
                [
                    "-m",
                    "rl_zoo3.train",
                    "--algo",
                    "ds_td3",
                    "--env",
                    env_id,
                    "-f",
                    "logs",
                    "--num-threads",
                    "1",
                    "-optimize",
                    "--n-trials",
                    "2",
                    "--n-evaluations",
                    "1",
                    "--eval-episodes",
                    "1",
                    "--sampler",
                    "random",
                    "--pruner",
                    "none",
                    "--no-optim-plots",
                    "--seed",
                    "5",
                    "--storage",
                    f"{study}.log",
                    "--study-name",
                    study,
                    "--gym-packages",
                    "zoo_test_envs",
                    "-params",
                    *params,
                ],
                tmp_path,
                extra_env={"PYTHONPATH": str(TESTS_DIR)},
            ),
            1,  # no trial completed: no best trial to report
        )
        assert f"no trial of the study '{study}' completed" in out and "Traceback" not in out
        backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / f"{study}.log"))
        storage = optuna.storages.JournalStorage(backend)
        trials = optuna.load_study(study_name=study, storage=storage).trials
        assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2, out[-3000:]
        return [t.user_attrs[PRUNED_REASON_ATTR] for t in trials]

    # NaN rewards: training diverges. Each trial is pruned with the reason and the study runs all its trials.
    reasons = optimize("NaNRewardPendulum-v0", "nan", TINY)
    assert all(reason.startswith("diverged") or "nan" in reason.lower() for reason in reasons), reasons
    # A λ list that does not fit the critic (one hidden layer) fails in the constructor: pruned, the study goes on.
    mismatch = "policy_kwargs:dict(net_arch=dict(pi=[32, 32], qf=[32]))"
    reasons = optimize("Pendulum-v1", "mismatch", [*TINY[:2], mismatch])
    expected = "invalid hyperparameters: HyperparameterError: er_lambda has 2 values"
    assert all(r.startswith(expected) for r in reasons), reasons
