"""The algorithms sb3-dst adds to rl-zoo3 (from :data:`sb3_dst.families.FAMILIES`) and their hyperparameter files
(and the MuJoCo v2/v3 check, re-exported)."""

# The MuJoCo v2/v3 check lives in sb3_dst.common.env_ids (the algorithms use it too); re-exported here.
from sb3_dst.common.env_ids import MujocoPyRequiredError as MujocoPyRequiredError
from sb3_dst.common.env_ids import check_env_id as check_env_id
from sb3_dst.families import FAMILIES, Family, Variant, resolve
from sb3_dst.hyperparams import hyperparams_file

#: rl-zoo3 name -> the family it belongs to, from :data:`sb3_dst.families.FAMILIES`.
ZOO_FAMILIES: dict[str, Family] = {
    family.zoo_name(variant): family for family in FAMILIES for variant in ("ds", "static", "pruned")
}
#: rl-zoo3 name -> its variant (``"ds"``, ``"static"`` or ``"pruned"``).
VARIANT_OF: dict[str, Variant] = {
    family.zoo_name(variant): variant for family in FAMILIES for variant in ("ds", "static", "pruned")
}
#: rl-zoo3 name -> ``module:Class`` of its sb3-dst class.
ZOO_ALGOS: dict[str, str] = {name: family.class_path(VARIANT_OF[name]) for name, family in ZOO_FAMILIES.items()}
#: Algorithms whose topology evolves (they take ``drop_fraction`` and ``evolution_interval``).
DYNAMIC_ALGOS = frozenset(family.zoo_name("ds") for family in FAMILIES)
#: Algorithms with a deterministic actor and Gaussian exploration noise (TD3, DDPG); the others have a stochastic
#: actor and an entropy coefficient (SAC, TQC, CrossQ).
TD3_ALGOS = frozenset(name for name, family in ZOO_FAMILIES.items() if family.actor == "deterministic")
#: Deterministic-actor algorithms without TD3's ``policy_delay`` nor target policy smoothing (DDPG).
DDPG_ALGOS = frozenset(name for name in TD3_ALGOS if not ZOO_FAMILIES[name].policy_smoothing)
#: Algorithms whose critics output quantiles (TQC: ``n_quantiles``, ``top_quantiles_to_drop_per_net``).
TQC_ALGOS = frozenset(name for name, family in ZOO_FAMILIES.items() if family.quantile_critics)
#: Algorithms without target networks (CrossQ: no ``tau`` nor ``target_update_interval``).
CROSSQ_ALGOS = frozenset(name for name, family in ZOO_FAMILIES.items() if not family.has_targets)
#: Algorithms that prune a dense start by magnitude (they take ``evolution_interval``, ``pruning_start``/``_end``).
PRUNING_ALGOS = frozenset(family.zoo_name("pruned") for family in FAMILIES)
#: Algorithms with a fixed sparse topology.
STATIC_ALGOS = frozenset(family.zoo_name("static") for family in FAMILIES)


# --------------------------------------------------------------------------------------------------------------
# Algorithms and hyperparameter files
# --------------------------------------------------------------------------------------------------------------


def algorithm_classes() -> dict[str, type]:
    """The rl-zoo3 names of :data:`ZOO_ALGOS` with their sb3-dst classes (imported now)."""
    return {name: resolve(path) for name, path in ZOO_ALGOS.items()}


def default_config(algo: str) -> str | None:
    """sb3-dst's hyperparameter file of ``algo`` when it is one of :data:`ZOO_ALGOS`, else ``None``."""
    return str(hyperparams_file(algo)) if algo in ZOO_ALGOS else None
