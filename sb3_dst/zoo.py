"""rl-zoo3 and Optuna integration: train, enjoy and tune the sparse agents with the zoo's own commands.

After ``pip install sb3-dst``, ``python -m rl_zoo3.train --algo ds_td3 ...`` works as is: a start-up hook
(``sb3_dst_zoo.pth``, see ``zoo_hook/`` in the repository) calls :func:`patch_module` on rl-zoo3's modules as they
are imported. ``python -m sb3_dst.train`` / ``python -m sb3_dst.enjoy`` call :func:`register` and then rl-zoo3's
own entry points (the wrapper pattern rl-zoo3 documents for external algorithms).

What this module adds to rl-zoo3:

- ``ALGOS``: ``ds_td3`` (:class:`~sb3_dst.DSTD3`), ``ds_sac`` (:class:`~sb3_dst.DSSAC`), ``static_td3``
  (:class:`~sb3_dst.StaticTD3`) and ``static_sac`` (:class:`~sb3_dst.StaticSAC`).
- Default hyperparameter files: those algorithms read sb3-dst's ``hyperparams/{algo}.yml`` (the paper's values)
  unless ``-conf`` is given.
- An early, explained stop for MuJoCo v2/v3 ids (they need mujoco-py), for every algorithm.
- Optuna, for the four algorithms above: samplers and converters (:func:`sample_ds_td3_params` documents the
  ranges), a persistent local study by default, heartbeats and retries on database storages, and trials that
  fail on bad hyperparameters or diverge are pruned with a reason instead of stopping the study.

Everything else in rl-zoo3 behaves as before.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import optuna
from gymnasium import spaces
from stable_baselines3.common.noise import NormalActionNoise

from sb3_dst.hyperparams import hyperparams_file

#: rl-zoo3 name -> class name in :mod:`sb3_dst`.
ZOO_ALGOS: dict[str, str] = {
    "ds_td3": "DSTD3",
    "ds_sac": "DSSAC",
    "static_td3": "StaticTD3",
    "static_sac": "StaticSAC",
}
#: Algorithms whose topology evolves (they take ``drop_fraction`` and ``evolution_interval``).
DYNAMIC_ALGOS = frozenset({"ds_td3", "ds_sac"})
#: Algorithms built on TD3 (the others are built on SAC).
TD3_ALGOS = frozenset({"ds_td3", "static_td3"})

#: Trial user attribute with the largest λ of each sparse layer (density 1), set before sampling.
LAMBDA_MAX_ATTR = "er_lambda_max"
#: Trial user attribute with the reason a trial was pruned (bad hyperparameters, divergence, the pruner).
PRUNED_REASON_ATTR = "pruned_reason"
#: Trial user attribute naming the worker (``host:pid``) that ran the trial.
WORKER_ATTR = "worker"
#: Bounds used when a trial carries no :data:`LAMBDA_MAX_ATTR`: those of a 256-256 network on HalfCheetah.
DEFAULT_LAMBDA_MAX = (15.9, 128.0)
#: λ_l is sampled log-uniformly in [λmax_l / LAMBDA_RANGE, λmax_l], i.e. a density between 5 % and 100 %.
LAMBDA_RANGE = 20.0

#: Environment variables that tune the heartbeat of database storages (seconds, seconds, count).
HEARTBEAT_ENV = "SB3_DST_HEARTBEAT_INTERVAL"
GRACE_PERIOD_ENV = "SB3_DST_GRACE_PERIOD"
MAX_RETRY_ENV = "SB3_DST_MAX_RETRY"
DEFAULT_HEARTBEAT_INTERVAL = 60
DEFAULT_MAX_RETRY = 2
#: Attempts to open a database storage when workers started together race to create Optuna's tables.
STORAGE_ATTEMPTS = 4

_PATCHED = "_sb3_dst_patched"


# --------------------------------------------------------------------------------------------------------------
# Algorithms and hyperparameter files
# --------------------------------------------------------------------------------------------------------------


def algorithm_classes() -> dict[str, type]:
    """The four rl-zoo3 names with their sb3-dst classes."""
    import sb3_dst

    return {name: getattr(sb3_dst, class_name) for name, class_name in ZOO_ALGOS.items()}


def default_config(algo: str) -> str | None:
    """sb3-dst's hyperparameter file of ``algo`` when it is one of :data:`ZOO_ALGOS`, else ``None``."""
    return str(hyperparams_file(algo)) if algo in ZOO_ALGOS else None


# --------------------------------------------------------------------------------------------------------------
# MuJoCo v2/v3 ids
# --------------------------------------------------------------------------------------------------------------


class MujocoPyRequiredError(ValueError):
    """A MuJoCo v2/v3 environment id was asked for, and gymnasium cannot make it without mujoco-py."""


_OLD_MUJOCO_ENTRY_POINT = re.compile(r"\.mujoco\.\w+_v[23]\b")


def _needs_mujoco_py(entry_point: object) -> bool:
    if callable(entry_point):  # gymnasium >= 1.0 registers a function that raises
        name = getattr(entry_point, "__name__", "")
        return "mujoco_py" in name
    # gymnasium < 1.0: the v2/v3 classes import mujoco_py
    return bool(_OLD_MUJOCO_ENTRY_POINT.search(str(entry_point))) and importlib.util.find_spec("mujoco_py") is None


def check_env_id(env_id: str) -> None:
    """Refuse a MuJoCo v2/v3 id that gymnasium cannot make here, naming the v4/v5 ids to use instead.

    Nothing is substituted: the user chooses. Ids that are not registered are left to rl-zoo3's own check.

    :raises MujocoPyRequiredError: for ``Walker2d-v3`` and the like when mujoco-py is not available.
    """
    import gymnasium as gym

    spec = gym.envs.registry.get(env_id)
    if spec is None or not _needs_mujoco_py(spec.entry_point):
        return
    name = spec.name if spec.namespace is None else f"{spec.namespace}/{spec.name}"
    alternatives = [f"{name}-v{v}" for v in (4, 5) if f"{name}-v{v}" in gym.envs.registry]
    suggestion = " or ".join(alternatives) if alternatives else "a v4 or v5 MuJoCo id"
    raise MujocoPyRequiredError(
        f"{env_id} is a MuJoCo v{spec.version} environment: gymnasium can make it only with mujoco-py and the "
        f"MuJoCo 2.1 binaries, which are not installed here (and no longer maintained). Use {suggestion} "
        "instead: v4 has the v3 model and reward on the maintained `mujoco` bindings, v5 is the current version, "
        "and sb3-dst's hyperparameter files have entries for both. Nothing was substituted."
    )


# --------------------------------------------------------------------------------------------------------------
# Optuna: samplers and converters
# --------------------------------------------------------------------------------------------------------------


def max_er_lambdas(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    net_arch: list[int] | dict[str, list[int]] | None = None,
    sparse_output_layer: bool = False,
) -> list[float]:
    """Largest λ of each sparse layer index (density 1 in every network that has that layer).

    A layer with ``n_in`` inputs and ``n_out`` outputs can hold ``n_in n_out`` connections and λ gives it
    ``λ (n_in + n_out)``, so its largest λ is ``n_in n_out / (n_in + n_out)``. The actor's layers start from the
    observation, the critics' from observation and action; the same λ list goes to both, so each bound is
    the smaller of the two. With ``sparse_output_layer`` the last bound covers the output layers too.

    :param net_arch: as in ``policy_kwargs`` (list, or dict with ``pi`` and ``qf``); default 256-256.
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
        critic.append((qf[-1] if qf else obs_dim + act_dim, 1))
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


def _sample_common(trial: optuna.Trial, algo: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.001, 0.05, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
    }
    params.update(_sample_lambdas(trial))
    if algo in DYNAMIC_ALGOS:
        params["drop_fraction"] = trial.suggest_float("drop_fraction", 0.01, 0.5, log=True)
        params["evolution_interval"] = trial.suggest_int("evolution_interval", 100, 10_000, log=True)
    return params


def _sample_td3(trial: optuna.Trial, algo: str) -> dict[str, Any]:
    params = _sample_common(trial, algo)
    params.update(
        batch_size=trial.suggest_categorical("batch_size", [64, 100, 128, 256, 512]),
        tau=trial.suggest_float("tau", 0.001, 0.02, log=True),
        policy_delay=trial.suggest_int("policy_delay", 1, 3),
        target_policy_noise=trial.suggest_float("target_policy_noise", 0.05, 0.5),
        noise_std=trial.suggest_float("noise_std", 0.05, 0.5),
    )
    return params


def _sample_sac(trial: optuna.Trial, algo: str) -> dict[str, Any]:
    params = _sample_common(trial, algo)
    params.update(
        batch_size=trial.suggest_categorical("batch_size", [64, 128, 256, 512]),
        ent_coef=trial.suggest_float("ent_coef", 0.01, 1.0, log=True),
        target_update_interval=trial.suggest_int("target_update_interval", 100, 5000, log=True),
    )
    return params


def convert_dst_params(params: dict[str, Any]) -> dict[str, Any]:
    """Turn sampled Optuna parameters (``trial.params``) into hyperparameters of the zoo files.

    ``one_minus_gamma`` becomes ``gamma``; ``er_lambda_1``, ``er_lambda_2``, ... become the list ``er_lambda``;
    ``noise_std`` becomes ``noise_type: normal`` with that ``noise_std`` (rl-zoo3 builds the noise object). Other
    parameters keep their names. This is rl-zoo3's ``HYPERPARAMS_CONVERTER`` entry of the four algorithms, used
    when ``--trial-id`` loads a trial.
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
    if "noise_std" in hyperparams:
        hyperparams["noise_type"] = "normal"
    return hyperparams


def _sampler(algo: str) -> Callable[[optuna.Trial, int, int, dict], dict[str, Any]]:
    sample = _sample_td3 if algo in TD3_ALGOS else _sample_sac

    def sample_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
        hyperparams = convert_dst_params(sample(trial, algo))
        if "noise_std" in hyperparams:  # rl-zoo3's objective passes these straight to the constructor
            std = hyperparams.pop("noise_std")
            hyperparams.pop("noise_type")
            hyperparams["action_noise"] = NormalActionNoise(mean=np.zeros(n_actions), sigma=std * np.ones(n_actions))
        return hyperparams

    sample_params.__name__ = f"sample_{algo}_params"
    sample_params.__qualname__ = sample_params.__name__
    return sample_params


sample_ds_td3_params = _sampler("ds_td3")
sample_static_td3_params = _sampler("static_td3")
sample_ds_sac_params = _sampler("ds_sac")
sample_static_sac_params = _sampler("static_sac")
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

λmax_l = n_in n_out / (n_in + n_out) is the λ that makes layer l dense (smallest over actor and critics,
:func:`max_er_lambdas`), so λ_l spans densities from 5 % to 100 % whatever the environment. The objective
sb3-dst installs stores these bounds in the trial's ``er_lambda_max`` user attribute before sampling; without
it the bounds of a 256-256 network on HalfCheetah (15.9, 128) are used and a λ too large for a layer makes the
constructor raise ``ValueError``, which prunes that trial with the reason.
"""
sample_static_td3_params.__doc__ = "Optuna sampler of ``static_td3``: as :func:`sample_ds_td3_params` without η, e."
sample_ds_sac_params.__doc__ = """Optuna sampler of ``ds_sac``.

λ_l, η, e, ``gamma`` and ``learning_rate`` as in :func:`sample_ds_td3_params`, plus:

==========================  ==================================  ======================================
parameter                   range                               paper (Appendix A)
==========================  ==================================  ======================================
``batch_size``              {64, 128, 256, 512}                 256
``ent_coef`` (α, fixed)     log [0.01, 1.0]                     0.2
``target_update_interval``  log int [100, 5000] gradient steps  1000 (hard update, ``tau`` = 1)
==========================  ==================================  ======================================

``tau`` stays as in the file (1.0 in sb3-dst's files: a hard target update every ``target_update_interval``
gradient steps, counted globally).
"""
sample_static_sac_params.__doc__ = "Optuna sampler of ``static_sac``: as :func:`sample_ds_sac_params` without η, e."

SAMPLERS: dict[str, Callable[[optuna.Trial, int, int, dict], dict[str, Any]]] = {
    "ds_td3": sample_ds_td3_params,
    "static_td3": sample_static_td3_params,
    "ds_sac": sample_ds_sac_params,
    "static_sac": sample_static_sac_params,
}


# --------------------------------------------------------------------------------------------------------------
# Optuna: storages
# --------------------------------------------------------------------------------------------------------------


def default_storage(log_folder: str, algo: str, env_id: str) -> str:
    """Local journal file of a study when ``--storage`` is not given: ``{log_folder}/{algo}/optuna/{env}.log``."""
    return str(Path(log_folder) / algo / "optuna" / f"{env_id.replace('/', '_')}.log")


def default_study_name(algo: str, env_id: str) -> str:
    """Study name used with :func:`default_storage` when ``--study-name`` is not given."""
    return f"{algo}_{env_id}"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


class HeartbeatRDBStorage(optuna.storages.RDBStorage):
    """Optuna database storage with heartbeats, handed to rl-zoo3 in place of the ``--storage`` URL.

    Every running trial records a heartbeat; a trial whose worker stopped beating (killed, machine lost) for
    longer than the grace period is marked failed by the next worker that starts a trial, and retried (once per
    failure, up to ``max_retry`` times) with the same parameters.

    It answers ``endswith`` like a string because rl-zoo3 tests ``storage.endswith(".log")`` to recognise
    journal files; a database URL never ends so.
    """

    def endswith(self, suffix: str | tuple[str, ...]) -> bool:
        return False

    def __str__(self) -> str:
        return _hide_password(self.url)


def _hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def database_url(url: str) -> str:
    """``url`` with an explicit PostgreSQL driver when it names none (``postgresql://...``).

    SQLAlchemy's default driver for ``postgresql://`` changed from psycopg2 (before 2.1) to psycopg 3; this picks
    whichever is installed (psycopg first), so the same command works with either. Other URLs are unchanged.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("postgresql", "postgres"):
        return url
    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"{dialect}://{rest}"
    return url


def make_heartbeat_storage(url: str) -> HeartbeatRDBStorage:
    """Database storage for ``url`` with heartbeats and retries, configured by environment variables.

    ``SB3_DST_HEARTBEAT_INTERVAL`` (seconds, default 60), ``SB3_DST_GRACE_PERIOD`` (seconds without heartbeat
    before a running trial counts as dead, default 4 intervals) and ``SB3_DST_MAX_RETRY`` (retries of a dead
    trial, default 2; 0 disables retries).
    """
    interval = _env_int(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_INTERVAL)
    grace = _env_int(GRACE_PERIOD_ENV, 4 * interval)
    max_retry = _env_int(MAX_RETRY_ENV, DEFAULT_MAX_RETRY)
    if interval <= 0 or grace <= 0 or max_retry < 0:
        raise ValueError(f"{HEARTBEAT_ENV} and {GRACE_PERIOD_ENV} must be > 0 and {MAX_RETRY_ENV} >= 0")
    kwargs: dict[str, Any] = {}
    with warnings.catch_warnings():  # heartbeats and retries are marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if max_retry > 0:
            retry_class = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
            if retry_class is not None:
                kwargs["heartbeat_stale_trial_callback"] = retry_class(max_retry=max_retry)
            else:  # Optuna < 4.9 names it differently
                kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=max_retry)
    import sqlalchemy.exc

    for attempt in range(STORAGE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return HeartbeatRDBStorage(
                    database_url(url),
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=interval,
                    grace_period=grace,
                    **kwargs,
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Workers started together on an empty database race to create Optuna's tables; the loser sees
            # a duplicate table/type/row. The tables exist a moment later: try again (bounded).
            if attempt == STORAGE_ATTEMPTS - 1:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------------------------
# Patches of rl-zoo3
# --------------------------------------------------------------------------------------------------------------


class _TrialIndex(int):
    """An int that is always true: rl-zoo3 tests ``if ... and self.trial_id:``, which skips ``--trial-id 0``."""

    def __bool__(self) -> bool:
        return True


def _patch_utils(module: ModuleType) -> None:
    algos = module.ALGOS
    for name, cls in algorithm_classes().items():
        algos.setdefault(name, cls)


def _patch_hyperparams_opt(module: ModuleType) -> None:
    for name, sampler in SAMPLERS.items():
        module.HYPERPARAMS_SAMPLER.setdefault(name, sampler)
        module.HYPERPARAMS_CONVERTER.setdefault(name, convert_dst_params)


def _wrap(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = getattr(cls, name)
    if getattr(original, _PATCHED, False):
        return
    wrapper = functools.wraps(original)(make(original))
    setattr(wrapper, _PATCHED, True)
    setattr(cls, name, wrapper)


def _prefer_given_topology(custom: dict[str, Any] | None) -> None:
    """``-params er_lambda:...`` replaces the file's ``sparsity`` and ``-params sparsity:...`` its ``er_lambda``.

    The algorithms refuse both at once; without this, overriding one on an entry that sets the other would need
    the second key to be cleared by hand.
    """
    if not custom:
        return
    for given, other in (("er_lambda", "sparsity"), ("sparsity", "er_lambda")):
        if custom.get(given) is not None and other not in custom:
            custom[other] = None


def _make_init(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        try:
            check_env_id(str(bound.arguments["env_id"]))
        except MujocoPyRequiredError as error:
            raise SystemExit(f"error: {error}") from None
        original(self, *args, **kwargs)
        if self.algo not in ZOO_ALGOS:
            return
        if bound.arguments.get("config") is None:
            self.config = default_config(self.algo)
        _prefer_given_topology(self.custom_hyperparams)
        if self.trial_id is not None:
            self.trial_id = _TrialIndex(self.trial_id)
        if isinstance(self.storage, str) and not self.storage.endswith(".log"):
            self.storage = database_url(self.storage)  # also for --trial-id, which loads the study directly
        if self.storage is None and (self.optimize_hyperparameters or self.trial_id is not None):
            self.storage = default_storage(self.log_folder, self.algo, self.env_name.gym_id)
            if self.study_name is None:
                self.study_name = default_study_name(self.algo, self.env_name.gym_id)

    return __init__


def _lambda_bounds(manager: Any) -> list[float]:
    cached = getattr(manager, "_sb3_dst_lambda_max", None)
    if cached is not None:
        return cached
    env = manager.create_envs(1, no_log=True)
    try:
        policy_kwargs = manager._hyperparams.get("policy_kwargs") or {}
        bounds = max_er_lambdas(
            env.observation_space,
            env.action_space,
            policy_kwargs.get("net_arch"),
            bool(manager._hyperparams.get("sparse_output_layer", False)),
        )
    finally:
        env.close()
    manager._sb3_dst_lambda_max = [round(bound, 6) for bound in bounds]
    return manager._sb3_dst_lambda_max


def _prune(trial: optuna.Trial, reason: str) -> optuna.TrialPruned:
    trial.set_user_attr(PRUNED_REASON_ATTR, reason)
    print(f"sb3-dst: trial {trial.number} pruned: {reason}", file=sys.stderr)
    return optuna.TrialPruned(reason)


def _make_objective(original: Callable[..., Any]) -> Callable[..., Any]:
    def objective(self: Any, trial: optuna.Trial) -> float:
        if self.algo not in ZOO_ALGOS:
            return original(self, trial)
        trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr(LAMBDA_MAX_ATTR, _lambda_bounds(self))
        try:
            value = original(self, trial)
        except optuna.TrialPruned as pruned:
            cause = pruned.__cause__
            if str(pruned):
                reason = str(pruned)
            elif cause is not None:  # rl-zoo3 prunes on AssertionError/ValueError during learn(), e.g. NaN
                reason = f"training failed: {type(cause).__name__}: {cause}"
            else:
                reason = "stopped by the pruner (intermediate evaluations below the other trials')"
            raise _prune(trial, reason) from cause
        except (ValueError, AssertionError, FloatingPointError, OverflowError) as error:
            # Raised before learn(): the sampled values do not fit (e.g. a λ denser than full for a layer).
            raise _prune(trial, f"invalid hyperparameters: {type(error).__name__}: {error}") from error
        if value is None or not math.isfinite(float(value)):
            raise _prune(trial, f"diverged: the mean evaluation return is {value}")
        return value

    return objective


def _no_completed_trials_message(manager: Any) -> str:
    lines = [f"no trial of the study {manager.study_name!r} completed, so there is no best trial to report."]
    try:
        study = optuna.load_study(storage=_optuna_storage(manager.storage), study_name=manager.study_name)
        for trial in study.trials[-10:]:
            reason = trial.user_attrs.get(PRUNED_REASON_ATTR, "")
            lines.append(f"  trial {trial.number}: {trial.state.name} {reason}".rstrip())
    except Exception as error:  # the report is a courtesy; keep the real message
        lines.append(f"  (could not list the trials: {error})")
    return "\n".join(lines)


def _optuna_storage(storage: Any) -> Any:
    if isinstance(storage, str) and storage.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(storage))
    return storage


def _make_optimization(original: Callable[..., Any]) -> Callable[..., Any]:
    def hyperparameters_optimization(self: Any) -> None:
        if self.algo not in ZOO_ALGOS:
            return original(self)
        # The sampler always chooses λ per layer; the file's topology keys would clash with it.
        for key in ("er_lambda", "sparsity"):
            self._hyperparams.pop(key, None)
        _lambda_bounds(self)
        url = self.storage
        if isinstance(url, str) and not url.endswith(".log"):
            self.storage = make_heartbeat_storage(url)
        if self.verbose > 0:
            print(f"sb3-dst: Optuna study {self.study_name!r} in {self.storage}")
        try:
            original(self)
        except ValueError as error:
            if "no trials are completed" not in str(error).lower():
                raise
            raise SystemExit(f"error: {_no_completed_trials_message(self)}") from None
        finally:
            self.storage = url

    return hyperparameters_optimization


def _patch_exp_manager(module: ModuleType) -> None:
    manager = module.ExperimentManager
    _wrap(manager, "__init__", _make_init)
    _wrap(manager, "objective", _make_objective)
    _wrap(manager, "hyperparameters_optimization", _make_optimization)


_PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "rl_zoo3.utils": _patch_utils,
    "rl_zoo3.hyperparams_opt": _patch_hyperparams_opt,
    "rl_zoo3.exp_manager": _patch_exp_manager,
}


def patch_module(module: ModuleType) -> None:
    """Add sb3-dst to one freshly imported rl-zoo3 module (idempotent; other modules are ignored)."""
    patch = _PATCHES.get(module.__name__)
    if patch is not None:
        patch(module)


def register() -> None:
    """Import rl-zoo3's modules and add sb3-dst to them (idempotent). The start-up hook makes this automatic."""
    import importlib

    for name in _PATCHES:
        patch_module(importlib.import_module(name))
