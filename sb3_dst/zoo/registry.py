"""The algorithms sb3-dst adds to rl-zoo3 and their hyperparameter files (and the MuJoCo v2/v3 check, re-exported)."""

# The MuJoCo v2/v3 check lives in sb3_dst.common.env_ids (the algorithms use it too); re-exported here.
from sb3_dst.common.env_ids import MujocoPyRequiredError as MujocoPyRequiredError
from sb3_dst.common.env_ids import check_env_id as check_env_id
from sb3_dst.hyperparams import hyperparams_file

#: rl-zoo3 name -> class name in :mod:`sb3_dst`.
ZOO_ALGOS: dict[str, str] = {
    "ds_td3": "DSTD3",
    "ds_sac": "DSSAC",
    "static_td3": "StaticTD3",
    "static_sac": "StaticSAC",
    "pruned_td3": "PrunedTD3",
    "pruned_sac": "PrunedSAC",
    "ds_tqc": "DSTQC",
    "static_tqc": "StaticTQC",
    "pruned_tqc": "PrunedTQC",
    "ds_crossq": "DSCrossQ",
    "static_crossq": "StaticCrossQ",
    "pruned_crossq": "PrunedCrossQ",
    "ds_ddpg": "DSDDPG",
    "static_ddpg": "StaticDDPG",
    "pruned_ddpg": "PrunedDDPG",
}
#: Algorithms whose topology evolves (they take ``drop_fraction`` and ``evolution_interval``).
DYNAMIC_ALGOS = frozenset({"ds_td3", "ds_sac", "ds_tqc", "ds_crossq", "ds_ddpg"})
#: Algorithms built on TD3 or DDPG (deterministic actor, Gaussian exploration noise); the others are built on SAC,
#: TQC or CrossQ (stochastic actor, entropy coefficient).
TD3_ALGOS = frozenset({"ds_td3", "static_td3", "pruned_td3", "ds_ddpg", "static_ddpg", "pruned_ddpg"})
#: Algorithms built on DDPG (a subset of :data:`TD3_ALGOS`: no ``policy_delay`` nor target policy smoothing).
DDPG_ALGOS = frozenset({"ds_ddpg", "static_ddpg", "pruned_ddpg"})
#: Algorithms built on sb3-contrib's TQC (``n_quantiles``, ``top_quantiles_to_drop_per_net``).
TQC_ALGOS = frozenset({"ds_tqc", "static_tqc", "pruned_tqc"})
#: Algorithms built on sb3-contrib's CrossQ (no target networks: no ``tau`` nor ``target_update_interval``).
CROSSQ_ALGOS = frozenset({"ds_crossq", "static_crossq", "pruned_crossq"})
#: Algorithms that prune a dense start by magnitude (they take ``evolution_interval``, ``pruning_start``/``_end``).
PRUNING_ALGOS = frozenset({"pruned_td3", "pruned_sac", "pruned_tqc", "pruned_crossq", "pruned_ddpg"})
#: Algorithms with a fixed sparse topology.
STATIC_ALGOS = frozenset(name for name in ZOO_ALGOS if name.startswith("static_"))


# --------------------------------------------------------------------------------------------------------------
# Algorithms and hyperparameter files
# --------------------------------------------------------------------------------------------------------------


def algorithm_classes() -> dict[str, type]:
    """The rl-zoo3 names of :data:`ZOO_ALGOS` with their sb3-dst classes."""
    import sb3_dst

    return {name: getattr(sb3_dst, class_name) for name, class_name in ZOO_ALGOS.items()}


def default_config(algo: str) -> str | None:
    """sb3-dst's hyperparameter file of ``algo`` when it is one of :data:`ZOO_ALGOS`, else ``None``."""
    return str(hyperparams_file(algo)) if algo in ZOO_ALGOS else None
