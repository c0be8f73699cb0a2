"""The patches that add sb3-dst to rl-zoo3's modules as they are imported."""

import functools
import inspect
import math
import os
import socket
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import optuna

from sb3_dst.zoo.registry import ZOO_ALGOS, MujocoPyRequiredError, algorithm_classes, check_env_id, default_config
from sb3_dst.zoo.samplers import (
    FILE_POLICY_KWARGS,
    LAMBDA_MAX_ATTR,
    SAMPLERS,
    convert_dst_params,
    critic_outputs,
    default_net_arch,
    max_er_lambdas,
)
from sb3_dst.zoo.storage import database_url, default_storage, default_study_name, make_heartbeat_storage

#: Trial user attribute with the reason a trial was pruned (bad hyperparameters, divergence, the pruner).
PRUNED_REASON_ATTR = "pruned_reason"
#: Trial user attribute naming the worker (``host:pid``) that ran the trial.
WORKER_ATTR = "worker"
_PATCHED = "_sb3_dst_patched"
#: An Optuna trial whose budget (``--n-timesteps``) does not exceed ``learning_starts`` would never train: its
#: ``learning_starts`` is lowered to this fraction of the budget.
TRIAL_LEARNING_STARTS_FRACTION = 0.1


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
        if self.optimize_hyperparameters or self.trial_id is not None:
            if self.storage is None:
                self.storage = default_storage(self.log_folder, self.algo, self.env_name.gym_id)
            if self.study_name is None:  # any storage: a name Optuna would make up could never be resumed
                self.study_name = default_study_name(self.algo, self.env_name.gym_id)

    return __init__


def _unknown_keyword_exit(manager: Any, error: BaseException) -> SystemExit:
    source = manager.config or "the hyperparameter file"
    return SystemExit(f"error: {error}\n(the keyword comes from {source} or from -params)")


def _check_keywords(manager: Any) -> None:
    """Stop with a short message if the hyperparameters hold a keyword the algorithm does not take."""
    from sb3_dst.common.dst import UnknownKeywordError, _base_keywords, unknown_keyword_message

    cls: Any = algorithm_classes()[manager.algo]
    sb3_keywords = _base_keywords(cls)
    if sb3_keywords is None:
        return
    for key in manager._hyperparams:
        if key not in sb3_keywords and key not in cls.dst_keywords():
            raise _unknown_keyword_exit(manager, UnknownKeywordError(unknown_keyword_message(cls, key)))


def _make_setup(original: Callable[..., Any]) -> Callable[..., Any]:
    def setup_experiment(self: Any) -> Any:
        if self.algo not in ZOO_ALGOS:
            return original(self)
        from sb3_dst.common.dst import UnknownKeywordError
        from sb3_dst.common.topology import HyperparameterError

        try:
            result = original(self)
        except UnknownKeywordError as error:
            raise _unknown_keyword_exit(self, error) from None
        except HyperparameterError as error:  # e.g. -params sparsity:1.5
            source = self.config or "the hyperparameter file"
            raise SystemExit(f"error: {error}\n(the value comes from {source} or from -params)") from None
        _check_keywords(self)  # with --optimize no model is built here; check before the first trial
        return result

    return setup_experiment


def _fit_learning_starts(manager: Any) -> None:
    """Lower ``learning_starts`` to a tenth of the trial budget when the budget would not reach it."""
    learning_starts = manager._hyperparams.get("learning_starts")
    budget = int(manager.n_timesteps)
    if learning_starts is None or budget <= 0 or int(learning_starts) < budget:
        return
    lowered = max(1, int(TRIAL_LEARNING_STARTS_FRACTION * budget))
    manager._hyperparams["learning_starts"] = lowered
    print(
        f"sb3-dst: learning_starts {int(learning_starts)} is not below the trial budget of {budget} steps "
        f"(--n-timesteps), so trials would never train: using learning_starts {lowered} "
        f"({TRIAL_LEARNING_STARTS_FRACTION:.0%} of the budget) for this study"
    )


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
            policy_kwargs.get("net_arch") or default_net_arch(manager.algo),
            bool(manager._hyperparams.get("sparse_output_layer", False)),
            critic_outputs(manager.algo, policy_kwargs),
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
        token = FILE_POLICY_KWARGS.set((getattr(self, "_hyperparams", None) or {}).get("policy_kwargs") or {})
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
        finally:
            FILE_POLICY_KWARGS.reset(token)
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
        _fit_learning_starts(self)
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
    _wrap(manager, "setup_experiment", _make_setup)
    _wrap(manager, "objective", _make_objective)
    _wrap(manager, "hyperparameters_optimization", _make_optimization)


def _patch_hf_push_to_hub(module: ModuleType) -> None:
    """Give ``huggingface_sb3.push_to_hub`` the ``generate_metadata`` that ``rl_zoo3.push_to_hub`` imports.

    rl-zoo3 2.9 imports ``generate_metadata`` from the package, which sb3-team-hf-integration 3.2 (the only release
    rl-zoo3's ``sb3-team-hf-integration>=3.0,<4`` allows) renamed ``_generate_metadata`` with the same parameters,
    so ``python -m rl_zoo3.push_to_hub`` fails to import. A release that has the name keeps its own.
    """
    if not hasattr(module, "generate_metadata") and hasattr(module, "_generate_metadata"):
        module.generate_metadata = module._generate_metadata  # type: ignore[attr-defined]


_PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "rl_zoo3.utils": _patch_utils,
    "rl_zoo3.hyperparams_opt": _patch_hyperparams_opt,
    "rl_zoo3.exp_manager": _patch_exp_manager,
    "huggingface_sb3.push_to_hub": _patch_hf_push_to_hub,
}


def patch_module(module: ModuleType) -> None:
    """Add sb3-dst to one freshly imported rl-zoo3 module (idempotent; other modules are ignored)."""
    patch = _PATCHES.get(module.__name__)
    if patch is not None:
        patch(module)


def register() -> None:
    """Import rl-zoo3's modules and add sb3-dst to them (idempotent). The start-up hook makes this automatic."""
    import importlib
    import sys

    for name in _PATCHES:
        if name.startswith("rl_zoo3."):
            patch_module(importlib.import_module(name))
        elif name in sys.modules:  # huggingface_sb3's push_to_hub only if imported: rl_zoo3.train does not need it
            patch_module(sys.modules[name])
