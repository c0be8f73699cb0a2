"""What a benchmark run is: algorithm variants, their hyperparameters, and one run's full configuration.

Algorithms are named as in the paper: ``TD3``, ``Static-TD3``, ``DS-TD3``, ``SAC``, ``Static-SAC``, ``DS-SAC``, plus
the gradual-magnitude-pruning baselines ``Pruned-TD3`` and ``Pruned-SAC`` (dense to sparse, evolution_interval 1000),
and the same four variants of ``DDPG`` (SB3), ``TQC`` and ``CrossQ`` (sb3-contrib), e.g. ``DS-TQC``.
A *variant* adds keyword overrides after a colon, e.g. ``DS-TD3:evolution_interval=200`` or
``DS-TD3:sparsity=0.8,drop_fraction=0.1`` (values are Python literals).

Hyperparameters default to the paper's (Sokar et al. §4.4 for TD3, Appendix A for SAC; written out in the comments
of ``hyperparams/ds_td3.yml`` and ``hyperparams/ds_sac.yml``) for the TD3 and SAC families and to rl-zoo3's
tuned values of the dense algorithm for DDPG, TQC and CrossQ, the same as this repository's ``hyperparams/*.yml``
for rl-zoo3; ``--hyperparams DIR`` reads such rl-zoo3 files instead.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sb3_dst.families import FAMILIES, VARIANTS, by_harness_name
from sb3_dst.hyperparams import PAPER_SAC_TARGET_UPDATE, hyperparams_dir

__all__ = [
    "ALGORITHMS",
    "AlgoSpec",
    "RunConfig",
    "default_hyperparams",
    "family",
    "load_zoo_hyperparams",
    "resolve_hyperparams",
]

#: Harness name -> (``module:Class`` of the algorithm, rl-zoo3 hyperparameter file stem), from
#: :data:`sb3_dst.families.FAMILIES`: each family's dense algorithm, then its Static, DS and Pruned versions.
ALGORITHMS: dict[str, tuple[str, str]] = {
    family.harness_name(variant): (family.class_path(variant), family.zoo_name(variant))
    for family in FAMILIES
    for variant in (None, *VARIANTS)
}

#: The dense baseline of each family, for FLOPs ratios (each family is named after its dense algorithm).
DENSE_BASELINE = {family.name: family.name for family in FAMILIES}

# --- The paper's settings (Sokar et al. §4.4 and Appendix A) -------------------------------------------

_TD3_COMMON: dict[str, Any] = {
    "policy": "MlpPolicy",
    "learning_rate": 1e-3,
    "buffer_size": 1_000_000,
    "learning_starts": 25_000,
    "batch_size": 100,
    "tau": 0.005,
    "gamma": 0.99,
    "train_freq": 1,
    "gradient_steps": 1,
    "policy_delay": 2,
    "target_policy_noise": 0.2,
    "target_noise_clip": 0.5,
    "noise_type": "normal",
    "noise_std": 0.1,
    "policy_kwargs": {"net_arch": [256, 256], "optimizer_kwargs": {"weight_decay": 2e-4}},
}
_SAC_COMMON: dict[str, Any] = {
    "policy": "MlpPolicy",
    "learning_rate": 3e-4,
    "buffer_size": 1_000_000,
    "learning_starts": 10_000,  # not in the paper; the usual SAC setting on MuJoCo
    "batch_size": 256,
    "gamma": 0.99,
    "train_freq": 1,
    "gradient_steps": 1,
    "ent_coef": 0.2,
    "policy_kwargs": {"net_arch": [256, 256]},
}
# Dense SAC: main-text soft update. Sparse SAC (Appendix A): hard update every 1000 gradient steps
# (PAPER_SAC_TARGET_UPDATE). The zoo files of the sparse SACs use SB3's soft one, which rl-zoo3's dense SAC uses too,
# so that `--algo ds_sac` differs from `--algo sac` only in its topology; the paper's hard copy is one
# `-conf sb3_dst.hyperparams.ds_sac_paper` away (sb3_dst/hyperparams/ds_sac_paper.py).
_SAC_SOFT = {"tau": 0.005, "target_update_interval": 1}
# DDPG, TQC and CrossQ have no settings in the paper: rl-zoo3's tuned MuJoCo values for the dense algorithm
# (rl_zoo3/hyperparams/{ddpg,tqc,crossq}.yml, the v4 entries, used for v5 too), else the library's defaults.
# The sparse variants keep the dense settings (TQC keeps its soft target update) so that only the topology differs.
# DDPG (rl-zoo3's MuJoCo entries): 400-300 networks, batch 256, lr 1e-3, 10,000 random steps, Gaussian noise 0.1.
_DDPG_COMMON: dict[str, Any] = {
    "policy": "MlpPolicy",
    "learning_rate": 1e-3,
    "buffer_size": 1_000_000,
    "learning_starts": 10_000,
    "batch_size": 256,
    "tau": 0.005,
    "gamma": 0.99,
    "train_freq": 1,
    "gradient_steps": 1,
    "noise_type": "normal",
    "noise_std": 0.1,
    "policy_kwargs": {"net_arch": [400, 300]},
}
# TQC (rl-zoo3's MuJoCo entries are the library defaults with 10,000 random steps; Hopper drops 5 quantiles per
# network): 256-256, 25 quantiles, 2 dropped per network, soft target update, learned entropy coefficient.
_TQC_COMMON: dict[str, Any] = {
    "policy": "MlpPolicy",
    "learning_rate": 3e-4,
    "buffer_size": 1_000_000,
    "learning_starts": 10_000,
    "batch_size": 256,
    "tau": 0.005,
    "gamma": 0.99,
    "train_freq": 1,
    "gradient_steps": 1,
    "ent_coef": "auto",
    "target_update_interval": 1,
    "top_quantiles_to_drop_per_net": 2,
    "policy_kwargs": {"net_arch": [256, 256], "n_quantiles": 25, "n_critics": 2},
}
_TQC_BY_NAME: dict[str, dict[str, Any]] = {"Hopper": {"top_quantiles_to_drop_per_net": 5}}
# CrossQ: the library's networks (actor 256-256, critics 1024-1024 with BatchRenorm), policy_delay 3, no targets,
# SAC's 10,000 random steps; on the MuJoCo tasks rl-zoo3's tuned values: critics 2048-2048, 5,000 random steps.
_CROSSQ_COMMON: dict[str, Any] = {
    "policy": "MlpPolicy",
    "learning_rate": 1e-3,
    "buffer_size": 1_000_000,
    "learning_starts": 10_000,
    "batch_size": 256,
    "gamma": 0.99,
    "train_freq": 1,
    "gradient_steps": 1,
    "ent_coef": "auto",
    "policy_delay": 3,
    "policy_kwargs": {"net_arch": {"pi": [256, 256], "qf": [1024, 1024]}},
}
_CROSSQ_MUJOCO: dict[str, Any] = {
    "learning_starts": 5_000,
    "policy_kwargs": {"net_arch": {"pi": [256, 256], "qf": [2048, 2048]}},
}
#: The families whose settings are written here (the others read their rl-zoo3 files).
_BUILT_IN = ("TD3", "SAC", "DDPG", "TQC", "CrossQ")
#: The tasks with rl-zoo3 tuned values for DDPG, TQC and CrossQ (their v4 and v5 ids).
_MUJOCO_TASKS = ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid")

# λ1/λ2 per task (v4 and v5 ids). λ1 for Ant/Humanoid v5 rescaled to the v3 sparsity level, as in the
# repository's hyperparams/*.yml (see their comments); other tasks get 50 % sparsity.
_TD3_LAMBDA: dict[str, list[float]] = {"HalfCheetah": [7, 64], "Hopper": [7, 64], "Walker2d": [7, 64]}
_TD3_LAMBDA_BY_ID: dict[str, list[float]] = {
    "Ant-v4": [14.36, 64],
    "Ant-v5": [38.56, 64],
    "Humanoid-v4": [61, 64],
    "Humanoid-v5": [59.17, 64],
}
_SAC_LAMBDA: dict[str, list[float]] = {"HalfCheetah": [12, 80], "Hopper": [7, 20], "Walker2d": [12, 80]}
_SAC_LAMBDA_BY_ID: dict[str, list[float]] = {
    "Ant-v4": [10.77, 64],
    "Ant-v5": [28.92, 64],
    "Humanoid-v4": [61, 64],
    "Humanoid-v5": [59.17, 64],
}
_MUJOCO_VERSIONS = ("v4", "v5")


def family(algo: str) -> str:
    """The dense algorithm a (variant of an) algorithm builds on: ``"TD3"``, ``"SAC"``, ``"DDPG"``, ``"TQC"`` or
    ``"CrossQ"`` (its family's name in :data:`sb3_dst.families.FAMILIES`)."""
    return by_harness_name(AlgoSpec.parse(algo).base).name


def _topology(env_id: str, by_name: Mapping[str, list[float]], by_id: Mapping[str, list[float]]) -> dict[str, Any]:
    name, _, version = env_id.partition("-")
    if env_id in by_id:
        return {"er_lambda": list(by_id[env_id])}
    if name in by_name and version in _MUJOCO_VERSIONS:
        return {"er_lambda": list(by_name[name])}
    return {"sparsity": 0.5}


def default_hyperparams(algo: str, env_id: str) -> dict[str, Any]:
    """The paper's hyperparameters for base algorithm ``algo`` on ``env_id`` (rl-zoo3 keys).

    TD3 and SAC: the paper's; DDPG, TQC and CrossQ: rl-zoo3's tuned values of the dense algorithm. A family with no
    settings written here takes those of its rl-zoo3 file in sb3-dst's ``hyperparams/`` (the entry for
    ``env_id``, else ``default``).
    """
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algo!r}; choose from {', '.join(ALGORITHMS)}")
    dense = family(algo)
    if dense not in _BUILT_IN:
        params = load_zoo_hyperparams(hyperparams_dir(), algo, env_id)
        if params is None:
            raise ValueError(f"{algo}: {ALGORITHMS[algo][1]}.yml has no entry for {env_id} nor a default one")
        return params
    if dense in ("DDPG", "TQC", "CrossQ"):
        name, _, version = env_id.partition("-")
        mujoco = name in _MUJOCO_TASKS and version in _MUJOCO_VERSIONS
        params = copy.deepcopy({"DDPG": _DDPG_COMMON, "TQC": _TQC_COMMON, "CrossQ": _CROSSQ_COMMON}[dense])
        if dense == "TQC" and mujoco:
            params.update(copy.deepcopy(_TQC_BY_NAME.get(name, {})))
        if dense == "CrossQ" and mujoco:
            params.update(copy.deepcopy(_CROSSQ_MUJOCO))
        if algo != dense:
            # TQC's networks are SAC's (256-256): the λ of DS-SAC. DDPG's (400-300) are not the paper's and CrossQ's
            # critics are 4-8x wider than its actor, so one λ would give them very different densities: the
            # sparsity level of the paper's networks (50 %) instead.
            params.update(_topology(env_id, _SAC_LAMBDA, _SAC_LAMBDA_BY_ID) if dense == "TQC" else {"sparsity": 0.5})
        if algo.startswith("DS-"):
            params.update(drop_fraction=0.05 if dense == "DDPG" else 0.1, evolution_interval=1000)
        if algo.startswith("Pruned-"):
            params.update(evolution_interval=1000)
        return params
    if dense == "TD3":
        params = copy.deepcopy(_TD3_COMMON)
        if algo != dense:
            params.update(_topology(env_id, _TD3_LAMBDA, _TD3_LAMBDA_BY_ID))
        if algo.startswith("DS-"):
            params.update(drop_fraction=0.05, evolution_interval=1000)
        if algo.startswith("Pruned-"):
            params.update(evolution_interval=1000)
        return params
    params = copy.deepcopy(_SAC_COMMON)
    if algo == "SAC":
        params.update(_SAC_SOFT)
        return params
    params.update(PAPER_SAC_TARGET_UPDATE)
    params.update(_topology(env_id, _SAC_LAMBDA, _SAC_LAMBDA_BY_ID))
    if algo == "DS-SAC":
        params.update(drop_fraction=0.1, evolution_interval=1000)
    if algo == "Pruned-SAC":
        params.update(evolution_interval=1000)
    return params


# --- rl-zoo3 hyperparameter files ---------------------------------------------------------------------

_ZOO_IGNORED = {"n_timesteps"}
_ZOO_UNSUPPORTED = {"normalize", "env_wrapper", "frame_stack", "callback", "n_envs", "vec_env_wrapper"}


def load_zoo_hyperparams(directory: str | Path, algo: str, env_id: str) -> dict[str, Any] | None:
    """The entry for ``env_id`` (else ``default``) of ``directory/<algo file>.yml``, or None if no such file.

    ``policy_kwargs`` strings are evaluated (``dict(...)`` only); keys the benchmark cannot honour
    (normalisation, wrappers, several envs) raise ``ValueError``, and so does a ``directory`` that does not
    exist (a mistyped path would otherwise run every algorithm on the built-in defaults).
    """
    import yaml

    if not Path(directory).is_dir():
        raise ValueError(f"hyperparameter directory {directory} does not exist")
    path = Path(directory) / f"{ALGORITHMS[algo][1]}.yml"
    if not path.exists():
        return None
    with open(path) as file:
        entries = yaml.safe_load(file)
    entry = entries.get(env_id, entries.get("default"))
    if entry is None:
        return None
    params = {k: v for k, v in entry.items() if k not in _ZOO_IGNORED}
    unsupported = sorted(set(params) & _ZOO_UNSUPPORTED)
    if unsupported:
        raise ValueError(f"{path} [{env_id}]: the benchmark does not support {unsupported}")
    if isinstance(params.get("policy_kwargs"), str):
        params["policy_kwargs"] = eval(params["policy_kwargs"], {"__builtins__": {}, "dict": dict})
    return params


#: Prefix of a sparsity value that matches a dense network's connection count, e.g. ``critic_sparsity='match:256-256'``.
MATCH_PREFIX = "match:"


def _resolve_matching_sparsity(params: dict[str, Any], dense: str, env_id: str) -> None:
    """Replace ``actor_sparsity``/``critic_sparsity`` values ``'match:W1-W2'`` by the sparsity at which the network
    has as many connections as a dense one with hidden layers W1-W2
    (:func:`~sb3_dst.common.topology.matching_sparsity`, with the task's input and output sizes)."""
    keys = [k for k, v in params.items() if isinstance(v, str) and v.startswith(MATCH_PREFIX)]
    if not keys:
        return
    if "sparsity" in keys:
        raise ValueError(
            "sparsity='match:...' is ambiguous (actor and critic differ): use actor_sparsity and critic_sparsity"
        )
    import gymnasium as gym

    from sb3_dst.common.topology import matching_sparsity

    policy_kwargs = params.get("policy_kwargs") or {}
    arch = policy_kwargs.get("net_arch")
    if arch is None:
        raise ValueError(f"{keys[0]}='match:...' needs the network's net_arch in policy_kwargs")
    env = gym.make(env_id)
    n_obs, n_act = math.prod(env.observation_space.shape or ()), math.prod(env.action_space.shape or ())
    env.close()
    row = by_harness_name(dense)
    two_heads = row.actor == "gaussian"  # a Gaussian actor's mean and log-std layers
    critic_outputs = int(policy_kwargs.get("n_quantiles", 25)) if row.quantile_critics else 1
    outputs = {
        "actor_sparsity": ("pi", n_obs, n_act * (2 if two_heads else 1)),
        "critic_sparsity": ("qf", n_obs + n_act, critic_outputs),
    }
    for key in keys:
        if key not in outputs:
            raise ValueError(f"{key}='match:...': only actor_sparsity and critic_sparsity can match a dense network")
        part, n_in, n_out = outputs[key]
        hidden = arch[part] if isinstance(arch, dict) else arch
        try:
            dense_arch = [int(width) for width in params[key][len(MATCH_PREFIX) :].split("-")]
        except ValueError:
            raise ValueError(
                f"{key}={params[key]!r}: expected 'match:' and hidden widths, e.g. 'match:256-256'"
            ) from None
        params[key] = round(
            matching_sparsity(
                n_in, n_out, hidden, dense_arch, bool(params.get("sparse_output_layer", False)),
                params.get("sparsity_distribution", "erk"), float(params.get("erk_power_scale", 1.0)),
            ),
            6,
        )  # fmt: skip


def resolve_hyperparams(
    spec: AlgoSpec,
    env_id: str,
    hyperparams_dir: str | Path | None = None,
    learning_starts: int | None = None,
    net_arch: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Constructor keywords (rl-zoo3 style, JSON-serialisable) of one algorithm variant on one task.

    Order: the paper's defaults (or the rl-zoo3 file in ``hyperparams_dir`` when it has one), then the
    variant's overrides, then ``learning_starts`` and ``net_arch``. ``sparsity`` and ``er_lambda`` exclude
    each other: setting one in a variant drops the other.
    """
    params = None
    if hyperparams_dir is not None:
        params = load_zoo_hyperparams(hyperparams_dir, spec.base, env_id)
    if params is None:
        params = default_hyperparams(spec.base, env_id)
    overrides = dict(spec.overrides)
    for key, other in (("sparsity", "er_lambda"), ("er_lambda", "sparsity")):
        if key in overrides:
            params.pop(other, None)
    params.update(overrides)
    if learning_starts is not None:
        params["learning_starts"] = learning_starts
    if net_arch is not None:
        params["policy_kwargs"] = {**params.get("policy_kwargs", {}), "net_arch": list(net_arch)}
    _resolve_matching_sparsity(params, family(spec.base), env_id)
    try:
        json.dumps(params)
    except TypeError as error:
        raise ValueError(f"{spec.label} on {env_id}: hyperparameters must be plain values ({error})") from None
    return params


# --- Variants and runs --------------------------------------------------------------------------------


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets: ``"a=[1, 2],b=3"`` -> ``["a=[1, 2]", "b=3"]``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


@dataclass(frozen=True)
class AlgoSpec:
    """An algorithm with optional keyword overrides: ``BASE[:key=value,...]``."""

    base: str
    overrides: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> AlgoSpec:
        base, _, rest = text.partition(":")
        base = base.strip()
        if base not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {base!r} in {text!r}; choose from {', '.join(ALGORITHMS)}")
        overrides = []
        for item in _split_top_level(rest):
            key, sep, value = item.partition("=")
            if not sep or not key.strip().isidentifier():
                raise ValueError(f"bad override {item!r} in {text!r}: use key=value")
            try:
                parsed = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                parsed = value.strip()
            overrides.append((key.strip(), parsed))
        return cls(base, tuple(overrides))

    @property
    def label(self) -> str:
        """Display name, e.g. ``DS-TD3`` or ``DS-TD3 (evolution_interval=200)``."""
        if not self.overrides:
            return self.base
        return f"{self.base} ({', '.join(f'{k}={v!r}' for k, v in self.overrides)})"

    @property
    def slug(self) -> str:
        """File-name-safe identifier."""
        text = self.base + "".join(f"__{k}-{v}" for k, v in self.overrides)
        return re.sub(r"[^A-Za-z0-9_.-]+", "", text.replace(" ", "").replace(",", "-"))


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run; a finished run is reused only if its config is identical."""

    algo: str  # variant text as given, e.g. "DS-TD3:evolution_interval=200"
    env_id: str
    seed: int
    total_timesteps: int
    eval_freq: int
    eval_episodes: int
    hyperparams: dict[str, Any] = field(default_factory=dict)
    #: Treat denormal floats as zero in the run (``torch.set_flush_denormal(True)``): on x86 CPUs they pile up in
    #: dense TD3's weights and Adam moments and slow it down about threefold; flushing changes the last bits.
    flush_denormal: bool = False

    @property
    def spec(self) -> AlgoSpec:
        return AlgoSpec.parse(self.algo)

    @property
    def run_id(self) -> str:
        return f"{self.env_id}__{self.spec.slug}__seed{self.seed}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.flush_denormal:
            del data["flush_denormal"]  # runs from before the option keep their digest
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunConfig:
        return cls(**data)

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]
