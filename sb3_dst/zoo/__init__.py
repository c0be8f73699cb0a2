"""rl-zoo3 and Optuna integration: train, enjoy and tune the sparse agents with the zoo's own commands.

After ``pip install sb3-dst``, ``python -m rl_zoo3.train --algo ds_td3 ...`` works as is: a start-up hook
(``sb3_dst_zoo.pth``, see ``zoo_hook/`` in the repository) calls :func:`patch_module` on rl-zoo3's modules as they
are imported. ``python -m sb3_dst.train`` / ``python -m sb3_dst.enjoy`` call :func:`register` and then rl-zoo3's
own entry points (the wrapper pattern rl-zoo3 documents for external algorithms).

What this module adds to rl-zoo3:

- ``ALGOS``: ``ds_td3`` (:class:`~sb3_dst.DSTD3`), ``ds_sac`` (:class:`~sb3_dst.DSSAC`), ``static_td3``
  (:class:`~sb3_dst.StaticTD3`), ``static_sac`` (:class:`~sb3_dst.StaticSAC`), ``pruned_td3``
  (:class:`~sb3_dst.PrunedTD3`) and ``pruned_sac`` (:class:`~sb3_dst.PrunedSAC`), and the same three variants of
  TQC, CrossQ and DDPG: ``ds_tqc``/``static_tqc``/``pruned_tqc`` (:class:`~sb3_dst.DSTQC` ...),
  ``ds_crossq``/``static_crossq``/``pruned_crossq`` and ``ds_ddpg``/``static_ddpg``/``pruned_ddpg``.
- Default hyperparameter files: those algorithms read sb3-dst's ``hyperparams/{algo}.yml`` (the paper's values;
  for TQC, CrossQ and DDPG rl-zoo3's tuned values of the dense algorithm) unless ``-conf`` is given.
- An early, explained stop for MuJoCo v2/v3 ids (they need mujoco-py), for every algorithm.
- Optuna, for the algorithms above: samplers and converters (:func:`sample_ds_td3_params` documents the
  ranges), a persistent local study by default, heartbeats and retries on database storages, and trials that
  fail on bad hyperparameters or diverge are pruned with a reason instead of stopping the study. Any storage
  gets the study name ``{algo}_{env}`` unless ``--study-name`` is given, and a trial budget that would not reach
  ``learning_starts`` lowers it to 10 % of the budget (said in the log).
- A short error for a keyword the algorithm does not take (``drop_fracton``), naming it with a suggestion.

Everything else in rl-zoo3 behaves as before.

The package is split along what it does: :mod:`~sb3_dst.zoo.registry` (algorithms, hyperparameter files, the
MuJoCo v2/v3 check), :mod:`~sb3_dst.zoo.samplers` (Optuna samplers and converters), :mod:`~sb3_dst.zoo.storage`
(Optuna storages) and :mod:`~sb3_dst.zoo.patches` (the patches of rl-zoo3's modules).
"""

from __future__ import annotations

from sb3_dst.zoo.patches import (
    PRUNED_REASON_ATTR,
    WORKER_ATTR,
    _make_objective,
    _TrialIndex,
    patch_module,
    register,
)
from sb3_dst.zoo.registry import (
    DYNAMIC_ALGOS,
    TD3_ALGOS,
    ZOO_ALGOS,
    MujocoPyRequiredError,
    algorithm_classes,
    check_env_id,
    default_config,
)
from sb3_dst.zoo.samplers import (
    DEFAULT_LAMBDA_MAX,
    LAMBDA_MAX_ATTR,
    LAMBDA_RANGE,
    SAMPLERS,
    convert_dst_params,
    max_er_lambdas,
)
from sb3_dst.zoo.storage import (
    HeartbeatRDBStorage,
    _hide_password,
    database_url,
    default_storage,
    default_study_name,
    make_heartbeat_storage,
)

__all__ = [
    "DEFAULT_LAMBDA_MAX",
    "DYNAMIC_ALGOS",
    "LAMBDA_MAX_ATTR",
    "LAMBDA_RANGE",
    "PRUNED_REASON_ATTR",
    "SAMPLERS",
    "TD3_ALGOS",
    "WORKER_ATTR",
    "ZOO_ALGOS",
    "HeartbeatRDBStorage",
    "MujocoPyRequiredError",
    "_TrialIndex",
    "_hide_password",
    "_make_objective",
    "algorithm_classes",
    "check_env_id",
    "convert_dst_params",
    "database_url",
    "default_config",
    "default_storage",
    "default_study_name",
    "make_heartbeat_storage",
    "max_er_lambdas",
    "patch_module",
    "register",
]
