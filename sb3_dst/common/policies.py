"""Sparse-topology initialisation shared by the TD3 and SAC policies (Algorithm 1, L2-L4)."""

from __future__ import annotations

import inspect
import logging
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from gymnasium import spaces
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from sb3_dst.common.masking import (
    MASK_NAME,
    SPARSE_LAYER_TYPES,
    SparseLayer,
    add_mask,
    layer_shape,
    linear_layers,
    weight_layers,
)
from sb3_dst.common.topology import SPARSITY_DISTRIBUTIONS, HyperparameterError, connection_budgets, er_budget

#: The paper's λ for DS-TD3 (λ1 = 7, λ2 = 64 on HalfCheetah, Hopper and Walker2d). A layer it would make denser
#: than full (a small observation space: Pendulum's 3x256 first layer) is dense instead, with one log line;
#: an ``er_lambda`` the user gives is never adjusted.
DEFAULT_ER_LAMBDA: tuple[float, ...] = (7.0, 64.0)

logger = logging.getLogger(__name__)

#: The paper's network: two hidden layers of 256 units for actor and critics.
DEFAULT_NET_ARCH: list[int] = [256, 256]

ErLambda = float | Sequence[float] | None


def is_real(value: Any) -> bool:
    """A real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_sparsity(value: Any, key: str = "sparsity") -> float | None:
    """Validate a sparsity keyword (``None`` or a number in [0, 1)) and return it as a ``float``.

    :raises ValueError: naming ``key``.
    """
    if value is not None and not (is_real(value) and 0.0 <= value < 1.0):
        raise ValueError(f"{key} must be a number in [0, 1), got {value!r}")
    return None if value is None else float(value)


def check_distribution(
    sparsity_distribution: Any, erk_power_scale: Any, er_lambda: Any, sparsities: Sequence[Any]
) -> tuple[str, float]:
    """Validate ``sparsity_distribution`` and ``erk_power_scale`` (they only apply to ``sparsity`` budgets).

    :raises ValueError: naming the keyword.
    """
    if sparsity_distribution not in SPARSITY_DISTRIBUTIONS:
        raise ValueError(
            f"sparsity_distribution must be one of {', '.join(map(repr, SPARSITY_DISTRIBUTIONS))}, "
            f"got {sparsity_distribution!r}"
        )
    if not (is_real(erk_power_scale) and math.isfinite(erk_power_scale) and erk_power_scale >= 0):
        raise ValueError(f"erk_power_scale must be a number >= 0, got {erk_power_scale!r}")
    non_default = sparsity_distribution != "erk" or erk_power_scale != 1.0
    if non_default and all(s is None for s in sparsities):
        key = "sparsity_distribution" if sparsity_distribution != "erk" else "erk_power_scale"
        raise ValueError(
            f"{key} spreads a `sparsity=` (or actor_sparsity/critic_sparsity) budget over the layers; "
            + ("er_lambda sets each layer's budget itself" if er_lambda is not None else "give `sparsity=` too")
        )
    return str(sparsity_distribution), float(erk_power_scale)


def check_topology(er_lambda: Any, sparsity: Any) -> tuple[float | list[float] | None, float | None]:
    """Validate ``er_lambda`` and ``sparsity`` and return them as plain ``float``/``list[float]`` values.

    :raises ValueError: naming the parameter, for both given, a non-positive or non-finite λ, or a sparsity
        outside [0, 1).
    """
    if er_lambda is not None and sparsity is not None:
        raise ValueError("Pass either er_lambda or sparsity, not both")
    check_sparsity(sparsity)
    lambdas: float | list[float] | None = None
    if er_lambda is not None:
        iterable = hasattr(er_lambda, "__iter__") and not isinstance(er_lambda, (str, bytes, dict))
        values = [er_lambda] if is_real(er_lambda) else list(er_lambda) if iterable else []
        if not values or not all(is_real(v) and math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"er_lambda must be a positive number or a list of positive numbers, got {er_lambda!r}")
        lambdas = float(er_lambda) if is_real(er_lambda) else [float(v) for v in values]
    return lambdas, None if sparsity is None else float(sparsity)


class SparseMasksMixin:
    """Lets a sparse actor or critic be saved and loaded on its own (SB3's ``BaseModel.save``/``load``).

    ``load`` rebuilds the module as ``cls(**data)`` from its constructor parameters, then loads its state dict,
    which holds the ``weight_mask`` buffers. Two things are needed for that:

    - All the constructor arguments. SB3's ``ContinuousCritic`` and sb3-contrib's TQC and CrossQ critics do not
      record theirs (``_get_constructor_parameters`` gives only the spaces and ``normalize_images``), and CrossQ's
      actor leaves out its batch-normalisation ones. Rather than copying the signature of each wrapped class only to
      record its arguments, the mixin binds the arguments of the call to the signature of the wrapped class's
      ``__init__`` (the first class after the sparse ones in the method resolution order that defines one),
      defaults filled in, and adds them to the wrapped class's constructor parameters. A subclass that adds
      constructor arguments of its own must therefore record them itself.
    - ``sparse_connections``: the number of connections of each sparse layer (by module name), from which the
      constructor gives those layers a mask before the state dict replaces it with the saved one. It is computed
      from the masks when saving; built by a policy, the module gets no such argument and the policy sparsifies it
      afterwards. Layers of the features extractor are left out: the extractor is itself a constructor parameter,
      saved whole.

    :param args: the positional arguments of the wrapped class.
    :param sparse_connections: connections of each sparse layer, ``{module name: count}``.
    :param kwargs: the keyword arguments of the wrapped class.
    """

    #: The arguments of the wrapped class's constructor, by parameter name (defaults included).
    _constructor_arguments: dict[str, Any]

    def __init__(self, *args: Any, sparse_connections: dict[str, int] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._constructor_arguments = _bind_constructor_arguments(_wrapped_init(type(self)), self, args, kwargs)
        for name, n_connections in (sparse_connections or {}).items():
            layer = self.get_submodule(name)  # type: ignore[attr-defined]
            if not isinstance(layer, SPARSE_LAYER_TYPES):
                raise ValueError(f"sparse_connections names {name!r}, which is not an nn.Linear or nn.Conv2d layer")
            add_mask(layer, n_connections)

    def connection_counts(self) -> dict[str, int]:
        """Connections of each sparse layer outside the features extractor, ``{module name: count}``."""
        return {
            name: int(getattr(module, MASK_NAME).sum())
            for name, module in self.named_modules()  # type: ignore[attr-defined]
            if isinstance(module, SPARSE_LAYER_TYPES)
            and hasattr(module, MASK_NAME)
            and not name.startswith("features_extractor.")
        }

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        return {**data, **self._constructor_arguments, "sparse_connections": self.connection_counts()}


def _wrapped_init(cls: type) -> Callable[..., None]:
    """The ``__init__`` of the class that ``cls`` (a :class:`SparseMasksMixin`) wraps: the first class of its method
    resolution order that is not a ``SparseMasksMixin`` and defines one."""
    return next(
        base.__dict__["__init__"]
        for base in cls.__mro__
        if not issubclass(base, SparseMasksMixin) and "__init__" in base.__dict__
    )


def _bind_constructor_arguments(
    init: Callable[..., None], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The arguments of the call ``init(instance, *args, **kwargs)`` by parameter name, defaults included, as
    ``cls(**data)`` takes them back: without ``self`` nor a ``*args`` catch-all, the keywords of a ``**kwargs`` one
    spread out."""
    bound = inspect.signature(init).bind(instance, *args, **kwargs)
    bound.apply_defaults()
    parameters = list(bound.signature.parameters.values())[1:]  # without self
    arguments = {p.name: bound.arguments[p.name] for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    for p in parameters:
        if p.kind is p.VAR_KEYWORD:
            arguments.update(bound.arguments[p.name])
    return arguments


class SparseContinuousCritic(SparseMasksMixin, ContinuousCritic):
    """SB3's ``ContinuousCritic`` that can be saved and loaded on its own, masks included.

    SB3's critic does not record its constructor parameters; :class:`SparseMasksMixin` records them (``net_arch``,
    ``features_dim``, ``activation_fn``, ``n_critics``, ``share_features_extractor``, the features extractor...).
    Takes the arguments of SB3's ``ContinuousCritic`` plus ``sparse_connections``.
    """


class SparseTopologyMixin:
    """Adds Erdős–Rényi masks to the MLP layers an SB3 policy builds.

    Each network (the actor, each Q-network of the critic) is sparsified on its own: hidden layers always,
    the output layer(s) when ``sparse_output_layer`` is set. Biases stay dense. Without ``net_arch`` the
    networks are the paper's 256-256. The algorithm-specific policy only says which layers of its actor are
    hidden and which are outputs (``make_actor``).

    :param er_lambda: λ per sparse layer (one number for all of them). Layer l gets exactly
        ``round(λ_l (n_in + n_out))`` connections (Eq. 1). Defaults to the paper's (7, 64).
    :param sparsity: instead of λ, the fraction of zero weights each network's sparse layers should have;
        one λ is then shared by the layers of a network and solved for that budget, layers that would be
        denser than full being made dense (see :func:`~sb3_dst.common.topology.er_lambdas_for_sparsity`).
    :param sparse_output_layer: also sparsify output layers (the paper keeps them dense).
    :param sparsity_distribution: how a ``sparsity`` budget is spread over a network's layers: ``"erk"``
        (Erdős–Rényi-Kernel, the default) or ``"uniform"`` (every sparse layer at the same density).
    :param erk_power_scale: exponent of the ERK score ``((n_in + n_out) / (n_in n_out))^power`` (1: Eq. 1).
    :param actor_sparsity: sparsity of the actor's sparse layers, instead of ``sparsity`` / ``er_lambda``.
    :param critic_sparsity: sparsity of each Q-network's sparse layers, instead of ``sparsity`` / ``er_lambda``.
    :param start_dense: build every sparse layer at full density (gradual magnitude pruning starts there); each
        layer still records its final budget in ``connection_budget``.
    :param sparse_features_extractor: also sparsify the ``nn.Conv2d`` and ``nn.Linear`` layers of the features
        extractor (``NatureCNN``: its three convolutions and its last layer), which then evolve with their network.
        They come first among a network's sparse layers, in registration order, so ``er_lambda`` gets one more λ
        per extractor layer; a convolution of ``c_in`` to ``c_out`` channels with a ``k_h x k_w`` kernel gets
        ``round(λ (c_in + c_out + k_h + k_w))`` of its ``c_in c_out k_h k_w`` kernel entries, and ``sparsity=``
        scores it by ``(c_in + c_out + k_h + k_w) / (c_in c_out k_h k_w)`` in the ERK distribution. The critic's
        extractor, shared by its Q-networks, is sparsified once. With ``share_features_extractor=True`` the extractor
        shared by actor and critic is the actor's: it takes the actor's λs (first in ``er_lambda``), evolves and
        steps with the actor; the critic's Q-networks take the λs after them (``sparsity=`` budgets leave the
        extractor out of the critic's), and the critic target's extractor is pruned (Algorithm 3) to the shared
        layers' masks.
    """

    er_lambda: ErLambda
    sparsity: float | None
    sparse_output_layer: bool
    sparsity_distribution: str
    erk_power_scale: float
    actor_sparsity: float | None
    critic_sparsity: float | None
    start_dense: bool
    sparse_features_extractor: bool
    #: Hidden layers when ``net_arch`` is not given: the paper's 256-256, or None to keep the policy's own default
    #: (CrossQ's wide critic).
    default_net_arch: ClassVar[list[int] | None] = DEFAULT_NET_ARCH
    #: The critic class ``make_critic`` builds (it must accept ``sparse_connections``, see SparseMasksMixin).
    critic_class: ClassVar[type[nn.Module]] = SparseContinuousCritic

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        *args: Any,
        er_lambda: ErLambda = None,
        sparsity: float | None = None,
        sparse_output_layer: bool = False,
        sparsity_distribution: str = "erk",
        erk_power_scale: float = 1.0,
        actor_sparsity: float | None = None,
        critic_sparsity: float | None = None,
        start_dense: bool = False,
        sparse_features_extractor: bool = False,
        **kwargs: Any,
    ):
        self._init_topology(er_lambda, sparsity, sparse_output_layer)
        self.sparse_features_extractor = bool(sparse_features_extractor)
        self.actor_sparsity = check_sparsity(actor_sparsity, "actor_sparsity")
        self.critic_sparsity = check_sparsity(critic_sparsity, "critic_sparsity")
        self.sparsity_distribution, self.erk_power_scale = check_distribution(
            sparsity_distribution, erk_power_scale, self.er_lambda, (sparsity, actor_sparsity, critic_sparsity)
        )
        self.start_dense = bool(start_dense)
        if net_arch is None and self.default_net_arch is not None:
            net_arch = list(self.default_net_arch)
        #: Layers the default λ would overfill, made dense: ``{"actor layer 0": "3x256", ...}``.
        self.dense_by_default: dict[str, str] = {}
        super().__init__(observation_space, action_space, lr_schedule, net_arch, *args, **kwargs)  # type: ignore[call-arg]
        if self.dense_by_default:
            layers = ", ".join(f"{name} ({dims})" for name, dims in self.dense_by_default.items())
            logger.warning(
                "sb3-dst: the default er_lambda %s would give more connections than possible to %s; "
                "these layers are dense. Pass er_lambda= or sparsity= to choose the budgets.",
                tuple(DEFAULT_ER_LAMBDA),
                layers,
            )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), **self._topology_kwargs()}  # type: ignore[misc]

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> Any:
        """The policy's critic (:attr:`critic_class`) with each Q-network's hidden layers (and output layer, if
        asked) sparse: SB3's Q-networks, TQC's quantile networks or CrossQ's (whose BatchRenorm layers stay dense)."""
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)  # type: ignore[attr-defined]
        critic: Any = self.critic_class(**critic_kwargs).to(self.device)  # type: ignore[attr-defined]
        extractor = self._extractor_layers(critic)
        if extractor and self._shares_extractor():
            # SB3 gives the critic the actor's extractor, which the actor's loss trains (the critic computes its
            # features without gradient): its layers are the actor's. The critic target gets the actor target's
            # extractor (TD3) or a copy (SAC), loaded from the critic's state: the copy only needs masks of the shared
            # layers' shapes, the load replaces them. Neither counts in the critic's budgets.
            for layer, shared in zip(extractor, self._extractor_layers(self.actor), strict=True):  # type: ignore[attr-defined]
                if layer is not shared and not hasattr(layer, MASK_NAME):
                    add_mask(layer, int(getattr(shared, MASK_NAME).sum()))
                setattr(layer, "connection_budget", shared.connection_budget)  # noqa: B010
            skip, extractor = len(extractor), []
        else:
            skip = 0
        for i, q_net in enumerate(critic.q_networks):
            layers = linear_layers(q_net)
            self._sparsify(f"critic qf{i}", hidden=[*extractor, *layers[:-1]], output=layers[-1:], skip_lambdas=skip)
        return critic

    def _sparsify_gaussian_actor(self, actor: Any) -> None:
        """Mask a squashed-Gaussian actor (SAC, TQC, CrossQ): its ``latent_pi`` layers are hidden, its heads
        ``mu`` and ``log_std`` outputs. With gSDE, ``log_std`` is a parameter rather than a layer and stays dense."""
        heads = [m for head in (actor.mu, actor.log_std) if isinstance(head, nn.Module) for m in linear_layers(head)]
        hidden = [*self._extractor_layers(actor), *linear_layers(actor.latent_pi)]
        self._sparsify("actor", hidden=hidden, output=heads)

    def _extractor_layers(self, network: nn.Module) -> list[SparseLayer]:
        """The layers of the features extractor of ``network`` to sparsify (none unless asked)."""
        if not self.sparse_features_extractor:
            return []
        extractor = network.get_submodule("features_extractor")
        layers = weight_layers(extractor)
        if not layers:
            name = type(extractor).__name__
            raise ValueError(
                f"sparse_features_extractor=True but the features extractor {name} has no nn.Linear layer (nor "
                "nn.Conv2d) to sparsify; drop the option (only fully connected and convolution layers can be sparse)"
            )
        return layers

    def _shares_extractor(self) -> bool:
        """Whether the actor and the critic share one features extractor (SB3's ``share_features_extractor``)."""
        return bool(getattr(self, "share_features_extractor", False))

    def _init_topology(self, er_lambda: ErLambda, sparsity: float | None, sparse_output_layer: bool) -> None:
        self.er_lambda, self.sparsity = check_topology(er_lambda, sparsity)
        self.sparse_output_layer = bool(sparse_output_layer)

    def _topology_kwargs(self) -> dict:
        return dict(
            er_lambda=self.er_lambda,
            sparsity=self.sparsity,
            sparse_output_layer=self.sparse_output_layer,
            sparsity_distribution=self.sparsity_distribution,
            erk_power_scale=self.erk_power_scale,
            actor_sparsity=self.actor_sparsity,
            critic_sparsity=self.critic_sparsity,
            start_dense=self.start_dense,
            sparse_features_extractor=self.sparse_features_extractor,
        )

    def _network_sparsity(self, network: str) -> float | None:
        """The ``sparsity`` that sets the budget of ``network`` ("actor" or "critic qf<i>"), if any."""
        specific = self.actor_sparsity if network == "actor" else self.critic_sparsity
        return self.sparsity if specific is None else specific

    def _budgets(self, shapes: Sequence[tuple[int, ...]], network: str, skip_lambdas: int = 0) -> list[int]:
        """Connection count of each of ``shapes`` (the sparse layers of ``network``), validated.

        :param skip_lambdas: leading λs of an ``er_lambda`` list that are not this network's (those of an extractor
            shared with the actor, when the critic is sparsified).
        """
        sparsity = self._network_sparsity(network)
        if sparsity is not None:
            return connection_budgets(shapes, sparsity, self.sparsity_distribution, self.erk_power_scale)
        lambdas = self._lambdas(shapes, network, skip_lambdas)
        budgets = []
        for i, (shape, lam) in enumerate(zip(shapes, lambdas, strict=True)):
            layer = f"{network} layer {i}"
            full = math.prod(shape) / sum(shape)  # the λ of a dense layer
            if self.er_lambda is None and lam > full:
                # The paper's λ is for MuJoCo's observation sizes; with the default, a layer it would overfill is
                # dense (as ERK does), and the policy logs it once. A λ the user chose keeps er_budget's error.
                self.dense_by_default[layer] = "x".join(map(str, shape))
                lam = full
            budgets.append(er_budget(shape, lam, layer=layer))
        return budgets

    def _lambdas(self, shapes: Sequence[tuple[int, ...]], network: str, skip: int = 0) -> list[float]:
        """λ for each of ``shapes`` (the sparse layers of ``network``), validated; the first ``skip`` values of an
        ``er_lambda`` list belong to an extractor shared with the actor."""
        er_lambda = DEFAULT_ER_LAMBDA if self.er_lambda is None else self.er_lambda
        if isinstance(er_lambda, (int, float)):
            return [float(er_lambda)] * len(shapes)
        lambdas = [float(x) for x in er_lambda][skip:]
        if len(lambdas) != len(shapes):
            what = "hidden and output" if self.sparse_output_layer else "hidden"
            what = f"features extractor, {what}" if self.sparse_features_extractor and not skip else what
            default = " (the default er_lambda is the paper's, for two hidden layers)" if self.er_lambda is None else ""
            values = f"{len(lambdas)} values" + (f" after the {skip} of the shared features extractor" if skip else "")
            raise HyperparameterError(
                f"er_lambda has {values}{default} but the {network} has {len(shapes)} sparse "
                f"({what}) layers {list(shapes)}: give one λ per sparse layer, one number for all, or `sparsity=`"
            )
        return lambdas

    def _sparsify(
        self, network: str, hidden: Sequence[SparseLayer], output: Sequence[nn.Linear], skip_lambdas: int = 0
    ) -> None:
        """Mask the sparse layers of one network (Algorithm 1, L3-L4).

        A layer that already has a mask (a critic's extractor, shared by its Q-networks) keeps it.
        """
        layers = list(hidden) + (list(output) if self.sparse_output_layer else [])
        if not layers:
            return
        shapes = [layer_shape(layer) for layer in layers]
        # Several output heads (SAC's mu and log_std, of one shape) share the last budget.
        n_heads = len(output) if self.sparse_output_layer else 0
        budget_shapes = shapes[: len(shapes) - n_heads + (1 if n_heads else 0)]
        budgets = self._budgets(budget_shapes, network, skip_lambdas)
        budgets += [budgets[-1]] * (len(shapes) - len(budgets))
        for layer, k in zip(layers, budgets, strict=True):
            if not hasattr(layer, MASK_NAME):
                add_mask(layer, layer.weight.numel() if self.start_dense else k)
            setattr(layer, "connection_budget", k)  # noqa: B010 (the final budget; gradual pruning reaches it later)
