"""What DS-TD3 and DS-SAC share: hyperparameters, masked updates, evolution and target sparsity."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import io
import pathlib
import warnings
import weakref
import zipfile
from collections.abc import Iterable
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.save_util import load_from_zip_file, recursive_getattr
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.utils import polyak_update

from sb3_dst.common.callbacks import DSTCallback
from sb3_dst.common.compact import compact_parameters, expand_parameters, optimizer_patterns
from sb3_dst.common.env_ids import check_env_id
from sb3_dst.common.flops import FlopsBreakdown, _connections, _total_flops, flops_breakdown, training_flops
from sb3_dst.common.masking import (
    MASK_NAME,
    SparseLayer,
    apply_masks,
    masked_step,
    mirror_nonzero_pattern,
    settle_absent_state,
    sparse_layers,
    weight_layers,
)
from sb3_dst.common.policies import (
    SparseTopologyMixin,
    check_distribution,
    check_sparsity,
    check_topology,
)
from sb3_dst.common.sparse_backend import DenseGradientDue, check_backend, invalidate, link_layers, set_backend
from sb3_dst.common.topology import EvolutionSchedule, HyperparameterError, OnlineMaskTarget, TargetSparsity
from sb3_dst.common.updaters import UPDATER_KEYWORDS, Evolve, Prune, Updater

# The DST keywords, declared once: those every algorithm takes (with their defaults) here, those of the topology's
# changes by the updaters (sb3_dst.common.updaters), each algorithm taking its own updater's.

#: Keywords handed to the sparse policy (they decide each layer's budget), with their defaults.
TOPOLOGY_DEFAULTS: dict[str, Any] = {
    "er_lambda": None,
    "sparsity": None,
    "sparse_output_layer": False,
    "sparsity_distribution": "erk",
    "erk_power_scale": 1.0,
    "actor_sparsity": None,
    "critic_sparsity": None,
}
TOPOLOGY_KEYS = tuple(TOPOLOGY_DEFAULTS)
#: The algorithm's own keywords (how targets stay sparse, where sparse layers compute), with their defaults.
MODEL_DEFAULTS: dict[str, Any] = {"target_pruning": "magnitude", "sparse_backend": None}
#: Every DST keyword: the constructors hand these to :meth:`DSTMixin._init_dst`, which refuses another updater's.
DST_KEYWORDS = (*TOPOLOGY_KEYS, *UPDATER_KEYWORDS, *MODEL_DEFAULTS)
#: Keywords of the topology's evolution (DS-* algorithms).
EVOLUTION_KEYS = Evolve.keywords()
#: Keywords of gradual magnitude pruning (Pruned-* algorithms).
PRUNING_KEYS = Prune.keywords()
#: Values of ``target_pruning``: Algorithm 3 (magnitude) or RLx2's product with the online mask.
TARGET_PRUNING = ("magnitude", "online_mask")


def _as_callback(callback: Any) -> Any:
    """SB3's conversion of a plain function ``f(locals_, globals_) -> bool`` into a callback
    (``ConvertCallback``), applied to ``callback`` and to each element of a list."""
    if isinstance(callback, list):
        return [_as_callback(child) for child in callback]
    if callback is None or isinstance(callback, BaseCallback):
        return callback
    if not callable(callback):
        kinds = "a BaseCallback, a function (locals_, globals_) -> bool, or a list of them"
        raise TypeError(f"callback must be {kinds}, got {callback!r}")
    return ConvertCallback(callback)


def unknown_keyword_message(cls: type, key: str, sb3_keywords: frozenset[str] | None = None) -> str:
    """``cls`` takes no ``key``: the message names them, suggests close keywords and lists the DST keywords."""
    if sb3_keywords is None:
        sb3_keywords = _base_keywords(cls) or frozenset()
    dst_keys = cls.dst_keywords()  # type: ignore[attr-defined]
    candidates = sorted({*DST_KEYWORDS, *sb3_keywords} - {"policy", "env", "_init_setup_model"})
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.75)
    suggestion = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    base = _base_algorithm(cls)
    owner = "sb3-contrib" if base.__module__.startswith("sb3_contrib") else "SB3"
    return (
        f"{cls.__name__} got an unexpected keyword argument {key!r}{suggestion}. Its DST keywords are "
        f"{', '.join(dst_keys)}; every other keyword goes to {owner}'s {base.__name__}."
    )


def _find_dst_callback(callback: MaybeCallback) -> DSTCallback | None:
    if isinstance(callback, DSTCallback):
        return callback
    children = callback if isinstance(callback, list) else getattr(callback, "callbacks", None)
    if isinstance(children, list):
        for child in children:
            found = _find_dst_callback(child)
            if found is not None:
                return found
    return None


class UnknownKeywordError(TypeError):
    """A keyword that neither the algorithm's DST hyperparameters nor SB3's base algorithm take."""


_BASE_KEYWORDS: dict[type, frozenset[str] | None] = {}


def _base_algorithm(cls: Any) -> type:
    """The SB3 or sb3-contrib algorithm after :class:`DSTMixin` in ``cls``'s MRO: its constructor takes every
    keyword that is not a DST one."""
    mro = cls.__mro__
    return mro[mro.index(DSTMixin) + 1]  # type: ignore[no-any-return]


def _base_keywords(cls: Any) -> frozenset[str] | None:
    """Keywords of the SB3 algorithm after :class:`DSTMixin` in ``cls``'s MRO (None if it takes ``**kwargs``)."""
    if cls not in _BASE_KEYWORDS:
        parameters = inspect.signature(_base_algorithm(cls)).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        _BASE_KEYWORDS[cls] = None if takes_any else frozenset(parameters)
    return _BASE_KEYWORDS[cls]


def _signature(cls: Any) -> inspect.Signature:
    """What ``help()`` and ``inspect.signature`` show for a DST algorithm: ``policy`` and ``env``, its DST keywords
    with their defaults (from the declarations: :data:`TOPOLOGY_DEFAULTS`, its updater, :data:`MODEL_DEFAULTS`),
    then every keyword of SB3's algorithm. The constructor takes them through ``**kwargs``."""
    base = inspect.signature(_base_algorithm(cls)).parameters
    defaults = {**TOPOLOGY_DEFAULTS, **cls.default_updater.values(), **MODEL_DEFAULTS}
    keyword = inspect.Parameter.KEYWORD_ONLY
    dst = [inspect.Parameter(key, keyword, default=defaults[key]) for key in cls.dst_keywords()]
    rest = [
        p if p.kind is inspect.Parameter.VAR_KEYWORD else p.replace(kind=keyword)
        for name, p in base.items()
        if name not in ("policy", "env") and p.kind is not inspect.Parameter.VAR_POSITIONAL
    ]
    return inspect.Signature([base["policy"], base["env"], *dst, *rest])


#: Gradient steps between two settles of the optimizer state of absent connections (0.999^1000 ≈ 0.37).
SETTLE_INTERVAL = 1000


class DSTMixin:
    """Mixed into SB3's ``TD3``/``SAC`` before them; the algorithm's ``train()`` calls the helpers below.

    Subclasses set :attr:`networks`: the name of each sparse network with its online and target attribute names
    (the target is ``None`` for SAC's actor), and :attr:`default_updater`: how the topology changes
    (:mod:`sb3_dst.common.updaters`): :class:`~sb3_dst.common.updaters.Evolve` (DS-*, the paper),
    :class:`~sb3_dst.common.updaters.Static` (Static-*) or :class:`~sb3_dst.common.updaters.Prune` (Pruned-*: dense
    to sparse by gradual magnitude pruning), with the algorithm's defaults of its keywords. The model's
    ``updater`` is that one configured with the keywords given; its keywords read (and set) as attributes of
    the model too (``model.drop_fraction``).
    """

    #: How the topology changes, with this algorithm's defaults of the updater's keywords.
    default_updater: ClassVar[Updater] = Evolve()
    #: The updater's mode: "evolve" (Algorithm 2), "static" (never) or "prune" (gradual magnitude pruning).
    topology_mode: ClassVar[str] = "evolve"
    #: Whether the topology evolves by drop and growth (False for the Static-* and Pruned-* algorithms).
    dynamic: ClassVar[bool] = True
    networks: ClassVar[dict[str, tuple[str, str | None]]] = {}
    #: Step Adam/AdamW with :mod:`sb3_dst.common.fused_adam` (bit for bit torch's step, and faster). Set it to
    #: False on a model to use torch's own ``optimizer.step()`` on masked gradients, for comparison.
    fused_adam: bool = True
    #: The ``sparse_backend`` of a model built without one (the test suite may override it, see tests/conftest.py).
    default_sparse_backend: ClassVar[str] = "auto"
    #: Store sparse layers compactly in :meth:`save` (their connections' values and bit-packed positions, with
    #: the optimizer state likewise). False writes SB3's dense format, which this package also loads.
    compact_saves: bool = True

    # Set by SB3 base classes; declared for type checkers.
    policy_aliases: ClassVar[dict[str, type]]
    policy: Any
    policy_class: Any
    policy_kwargs: dict[str, Any]
    logger: Any
    _n_updates: int
    num_timesteps: int
    learning_starts: int
    train_freq: Any
    gradient_steps: int
    n_envs: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.topology_mode = cls.default_updater.mode
        cls.dynamic = cls.default_updater.dynamic
        cls.__signature__ = _signature(cls)  # type: ignore[attr-defined]

    def __init__(self, policy: Any, env: Any, *, _init_setup_model: bool = True, **kwargs: Any):
        """:param kwargs: the DST keywords (:meth:`dst_keywords`) and every keyword of SB3's algorithm."""
        dst_keywords = {key: kwargs.pop(key) for key in DST_KEYWORDS if key in kwargs}
        self._check_keywords(kwargs)
        if isinstance(env, str):
            check_env_id(env)  # a MuJoCo v2/v3 id: name the v4/v5 ids rather than gymnasium's import error
        super().__init__(policy, env, _init_setup_model=False, **kwargs)  # type: ignore[call-arg]
        try:
            self._init_dst(**dst_keywords)
        except HyperparameterError:
            raise
        except ValueError as error:  # a bad DST hyperparameter: the message names it
            raise HyperparameterError(*error.args).with_traceback(error.__traceback__) from None
        if _init_setup_model:
            self._setup_model()

    @classmethod
    def dst_keywords(cls) -> tuple[str, ...]:
        """The DST hyperparameters this algorithm takes (besides every keyword of SB3's base algorithm)."""
        return (*TOPOLOGY_KEYS, *cls.default_updater.keywords(), *MODEL_DEFAULTS)

    @classmethod
    def _check_keywords(cls, kwargs: dict[str, Any]) -> None:
        """Raise :class:`UnknownKeywordError` for a keyword neither the DST part nor SB3's algorithm takes (a
        typo such as ``drop_fracton`` would otherwise surface as SB3's ``TD3.__init__()`` error)."""
        sb3_keywords = _base_keywords(cls)
        if sb3_keywords is None:
            return
        for key in kwargs:
            if key not in sb3_keywords:
                raise UnknownKeywordError(unknown_keyword_message(cls, key, sb3_keywords))

    def _get_policy_from_name(self, policy_name: str) -> type:
        """The policy class of ``policy_name``; an unknown name raises a ``ValueError`` listing the names this
        algorithm takes (SB3 says only "Policy ... unknown")."""
        if policy_name not in self.policy_aliases:
            names = ", ".join(map(repr, self.policy_aliases))
            only = " only" if len(self.policy_aliases) == 1 else ""
            raise ValueError(
                f"{type(self).__name__} has no policy {policy_name!r}: it takes {names}{only}"
                + (
                    f" (sb3-contrib's {_base_algorithm(type(self)).__name__} has no CNN or multi-input policy)"
                    if only
                    else ""
                )
            )
        return super()._get_policy_from_name(policy_name)  # type: ignore[misc]

    def _setup_model(self) -> None:
        """Build SB3's model with the sparse policy (Algorithm 1, L2-L5), then cache the DST bookkeeping.

        The topology keywords reach the policy through ``policy_kwargs`` only while it is built: ``policy_kwargs``
        stays what the user gave (the DST values are saved as the model's own attributes), so that
        ``load(path, policy_kwargs=...)`` compares the user's keywords with the user's, as in SB3.
        """
        self._adopt_loaded_keywords()
        user_kwargs = self.policy_kwargs
        self._policy_kwargs_with_topology()
        try:
            super()._setup_model()  # type: ignore[misc]
        finally:
            self.policy_kwargs = {k: v for k, v in user_kwargs.items() if k not in (*TOPOLOGY_KEYS, "start_dense")}
        self._setup_dst()

    def _init_dst(self, **given: Any) -> None:
        """Validate and store the DST hyperparameters (before the policy is built); errors name the keyword.

        :param given: DST keywords (:data:`DST_KEYWORDS`) as passed to the constructor; those not given take their
            defaults (:data:`TOPOLOGY_DEFAULTS`, :data:`MODEL_DEFAULTS`, the algorithm's :attr:`default_updater`).
        """
        for key in (*TOPOLOGY_KEYS, "start_dense"):
            if key in self.policy_kwargs:
                raise ValueError(f"Pass {key} to {type(self).__name__} directly, not inside policy_kwargs")
        values = {**TOPOLOGY_DEFAULTS, **MODEL_DEFAULTS}
        values.update((key, value) for key, value in given.items() if key not in UPDATER_KEYWORDS)
        sparsity, actor_sparsity, critic_sparsity = (
            values[key] for key in ("sparsity", "actor_sparsity", "critic_sparsity")
        )
        self.er_lambda, self.sparsity = check_topology(values["er_lambda"], sparsity)
        self.sparse_output_layer = bool(values["sparse_output_layer"])
        self.actor_sparsity = check_sparsity(actor_sparsity, "actor_sparsity")
        self.critic_sparsity = check_sparsity(critic_sparsity, "critic_sparsity")
        self.sparsity_distribution, self.erk_power_scale = check_distribution(
            values["sparsity_distribution"],
            values["erk_power_scale"],
            self.er_lambda,
            (sparsity, actor_sparsity, critic_sparsity),
        )
        target_pruning = values["target_pruning"]
        if target_pruning not in TARGET_PRUNING:
            raise ValueError(
                f"target_pruning must be one of {', '.join(map(repr, TARGET_PRUNING))}, got {target_pruning!r}"
            )
        self.target_pruning: str = target_pruning
        #: Where sparse layers compute (:mod:`sb3_dst.common.sparse_backend`): "auto", "masked" or "sparse".
        backend = values["sparse_backend"]
        self.sparse_backend: str = check_backend(type(self).default_sparse_backend if backend is None else backend)
        #: How the topology changes: the algorithm's updater with the keywords given.
        self.updater: Updater
        self._use_updater(
            self.default_updater.configured(
                type(self).__name__, **{k: v for k, v in given.items() if k in UPDATER_KEYWORDS}
            )
        )
        self.num_evolutions = 0
        self.last_changed_fraction: dict[str, float] = {}
        #: η of the last evolution (DS-*), logged as ``dst/drop_fraction``.
        self.current_drop_fraction: float = float(getattr(self.updater, "drop_fraction", 0.0))
        self.dst_callback: DSTCallback | None = None
        #: Gradient steps the current learn() call is planned to reach (T of the schedules), set by learn().
        self.planned_gradient_steps: int | None = None
        # FLOPs spent before the last change of connection counts (gradual pruning), and the counters then.
        self.flops_checkpoint: tuple[float, int, int, int] = (0.0, 0, 0, 0)

    def _use_updater(self, updater: Updater) -> None:
        """Make ``updater`` the model's.

        Its keywords are also kept as plain values in the model's ``__dict__`` (attribute access goes to the
        updater, see :class:`_UpdaterKeyword`), which SB3's ``save`` writes: files hold ``drop_fraction``,
        ``evolution_interval``, ... as every file before the updaters did, and ``load`` hands them back
        (:meth:`_adopt_loaded_keywords`).
        """
        for key in UPDATER_KEYWORDS:
            self.__dict__.pop(key, None)
        self.__dict__.update(updater.values())
        self.updater = updater

    def _adopt_loaded_keywords(self) -> None:
        """Configure the updater with its keywords found in the model's ``__dict__``: those SB3's ``load`` put
        there from the file or from ``load(path, evolution_interval=...)``. Files from before the updaters also
        hold the other updaters' keywords, at values that change nothing: they are dropped."""
        accepted = {key: self.__dict__[key] for key in self.updater.keywords() if key in self.__dict__}
        self._use_updater(dataclasses.replace(self.updater, **accepted))

    def _policy_kwargs_with_topology(self) -> None:
        """Hand the topology hyperparameters to the sparse policy (called before the policy is built)."""
        if not (isinstance(self.policy_class, type) and issubclass(self.policy_class, SparseTopologyMixin)):
            raise ValueError(
                f"{type(self).__name__} needs a sparse policy ('MlpPolicy', 'CnnPolicy' or 'MultiInputPolicy'), "
                f"got {self.policy_class!r}"
            )
        self.policy_kwargs = {**self.policy_kwargs, **{k: getattr(self, k) for k in TOPOLOGY_KEYS}}
        self.policy_kwargs["start_dense"] = self.updater.starts_dense

    def _setup_dst(self) -> None:
        """Cache the sparse layers, the target layers paired with their online connection counts, and sizes."""
        self._sparse_layers: dict[str, list[SparseLayer]] = {}
        self._target_sparsity: dict[str, list[TargetSparsity | OnlineMaskTarget]] = {}
        # (online parameters, target parameters, Algorithm 3 state of the segment's last target weight, if sparse)
        self._target_updates: dict[str, list[tuple[list[th.Tensor], list[th.Tensor], _Target | None]]] = {}
        self._next_settle: dict[str, int] = {}  # gradient step of the next settle_absent_state, per network
        # Algorithm 3 state of target copies of layers another network owns (the critic target's copy of an
        # extractor shared with the actor), by id of the online weight: they follow that layer's evolution.
        self._follower_targets: dict[int, list[_Target]] = {}
        states: dict[int, _Target] = {}  # by id of the target weight: one state per target layer (TD3's critic
        # target shares the actor target's extractor, which both Polyak updates move and prune)
        for name, (online_attr, target_attr) in self.networks.items():
            online = getattr(self, online_attr)
            all_layers = sparse_layers(online)
            layers = self._owned_layers(online, all_layers)
            owned = {id(layer) for layer in layers}
            self._sparse_layers[name] = layers
            if target_attr is not None:
                target_module = getattr(self, target_attr)
                targets = sparse_layers(target_module)
                # SB3's Polyak update runs over every parameter of the online module, a shared extractor's too: each
                # target layer keeps as many connections as its online layer, whichever network owns that one.
                pairs = []
                for layer, target in zip(all_layers, targets, strict=True):
                    if id(target.weight) not in states:
                        mask = getattr(layer, MASK_NAME)
                        states[id(target.weight)] = _target_sparsity(target, mask, self.target_pruning)
                    pairs.append((layer, target, states[id(target.weight)]))
                self._target_sparsity[name] = [s for layer, _, s in pairs if id(layer) in owned]
                for layer, _, state in pairs:
                    if id(layer) not in owned:
                        self._follower_targets.setdefault(id(layer.weight), []).append(state)
                # Split the parameters after each sparse target weight, so that it is pruned right after its update
                by_weight = {id(t.weight): s for _, t, s in pairs}
                segments: list[tuple[list[th.Tensor], list[th.Tensor], _Target | None]] = []
                params: list[th.Tensor] = []
                target_params: list[th.Tensor] = []
                for param, target_param in zip(online.parameters(), target_module.parameters(), strict=True):
                    params.append(param)
                    target_params.append(target_param)
                    sparsity = by_weight.get(id(target_param))
                    if sparsity is not None:
                        segments.append((params, target_params, sparsity))
                        params, target_params = [], []
                if params:
                    segments.append((params, target_params, None))
                self._target_updates[name] = segments
        kept = {id(s) for states_of_network in self._target_sparsity.values() for s in states_of_network}
        self._follower_targets = {
            key: followers
            for key, states_of_layer in self._follower_targets.items()
            if (followers := [s for s in states_of_layer if id(s) not in kept])
        }
        self._refresh_size_records()
        self._install_backend()
        self._grow_scores: dict[str, list[th.Tensor]] = {}
        self._flops_cache: tuple[tuple[Any, ...], FlopsBreakdown] | None = None
        if not getattr(self.policy, "_dst_load_hook", False):
            # policy.load_state_dict (SB3's tests call it directly) leaves the model as set_parameters does. A weak
            # reference, so that copying the policy does not copy the model.
            self.policy.register_load_state_dict_post_hook(functools.partial(_enforce_after_load, weakref.ref(self)))
            self.policy.__dict__["_dst_load_hook"] = True

    def _install_backend(self) -> None:
        """Put every sparse layer, online and target, on ``sparse_backend`` (:mod:`sb3_dst.common.sparse_backend`).

        An online layer computes on its mask; a target layer on its non-zeros together with its online layer's
        mask (a Polyak update adds non-zeros only there, Algorithm 3 only removes them). The indices are rebuilt
        after each topology change (:meth:`_invalidate_indices`) and whenever a state dict is loaded.
        """
        backend = getattr(self, "sparse_backend", "auto")  # models saved before the option
        self._backend_layers: list[SparseLayer] = []
        for name, (online_attr, target_attr) in self.networks.items():
            online = getattr(self, online_attr)
            due = DenseGradientDue(self, name) if self.updater.needs_dense_gradient else None
            layers = sparse_layers(online)
            for layer in layers:
                set_backend(layer, backend, dense_grad_due=due)
            link_layers(online)
            self._backend_layers += layers
            if target_attr is None:
                continue
            target_network = getattr(self, target_attr)
            for layer, target in zip(layers, sparse_layers(target_network), strict=True):
                set_backend(target, backend, support_of=_target_support(target, getattr(layer, MASK_NAME)))
                self._backend_layers.append(target)
            link_layers(target_network)

    def _invalidate_indices(self) -> None:
        """The topology changed: every sparse layer rebuilds its index at its next call."""
        invalidate(self._backend_layers)

    def _dense_gradient_due(self, network: str) -> bool:
        """Whether this gradient step of ``network`` needs the dense weight gradient (RigL's growth is due)."""
        return self.updater.needs_dense_gradient and self._evolution_due(network)

    def _owned_layers(self, online: Any, layers: list[SparseLayer]) -> list[SparseLayer]:
        """The ``layers`` of ``online`` (sparse or all weight layers) that it evolves and steps: all, except in a
        critic given the actor's features extractor (``share_features_extractor=True``). That extractor is the
        actor's: the actor's loss trains it (SB3's critic computes features without gradient and SAC's critic
        optimizer leaves it out), so it is stepped, evolved and counted with the actor only.
        """
        actor = getattr(self, "actor", None)
        extractor = getattr(online, "features_extractor", None)
        if actor is None or online is actor or extractor is None or extractor is not actor.features_extractor:
            return layers
        shared = {id(module) for module in extractor.modules()}
        return [layer for layer in layers if id(layer) not in shared]

    def _refresh_size_records(self) -> None:
        """The ``dst/`` size metrics (connections and sparsity per network and overall), read from the masks."""
        sizes: dict[str, tuple[int, int]] = {}  # connections and weight entries per network
        for name, (online_attr, _) in self.networks.items():
            # A features extractor shared by actor and critic counts with the actor, whose loss trains it.
            layers = self._owned_layers(getattr(self, online_attr), weight_layers(getattr(self, online_attr)))
            sizes[name] = (sum(map(_connections, layers)), sum(layer.weight.numel() for layer in layers))
        connections, total = (sum(size[i] for size in sizes.values()) for i in (0, 1))
        self._size_records = [(f"dst/{name}_sparsity", 1.0 - n / n_total) for name, (n, n_total) in sizes.items()]
        self._size_records += [("dst/connections", connections), ("dst/sparsity", 1.0 - connections / total)]

    # --- Schedules ---------------------------------------------------------------------------------------

    def _setup_learn(self, total_timesteps: int, *args: Any, **kwargs: Any) -> Any:
        """SB3's set-up of ``learn()``, then the horizon T of the schedules: the gradient steps it will reach."""
        total, callback = super()._setup_learn(total_timesteps, *args, **kwargs)  # type: ignore[misc]
        self.planned_gradient_steps = self._estimate_gradient_steps(total)
        self._check_horizon()
        return total, callback

    def _estimate_gradient_steps(self, total_timesteps: int) -> int | None:
        """Gradient steps done when ``num_timesteps`` reaches ``total_timesteps`` (None if unknown in advance)."""
        from stable_baselines3.common.type_aliases import TrainFrequencyUnit

        freq = self.train_freq
        if freq is None or getattr(freq, "unit", None) != TrainFrequencyUnit.STEP:
            return None  # trains once per episode: the length of episodes is not known in advance
        env_steps_per_rollout = int(freq.frequency) * int(self.n_envs)
        per_rollout = self.gradient_steps if self.gradient_steps >= 0 else env_steps_per_rollout
        remaining = max(0, int(total_timesteps) - max(int(self.num_timesteps), int(self.learning_starts)))
        return int(self._n_updates) + (remaining // env_steps_per_rollout) * int(per_rollout)

    def _check_horizon(self) -> None:
        """Raise now (not mid-run) when a schedule needs T and neither the keywords nor the run give it; warn when
        gradual pruning cannot reach its final sparsity within the run."""
        warning = self.updater.check_horizon(type(self).__name__, self.planned_gradient_steps)
        if warning is not None:
            warnings.warn(warning, stacklevel=3)

    def pruning_window(self) -> tuple[int, int]:
        """``(pruning_start, pruning_end)`` of a Pruned-* model in gradient steps, defaults resolved (20 % and
        80 % of the run)."""
        if not isinstance(self.updater, Prune):
            raise AttributeError(f"{type(self).__name__} does not prune: it has no pruning window")
        return self.updater.window(self.planned_gradient_steps)

    @property
    def topology_schedule(self) -> EvolutionSchedule:
        """When the topology changes (the updater's schedule): every e gradient steps, up to ``evolution_end``
        (DS-*) or from ``pruning_start`` on (Pruned-*, which stops changing once every layer holds its final
        budget); never (Static-*)."""
        return self.updater.schedule(self.planned_gradient_steps)

    def _update_period(self, network: str) -> int:
        """Gradient steps between two updates of ``network`` (TD3 overrides it for its delayed actor)."""
        return 1

    def _evolution_due(self, network: str, steps_since_last_call: int | None = None) -> bool:
        steps = self._update_period(network) if steps_since_last_call is None else steps_since_last_call
        return self.topology_schedule.due(int(self._n_updates), steps)

    # --- SB3 hooks ---------------------------------------------------------------------------------------

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> Any:
        """SB3's ``learn()``; TensorBoard runs are named after the algorithm by default (``DSTD3_1``,
        ``StaticSAC_2``, ...) rather than SB3's ``TD3``/``SAC``. An explicit ``tb_log_name`` is kept."""
        return super().learn(  # type: ignore[misc]
            total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=type(self).__name__ if tb_log_name is None else tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        """Add a :class:`DSTCallback` unless the user passed one.

        Plain functions, alone or in a list, are first wrapped in SB3's ``ConvertCallback`` as SB3 does.
        """
        callback = _as_callback(callback)
        dst_callback = _find_dst_callback(callback)
        if dst_callback is None:
            dst_callback = DSTCallback()
            if callback is None:
                callback = [dst_callback]
            elif isinstance(callback, list):
                callback = [dst_callback, *callback]
            else:
                callback = CallbackList([dst_callback, callback])  # type: ignore[list-item]
        self.dst_callback = dst_callback
        return super()._init_callback(callback, progress_bar)  # type: ignore[misc]

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),  # type: ignore[misc]
            "dst_callback",
            "_sparse_layers",
            "_target_sparsity",
            "_target_updates",
            "_follower_targets",
            "_next_settle",
            "_size_records",
            "_flops_cache",
            "_grow_scores",
            "_saving_compact",
            "_backend_layers",
            "updater",  # its keywords are saved as plain values (_use_updater)
        ]

    @classmethod
    def load(cls, path: str | pathlib.Path | io.BufferedIOBase, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """SB3's ``load`` (every argument the same), refusing a file that is not a saved model with a message
        naming it, rather than ``zipfile``'s."""
        check_model_file(path)
        return super().load(path, *args, **kwargs)  # type: ignore[misc]

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """SB3's ``save``, with the sparse layers stored compactly (:mod:`sb3_dst.common.compact`) unless
        :attr:`compact_saves` is False: the file shrinks with density and ``load`` restores it bit for bit."""
        self._saving_compact = bool(self.compact_saves)
        try:
            super().save(path, exclude=exclude, include=include)  # type: ignore[misc]
        finally:
            self._saving_compact = False

    def get_parameters(self) -> dict[str, dict]:
        """SB3's ``get_parameters()``: ordinary (dense) state dicts, except inside :meth:`save`."""
        params: dict[str, dict] = super().get_parameters()  # type: ignore[misc]
        if not getattr(self, "_saving_compact", False):
            return params
        masks = {id(layer.weight): getattr(layer, MASK_NAME) for layer in sparse_layers(self.policy)}
        patterns = {
            name: optimizer_patterns(optimizer, masks)
            for name in params
            if isinstance(optimizer := recursive_getattr(self, name), th.optim.Optimizer)
        }
        return compact_parameters(params, patterns)

    def set_parameters(
        self,
        load_path_or_dict: str | pathlib.Path | io.BufferedIOBase | dict[str, Any],
        exact_match: bool = True,
        device: th.device | str = "auto",
    ) -> None:
        """SB3's ``set_parameters`` (used by ``load``), which also reads compacted files and parameters; then the
        sparsity is enforced again on what was loaded.

        Parameters from :meth:`get_parameters` or a saved file carry the ``weight_mask`` buffers, which replace
        the model's masks. Weights loaded without masks (``exact_match=False``, e.g. from a dense model) keep
        the model's masks: absent weights are zeroed and each sparse target layer keeps as many connections as
        its online layer (Algorithm 3).
        """
        if isinstance(load_path_or_dict, dict):
            params = load_path_or_dict
        else:
            check_model_file(load_path_or_dict)
            _, params, _ = load_from_zip_file(load_path_or_dict, device=device, load_data=False)
        params = expand_parameters(params)
        super().set_parameters(params, exact_match=exact_match, device=device)  # type: ignore[misc]
        if "policy" not in params:  # loading the policy's state dict already did it (its load hook)
            self._enforce_sparsity()

    def _enforce_sparsity(self) -> None:
        """After a load: rebuild the DST bookkeeping from the loaded masks, zero the online weights outside them and
        prune each sparse target layer to its online layer's connection count (Algorithm 3).

        Masks are 0/1 by then (:func:`~sb3_dst.common.masking.binarise_mask` runs on every load), so what a load
        accepts is what ``state_dict()``, ``get_parameters()`` and ``save`` give back, and ``load`` restores it.
        """
        self._setup_dst()
        for name, layers in self._sparse_layers.items():
            apply_masks(layers)
            for target in self._target_sparsity.get(name, []):
                target.maintain()
        for followers in self._follower_targets.values():
            for target in followers:
                target.maintain()

    # --- Called from train() -----------------------------------------------------------------------------

    def _masked_step(self, network: str) -> None:
        """Optimizer step of ``network`` that moves existing connections only (weights stay masked).

        Every ``SETTLE_INTERVAL`` gradient steps (and at the first step after construction or loading) the
        optimizer state of absent connections is settled (:func:`settle_absent_state`): Adam's second moment
        there decays by β2 per step and must not reach zero.
        """
        optimizer, layers = getattr(self, self.networks[network][0]).optimizer, self._sparse_layers[network]
        score = self.updater.growth_score
        if score is not None and self._evolution_due(network):
            # The growth criterion of the evolution that follows this step, read now: RigL's |∂L/∂W| of the current
            # batch is dense (absent positions included) before the masked step zeroes it at absent positions.
            self._grow_scores[network] = [score(layer) for layer in layers]
        masked_step(optimizer, layers, fused=self.fused_adam)
        if self._n_updates >= self._next_settle.get(network, 0):
            settle_absent_state(optimizer, layers)
            self._next_settle[network] = self._n_updates + SETTLE_INTERVAL

    def _on_gradient_step(self, network: str, steps_since_last_call: int | None = None) -> None:
        """Let the DST callback evolve ``network`` if due (Algorithm 1, L15-L16 and L21-L22).

        :param steps_since_last_call: gradient steps since the last call for ``network`` (default: its update
            period, :meth:`_update_period`).
        """
        if steps_since_last_call is None:
            steps_since_last_call = self._update_period(network)
        if self.dst_callback is None:  # train() called outside learn()
            self.dst_callback = DSTCallback()
            self.dst_callback.init_callback(self)  # type: ignore[arg-type]
        self.dst_callback.on_gradient_step(network, steps_since_last_call)

    def _evolve_topology(self, network: str) -> float:
        """Change the topology of ``network`` once: the updater's step (Algorithm 2 for DS-*, a gradual pruning
        step for Pruned-*), then the model's bookkeeping (indices of the sparse layers, sizes, FLOPs, counters).

        :return: fraction of the network's sparse connections that moved (or were pruned).
        """
        if self.updater.changes_counts:  # FLOPs spent so far at the counts before the change
            self.flops_checkpoint = (
                training_flops(self),
                int(self._n_updates),
                int(self.num_timesteps),
                int(self.num_evolutions),
            )
        layers = self._sparse_layers[network]
        targets: list[_Target | None] = list(self._target_sparsity.get(network, [None] * len(layers)))
        result = self.updater.step(
            network,
            layers,
            [self._targets_of(layer, target) for layer, target in zip(layers, targets, strict=True)],
            getattr(self, self.networks[network][0]).optimizer,
            t=int(self._n_updates),
            horizon=self.planned_gradient_steps,
            scores=self._grow_scores.pop(network, None),
        )
        if result.touched:
            self._invalidate_indices()
            if self.updater.changes_counts:
                self._flops_cache = None
                self._refresh_size_records()
        self.last_changed_fraction[network] = result.fraction
        if result.drop_fraction is not None:
            self.current_drop_fraction = result.drop_fraction
        if network == "critic":
            self.num_evolutions += 1
        return result.fraction

    def _targets_of(self, layer: SparseLayer, target: _Target | None) -> list[_Target]:
        """Algorithm 3 state of every target copy of ``layer``: its network's (``target``) and, for an extractor
        shared with the critic, the critic target's."""
        return ([] if target is None else [target]) + self._follower_targets.get(id(layer.weight), [])

    def _update_target(self, network: str) -> None:
        """Polyak update of the target of ``network``, then Algorithm 3 on each of its sparse layers.

        θ' ← τθ + (1 − τ)θ' for every parameter with SB3's ``polyak_update``, in SB3's order (so the same bits),
        then Maintain_Sparsity(θ', ‖θ‖₀) on each sparse target layer: it keeps as many connections as its online
        layer. Each target weight is pruned right after its own update, while it is still in the CPU cache
        (pruning them all afterwards costs about three times as much).
        """
        for params, target_params, sparsity in self._target_updates[network]:
            polyak_update(params, target_params, self.tau)  # type: ignore[attr-defined]
            if sparsity is not None:
                sparsity.maintain()

    def _record_dst_metrics(self) -> None:
        """Log the ``dst/`` metrics through SB3's logger (a few microseconds: train() calls it every time)."""
        for key, value in self._size_records:
            self.logger.record(key, value)
        records = self.updater.records(self.num_evolutions, self.last_changed_fraction, self.current_drop_fraction)
        for key, value in records:
            self.logger.record(key, value)
        # The per-step FLOPs depend on the connection counts (fixed by the exact budgets) and on these settings.
        settings = tuple(getattr(self, k, None) for k in ("batch_size", "policy_delay", "target_update_interval"))
        flops_key = (settings, getattr(self, "gradient_steps", None))
        if self._flops_cache is None or self._flops_cache[0] != flops_key:
            self._flops_cache = (flops_key, flops_breakdown(self))
        self.logger.record("dst/flops", _total_flops(self, self._flops_cache[1]))


class _UpdaterKeyword:
    """``model.<keyword>`` for a keyword of the updaters (``drop_fraction``, ``evolution_interval``, ...): the value
    the model's updater holds. Setting it configures the updater anew (checked as in the constructor). A keyword
    of another updater is no attribute (``getattr(model, "evolution_interval", 0)`` is 0 for a Static-* model)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, model: Any, owner: type | None = None) -> Any:
        if model is None:
            return self
        updater = model.__dict__.get("updater")
        if updater is None or self.name not in updater.keywords():
            why = "" if updater is None else f": {updater.why_not(type(model).__name__, self.name)}"
            raise AttributeError(f"{type(model).__name__} has no {self.name!r}{why}")
        return getattr(updater, self.name)

    def __set__(self, model: Any, value: Any) -> None:
        updater, algorithm = model.updater, type(model).__name__
        if self.name not in updater.keywords():
            raise TypeError(f"{algorithm} takes no {self.name!r}: {updater.why_not(algorithm, self.name)}")
        try:
            model._use_updater(dataclasses.replace(updater, **{self.name: value}))
        except HyperparameterError:
            raise
        except ValueError as error:
            raise HyperparameterError(*error.args) from None


for _name in UPDATER_KEYWORDS:
    setattr(DSTMixin, _name, _UpdaterKeyword(_name))

_Target = TargetSparsity | OnlineMaskTarget


def check_model_file(path: Any) -> None:
    """Raise a ``ValueError`` naming ``path`` if it is a file but not a zip archive (what ``save`` writes).

    Paths are resolved as SB3 does (``model`` also finds ``model.zip``); file objects and missing paths are left
    to SB3.
    """
    if not isinstance(path, (str, pathlib.Path)):
        return
    path = pathlib.Path(path)
    if not path.exists() and path.with_name(path.name + ".zip").exists():
        path = path.with_name(path.name + ".zip")
    if path.is_file() and not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a model saved by save(): it is not a zip archive (a damaged, truncated or other "
            "file). Load the file save() wrote, or save the model again."
        )


def _enforce_after_load(model: weakref.ref, module: Any, incompatible_keys: Any) -> None:
    """Load-state-dict post-hook of a DST model's policy: :meth:`DSTMixin._enforce_sparsity`."""
    algorithm = model()
    if algorithm is not None and getattr(algorithm, "policy", None) is module:
        algorithm._enforce_sparsity()


def _target_sparsity(target: SparseLayer, online_mask: th.Tensor, target_pruning: str = "magnitude") -> _Target:
    """Sparsity keeper of one target layer; its mask buffer follows the target's non-zero pattern.

    ``"magnitude"``: Algorithm 3 (:class:`TargetSparsity`); ``"online_mask"``: RLx2's θ' ⊙ M
    (:class:`OnlineMaskTarget`).
    """
    mirror_nonzero_pattern(target)
    if target_pruning == "online_mask":
        return OnlineMaskTarget(target.weight, online_mask)
    return TargetSparsity(target.weight, online_mask, int(online_mask.sum()))


def _target_support(target: SparseLayer, online_mask: th.Tensor) -> Any:
    """The connections a target layer computes on: its non-zeros and its online layer's mask."""

    def support() -> th.Tensor:
        return (target.weight != 0) | (online_mask > 0)

    return support
