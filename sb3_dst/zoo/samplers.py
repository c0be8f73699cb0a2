"""Optuna samplers and converters of sb3-dst's algorithms (rl-zoo3's ``HYPERPARAMS_SAMPLER`` signature)."""

import contextvars
import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from gymnasium import spaces
from stable_baselines3.common.noise import NormalActionNoise

from sb3_dst.zoo.registry import CROSSQ_ALGOS, DYNAMIC_ALGOS, PRUNING_ALGOS, STATIC_ALGOS, ZOO_ALGOS, ZOO_FAMILIES

#: Trial user attribute with the largest λ of each sparse layer (density 1), set before sampling.
LAMBDA_MAX_ATTR = "er_lambda_max"
#: Bounds used when a trial carries no :data:`LAMBDA_MAX_ATTR`: those of a 256-256 network on HalfCheetah.
DEFAULT_LAMBDA_MAX = (15.9, 128.0)
#: λ_l is sampled log-uniformly in [λmax_l / LAMBDA_RANGE, λmax_l], i.e. a density between 5 % and 100 %.
LAMBDA_RANGE = 20.0
#: ``policy_kwargs`` of the hyperparameter file during one trial (set by sb3-dst's objective): rl-zoo3 replaces the
#: file's ``policy_kwargs`` by the sampled one, so the TQC samplers put ``n_quantiles`` into a copy of it.
FILE_POLICY_KWARGS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "sb3_dst_file_policy_kwargs", default=None
)
#: HER's parameters that rl-zoo3's ``sample_her_params`` samples when the file uses ``HerReplayBuffer``.
HER_KEYS = ("n_sampled_goal", "goal_selection_strategy")
#: TQC's default number of quantiles per critic (its output layer's width).
TQC_DEFAULT_N_QUANTILES = 25


def default_net_arch(algo: str) -> list[int] | dict[str, list[int]]:
    """The ``net_arch`` zoo algorithm ``algo`` builds when ``policy_kwargs`` has none: its family's
    ``default_net_arch`` (256-256, the paper's, except CrossQ's own, whose critics are 1024 wide)."""
    net_arch = ZOO_FAMILIES[algo].default_net_arch
    if isinstance(net_arch, dict):
        return {key: list(value) for key, value in net_arch.items()}
    return list(net_arch)


def critic_outputs(algo: str, policy_kwargs: dict[str, Any] | None) -> int:
    """Width of the critic's output layer: ``n_quantiles`` for quantile critics (TQC), else 1."""
    if ZOO_FAMILIES[algo].quantile_critics:
        return int((policy_kwargs or {}).get("n_quantiles", TQC_DEFAULT_N_QUANTILES))
    return 1


# --------------------------------------------------------------------------------------------------------------
# Optuna: samplers and converters
# --------------------------------------------------------------------------------------------------------------


def max_er_lambdas(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    net_arch: list[int] | dict[str, list[int]] | None = None,
    sparse_output_layer: bool = False,
    critic_output_dim: int = 1,
) -> list[float]:
    """Largest λ of each sparse layer index (density 1 in every network that has that layer).

    A layer with ``n_in`` inputs and ``n_out`` outputs can hold ``n_in n_out`` connections and λ gives it
    ``λ (n_in + n_out)``, so its largest λ is ``n_in n_out / (n_in + n_out)``. The actor's layers start from the
    observation, the critics' from observation and action; the same λ list goes to both, so each bound is
    the smaller of the two. With ``sparse_output_layer`` the last bound covers the output layers too.

    :param net_arch: as in ``policy_kwargs`` (list, or dict with ``pi`` and ``qf``); default 256-256 (pass
        :func:`default_net_arch` for CrossQ, whose own default is wider).
    :param critic_output_dim: outputs of each critic (TQC: ``n_quantiles``), for ``sparse_output_layer``.
    """
    from stable_baselines3.common.preprocessing import get_action_dim, get_flattened_obs_dim

    obs_dim = get_flattened_obs_dim(observation_space)
    act_dim = get_action_dim(action_space)
    if net_arch is None:
        net_arch = [256, 256]
    pi, qf = (net_arch["pi"], net_arch["qf"]) if isinstance(net_arch, dict) else (net_arch, net_arch)
    actor = list(zip([obs_dim, *pi[:-1]], pi, strict=True))
    critic = list(zip([obs_dim + act_dim, *qf[:-1]], qf, strict=True))
    if sparse_output_layer:
        actor.append((pi[-1] if pi else obs_dim, act_dim))
        critic.append((qf[-1] if qf else obs_dim + act_dim, critic_output_dim))
    bounds: list[float] = []
    for index in range(max(len(actor), len(critic))):
        shapes = [net[index] for net in (actor, critic) if index < len(net)]
        bounds.append(min(n_in * n_out / (n_in + n_out) for n_in, n_out in shapes))
    return bounds


def _sample_lambdas(trial: optuna.Trial) -> dict[str, float]:
    bounds = trial.user_attrs.get(LAMBDA_MAX_ATTR) or list(DEFAULT_LAMBDA_MAX)
    return {
        f"er_lambda_{index}": trial.suggest_float(f"er_lambda_{index}", high / LAMBDA_RANGE, high, log=True)
        for index, high in enumerate(bounds, start=1)
    }


#: Environment variable naming the extra dimensions a sweep should search (comma-separated keys of
#: :data:`SEARCHABLE`), e.g. ``SB3_DST_SEARCH=growth,drop_fraction_schedule,sparsity``. Unset: the paper's λ, η, e.
SEARCH_ENV = "SB3_DST_SEARCH"
#: Opt-in search dimensions, with the algorithms that take them.
SEARCHABLE: dict[str, frozenset[str]] = {
    "sparsity": DYNAMIC_ALGOS | PRUNING_ALGOS | STATIC_ALGOS,
    "sparsity_distribution": DYNAMIC_ALGOS | PRUNING_ALGOS | STATIC_ALGOS,
    "target_pruning": (DYNAMIC_ALGOS | PRUNING_ALGOS | STATIC_ALGOS) - CROSSQ_ALGOS,  # without targets (CrossQ)
    "growth": DYNAMIC_ALGOS,
    "drop_fraction_schedule": DYNAMIC_ALGOS,
}
#: Range of the global ``sparsity`` when it is searched (instead of λ per layer).
SPARSITY_RANGE = (0.5, 0.98)


def searched_dimensions(algo: str) -> list[str]:
    """The opt-in dimensions of :data:`SEARCH_ENV` that apply to ``algo``, and ``sparsity`` for CrossQ, which
    always samples it.

    :raises ValueError: for an unknown key, naming the valid ones.
    """
    keys = [key.strip() for key in os.environ.get(SEARCH_ENV, "").split(",") if key.strip()]
    unknown = sorted(set(keys) - set(SEARCHABLE))
    if unknown:
        raise ValueError(f"{SEARCH_ENV} has unknown keys {unknown}; valid keys: {', '.join(SEARCHABLE)}")
    if not ZOO_FAMILIES[algo].per_layer_lambda and "sparsity" not in keys:
        # CrossQ samples one sparsity level instead of λ per layer: a λ list is shared by actor and critics, so its
        # bounds are the narrow 256-wide actor's, which would keep the 1024- or 2048-wide critics' second layer at
        # most 25 % or 12.5 % dense (its files use 50 %); ERK then gives each network its own per-layer densities.
        keys.insert(0, "sparsity")
    if "sparsity_distribution" in keys and "sparsity" not in keys:
        raise ValueError(f"{SEARCH_ENV}: sparsity_distribution spreads a sampled `sparsity`; add sparsity too")
    return [key for key in keys if algo in SEARCHABLE[key]]


def _sample_common(trial: optuna.Trial, algo: str) -> dict[str, Any]:
    extra = searched_dimensions(algo)
    params: dict[str, Any] = {
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.001, 0.05, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
    }
    if "sparsity" in extra:
        params["sparsity"] = trial.suggest_float("sparsity", *SPARSITY_RANGE)
        if "sparsity_distribution" in extra:
            params["sparsity_distribution"] = trial.suggest_categorical("sparsity_distribution", ["erk", "uniform"])
    else:
        params.update(_sample_lambdas(trial))
    if algo in DYNAMIC_ALGOS:
        params["drop_fraction"] = trial.suggest_float("drop_fraction", 0.01, 0.5, log=True)
        params["evolution_interval"] = trial.suggest_int("evolution_interval", 100, 10_000, log=True)
        if "growth" in extra:
            params["growth"] = trial.suggest_categorical("growth", ["random", "gradient"])
        if "drop_fraction_schedule" in extra:
            params["drop_fraction_schedule"] = trial.suggest_categorical(
                "drop_fraction_schedule", ["constant", "cosine"]
            )
    if algo in PRUNING_ALGOS:
        params["evolution_interval"] = trial.suggest_int("evolution_interval", 100, 10_000, log=True)
    if "target_pruning" in extra:
        params["target_pruning"] = trial.suggest_categorical("target_pruning", ["magnitude", "online_mask"])
    return params


def _sample_td3(trial: optuna.Trial, algo: str) -> dict[str, Any]:
    params = _sample_common(trial, algo)
    params["batch_size"] = trial.suggest_categorical("batch_size", [64, 100, 128, 256, 512])
    params["tau"] = trial.suggest_float("tau", 0.001, 0.02, log=True)
    if ZOO_FAMILIES[algo].policy_smoothing:  # DDPG has neither policy delay nor target smoothing (DSDDPG refuses them)
        params["policy_delay"] = trial.suggest_int("policy_delay", 1, 3)
        params["target_policy_noise"] = trial.suggest_float("target_policy_noise", 0.05, 0.5)
    params["noise_std"] = trial.suggest_float("noise_std", 0.05, 0.5)
    return params


def _sample_sac(trial: optuna.Trial, algo: str) -> dict[str, Any]:
    params = _sample_common(trial, algo)
    params["batch_size"] = trial.suggest_categorical("batch_size", [64, 128, 256, 512])
    params["ent_coef"] = trial.suggest_float("ent_coef", 0.01, 1.0, log=True)
    family = ZOO_FAMILIES[algo]
    if family.quantile_critics:  # rl-zoo3's TQC ranges; TQC keeps its soft target update (tau of the file, every step)
        n_quantiles = trial.suggest_int("n_quantiles", 5, 50)
        params["n_quantiles"] = n_quantiles
        params["top_quantiles_to_drop_per_net"] = trial.suggest_int(
            "top_quantiles_to_drop_per_net", 0, min(n_quantiles - 1, 5)
        )
    elif family.target_update.counted == "global" and family.target_update.interval == "target_update_interval":  # SAC
        # Both target updates, each with its own parameter, so a sample is consistent whatever the file holds:
        # soft (SB3's, sb3-dst's default: tau every gradient step) or hard (the paper's: tau = 1 every
        # `target_update_interval` gradient steps, counted globally).
        params["target_update"] = trial.suggest_categorical("target_update", ["soft", "hard"])
        if params["target_update"] == "soft":
            params["tau"] = trial.suggest_float("tau", 0.001, 0.02, log=True)
        else:
            params["target_update_interval"] = trial.suggest_int("target_update_interval", 100, 5000, log=True)
    return params


def convert_dst_params(params: dict[str, Any]) -> dict[str, Any]:
    """Turn sampled Optuna parameters (``trial.params``) into hyperparameters of the zoo files.

    ``one_minus_gamma`` becomes ``gamma``; ``er_lambda_1``, ``er_lambda_2``, ... become the list ``er_lambda``;
    ``noise_std`` becomes ``noise_type: normal`` with that ``noise_std`` (rl-zoo3 builds the noise object);
    ``target_update`` (SAC) becomes ``target_update_interval: 1`` when ``"soft"`` (the sampled ``tau`` every
    gradient step) and ``tau: 1.0`` when ``"hard"`` (a copy every sampled ``target_update_interval`` steps);
    ``n_quantiles`` (TQC) moves into ``policy_kwargs`` (as rl-zoo3's TQC converter does: with ``--trial-id``,
    that ``policy_kwargs`` replaces the file's, which sb3-dst's TQC files leave at TQC's defaults apart from
    ``n_quantiles``); HER's ``n_sampled_goal`` and ``goal_selection_strategy`` move into ``replay_buffer_kwargs``
    (likewise replacing the file's, whose HER entries hold just these two). Other parameters keep their names.
    This is rl-zoo3's ``HYPERPARAMS_CONVERTER`` entry of sb3-dst's algorithms, used when ``--trial-id`` loads a
    trial.
    """
    hyperparams = dict(params)
    if "one_minus_gamma" in hyperparams:
        hyperparams["gamma"] = 1.0 - hyperparams.pop("one_minus_gamma")
    lambda_keys = sorted(
        (key for key in hyperparams if re.fullmatch(r"er_lambda_\d+", key)), key=lambda key: int(key.split("_")[-1])
    )
    if lambda_keys:
        hyperparams["er_lambda"] = [float(hyperparams.pop(key)) for key in lambda_keys]
        hyperparams["sparsity"] = None
    elif hyperparams.get("sparsity") is not None:
        hyperparams["er_lambda"] = None
    if "noise_std" in hyperparams:
        hyperparams["noise_type"] = "normal"
    target_update = hyperparams.pop("target_update", None)
    if target_update == "soft":
        hyperparams["target_update_interval"] = 1
    elif target_update == "hard":
        hyperparams["tau"] = 1.0
    elif target_update is not None:
        raise ValueError(f"target_update must be 'soft' or 'hard', got {target_update!r}")
    if "n_quantiles" in hyperparams:
        policy_kwargs = dict(hyperparams.get("policy_kwargs") or {})
        policy_kwargs["n_quantiles"] = hyperparams.pop("n_quantiles")
        hyperparams["policy_kwargs"] = policy_kwargs
    her = {key: hyperparams.pop(key) for key in HER_KEYS if key in hyperparams}
    if her:
        hyperparams["replay_buffer_kwargs"] = {**(hyperparams.get("replay_buffer_kwargs") or {}), **her}
    return hyperparams


def _sampler(algo: str) -> Callable[[optuna.Trial, int, int, dict], dict[str, Any]]:
    sample = _sample_td3 if ZOO_FAMILIES[algo].actor == "deterministic" else _sample_sac

    def sample_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
        sampled = sample(trial, algo)
        if "n_quantiles" in sampled:  # keep the file's other policy_kwargs (rl-zoo3 replaces the whole dict)
            sampled["policy_kwargs"] = dict(FILE_POLICY_KWARGS.get() or {})
        hyperparams = convert_dst_params(sampled)
        if additional_args.get("using_her_replay_buffer"):
            # rl-zoo3's own HER sampler (n_sampled_goal, goal_selection_strategy), on top of the file's HER kwargs
            from rl_zoo3.hyperparams_opt import sample_her_params  # here: rl-zoo3 imports this module while loading

            hyperparams = sample_her_params(trial, hyperparams, additional_args.get("her_kwargs") or {})
        if "noise_std" in hyperparams:  # rl-zoo3's objective passes these straight to the constructor
            std = hyperparams.pop("noise_std")
            hyperparams.pop("noise_type")
            hyperparams["action_noise"] = NormalActionNoise(mean=np.zeros(n_actions), sigma=std * np.ones(n_actions))
        return hyperparams

    sample_params.__name__ = f"sample_{algo}_params"
    sample_params.__qualname__ = sample_params.__name__
    sample_params.__doc__ = f"""Optuna sampler of ``{algo}``: the ranges of :func:`sample_ds_td3_params` (deterministic
    actor) or :func:`sample_ds_sac_params` (Gaussian actor), as its family's row in :mod:`sb3_dst.families` says."""
    return sample_params


#: rl-zoo3 name -> its Optuna sampler, for every algorithm of :data:`~sb3_dst.zoo.registry.ZOO_ALGOS` (that is, of
#: :data:`sb3_dst.families.FAMILIES`); what each samples follows from its family's row.
SAMPLERS: dict[str, Callable[[optuna.Trial, int, int, dict], dict[str, Any]]] = {
    algo: _sampler(algo) for algo in ZOO_ALGOS
}
sample_ds_td3_params = SAMPLERS["ds_td3"]
sample_static_td3_params = SAMPLERS["static_td3"]
sample_pruned_td3_params = SAMPLERS["pruned_td3"]
sample_ds_sac_params = SAMPLERS["ds_sac"]
sample_static_sac_params = SAMPLERS["static_sac"]
sample_pruned_sac_params = SAMPLERS["pruned_sac"]
sample_ds_tqc_params = SAMPLERS["ds_tqc"]
sample_static_tqc_params = SAMPLERS["static_tqc"]
sample_pruned_tqc_params = SAMPLERS["pruned_tqc"]
sample_ds_crossq_params = SAMPLERS["ds_crossq"]
sample_static_crossq_params = SAMPLERS["static_crossq"]
sample_pruned_crossq_params = SAMPLERS["pruned_crossq"]
sample_ds_ddpg_params = SAMPLERS["ds_ddpg"]
sample_static_ddpg_params = SAMPLERS["static_ddpg"]
sample_pruned_ddpg_params = SAMPLERS["pruned_ddpg"]
sample_ds_td3_params.__doc__ = """Optuna sampler of ``ds_td3`` (rl-zoo3's ``HYPERPARAMS_SAMPLER`` signature).

Ranges (log = log-uniform). The network (``net_arch``, weight decay: ``policy_kwargs``) and every other key stay
as in the hyperparameter file; ``er_lambda``/``sparsity`` of the file are replaced by the sampled λ.

=======================  =========================================  ==================================
parameter                range                                      paper
=======================  =========================================  ==================================
``er_lambda_l`` (λ_l)    log [λmax_l / 20, λmax_l], one per layer   λ1 7-61, λ2 64
``drop_fraction`` (η)    log [0.01, 0.5]                            0.05 (DS-SAC 0.1)
``evolution_interval``   log int [100, 10000] gradient steps        1000
``gamma``                1 - log [0.001, 0.05], i.e. [0.95, 0.999]  0.99
``learning_rate``        log [1e-4, 3e-3]                           1e-3 (SAC 3e-4)
``batch_size``           {64, 100, 128, 256, 512}                   100
``tau``                  log [0.001, 0.02]                          0.005
``policy_delay``         int [1, 3]                                 2
``target_policy_noise``  [0.05, 0.5]                                0.2
``noise_std``            [0.05, 0.5], Gaussian exploration noise    0.1
=======================  =========================================  ==================================

With ``HerReplayBuffer`` in the file, rl-zoo3's ``sample_her_params`` also samples ``n_sampled_goal`` (int
[1, 5]) and ``goal_selection_strategy`` ({final, episode, future}) into the file's ``replay_buffer_kwargs``
(every sampler of sb3-dst does).

λmax_l = n_in n_out / (n_in + n_out) is the λ that makes layer l dense (smallest over actor and critics,
:func:`max_er_lambdas`), so λ_l spans densities from 5 % to 100 % whatever the environment. The objective
sb3-dst installs stores these bounds in the trial's ``er_lambda_max`` user attribute before sampling; without
it the bounds of a 256-256 network on HalfCheetah (15.9, 128) are used and a λ too large for a layer makes the
constructor raise ``ValueError``, which prunes that trial with the reason.

Methods beyond the paper are searched when asked for, with ``SB3_DST_SEARCH`` (comma-separated):

==========================  ==============================================================
key                         sampled
==========================  ==============================================================
``sparsity``                [0.5, 0.98], one global level instead of λ per layer
``sparsity_distribution``   {erk, uniform} (needs ``sparsity``)
``growth``                  {random, gradient} (SET or RigL)
``drop_fraction_schedule``  {constant, cosine}
``target_pruning``          {magnitude, online_mask}
==========================  ==============================================================
"""
sample_static_td3_params.__doc__ = "Optuna sampler of ``static_td3``: as :func:`sample_ds_td3_params` without η, e."
sample_ds_sac_params.__doc__ = """Optuna sampler of ``ds_sac``.

λ_l, η, e, ``gamma`` and ``learning_rate`` as in :func:`sample_ds_td3_params`, plus:

==========================  ==========================================  ==============================
parameter                   range                                       paper (Appendix A)
==========================  ==========================================  ==============================
``batch_size``              {64, 128, 256, 512}                         256
``ent_coef`` (α, fixed)     log [0.01, 1.0]                             0.2
``target_update``           {soft, hard}                                hard
``tau`` (soft only)         log [0.001, 0.02], every gradient step      (sb3-dst's default: 0.005)
``target_update_interval``  log int [100, 5000] gradient steps, with    1000
(hard only)                 ``tau`` = 1 (counted globally)
==========================  ==========================================  ==============================

Each sample sets both ``tau`` and ``target_update_interval`` (:func:`convert_dst_params`), so it does not depend
on the file's target update.
"""
sample_static_sac_params.__doc__ = "Optuna sampler of ``static_sac``: as :func:`sample_ds_sac_params` without η, e."
sample_pruned_td3_params.__doc__ = """Optuna sampler of ``pruned_td3``: as :func:`sample_static_td3_params`, plus
``evolution_interval`` (gradient steps between two pruning steps, log int [100, 10000]); λ sets the final budget."""
sample_pruned_sac_params.__doc__ = """Optuna sampler of ``pruned_sac``: as :func:`sample_static_sac_params`, plus
``evolution_interval`` (log int [100, 10000]); λ sets the final budget."""

sample_ds_tqc_params.__doc__ = """Optuna sampler of ``ds_tqc``: as :func:`sample_ds_sac_params` without
``target_update`` (TQC keeps its soft update, ``tau`` of the file every step), plus rl-zoo3's TQC ranges:
``n_quantiles`` int [5, 50] (into ``policy_kwargs``, merged with the file's) and ``top_quantiles_to_drop_per_net``
int [0, min(n_quantiles - 1, 5)]. λmax of the output layer (``sparse_output_layer``) uses the file's
``n_quantiles``."""
sample_static_tqc_params.__doc__ = "Optuna sampler of ``static_tqc``: as :func:`sample_ds_tqc_params` without η, e."
sample_pruned_tqc_params.__doc__ = """Optuna sampler of ``pruned_tqc``: as :func:`sample_static_tqc_params`, plus
``evolution_interval`` (log int [100, 10000])."""
sample_ds_crossq_params.__doc__ = """Optuna sampler of ``ds_crossq``: as :func:`sample_ds_sac_params` without
``target_update`` (CrossQ has no target networks; ``tau`` is never sampled), and with one ``sparsity`` level in
[0.5, 0.98] instead of λ per layer: one λ list serves actor and critics, so its bounds would be the 256-wide actor's
and would keep the wide critics' second layer at most 25 % dense (1024 wide) or 12.5 % (2048), while the files use
50 % sparsity. ``SB3_DST_SEARCH=sparsity_distribution`` adds {erk, uniform}."""
sample_static_crossq_params.__doc__ = (
    "Optuna sampler of ``static_crossq``: as :func:`sample_ds_crossq_params` without η, e."
)
sample_pruned_crossq_params.__doc__ = """Optuna sampler of ``pruned_crossq``: as :func:`sample_static_crossq_params`,
plus ``evolution_interval`` (log int [100, 10000])."""
sample_ds_ddpg_params.__doc__ = """Optuna sampler of ``ds_ddpg``: as :func:`sample_ds_td3_params` without
``policy_delay`` and ``target_policy_noise`` (DDPG has neither; DSDDPG refuses them)."""
sample_static_ddpg_params.__doc__ = "Optuna sampler of ``static_ddpg``: as :func:`sample_ds_ddpg_params` without η, e."
sample_pruned_ddpg_params.__doc__ = """Optuna sampler of ``pruned_ddpg``: as :func:`sample_static_ddpg_params`, plus
``evolution_interval`` (log int [100, 10000])."""
