"""What DS-TD3 and DS-SAC share: hyperparameters, masked updates, evolution and target sparsity."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.type_aliases import MaybeCallback
from torch import nn

from sb3_dst.common.callbacks import DSTCallback
from sb3_dst.common.masking import MASK_NAME, linear_layers, masked_step, sparse_linears
from sb3_dst.common.policies import ErLambda, SparseTopologyMixin, check_topology, is_real
from sb3_dst.common.topology import TargetSparsity, drop_and_grow, reset_optimizer_state
from sb3_dst.metrics import count_connections, training_flops

TOPOLOGY_KEYS = ("er_lambda", "sparsity", "sparse_output_layer")


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


class DSTMixin:
    """Mixed into SB3's ``TD3``/``SAC`` before them; the algorithm's ``train()`` calls the helpers below.

    Subclasses set :attr:`networks`: the name of each sparse network with its online and target attribute names
    (the target is ``None`` for SAC's actor).
    """

    #: Whether the topology evolves (False for the Static-* baselines).
    dynamic: ClassVar[bool] = True
    #: Default drop fraction η and evolution interval e.
    default_drop_fraction: ClassVar[float] = 0.05
    default_evolution_interval: ClassVar[int] = 1000
    networks: ClassVar[dict[str, tuple[str, str | None]]] = {}

    # Set by SB3 base classes; declared for type checkers.
    policy: Any
    policy_class: Any
    policy_kwargs: dict[str, Any]
    logger: Any
    _n_updates: int

    def __init__(
        self,
        policy: Any,
        env: Any,
        er_lambda: ErLambda = None,
        sparsity: float | None = None,
        sparse_output_layer: bool = False,
        drop_fraction: float | None = None,
        evolution_interval: int | None = None,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ):
        super().__init__(policy, env, _init_setup_model=False, **kwargs)  # type: ignore[call-arg]
        self._init_dst(er_lambda, sparsity, sparse_output_layer, drop_fraction, evolution_interval)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        """Build SB3's model with the sparse policy (Algorithm 1, L2-L5), then cache the DST bookkeeping."""
        self._policy_kwargs_with_topology()
        super()._setup_model()  # type: ignore[misc]
        self._setup_dst()

    def _init_dst(
        self,
        er_lambda: ErLambda,
        sparsity: float | None,
        sparse_output_layer: bool,
        drop_fraction: float | None,
        evolution_interval: int | None,
    ) -> None:
        """Validate and store the DST hyperparameters (before the policy is built)."""
        for key in TOPOLOGY_KEYS:
            if key in self.policy_kwargs:
                raise ValueError(f"Pass {key} to {type(self).__name__} directly, not inside policy_kwargs")
        self.er_lambda, self.sparsity = check_topology(er_lambda, sparsity)
        self.sparse_output_layer = bool(sparse_output_layer)
        if not self.dynamic and (drop_fraction is not None or evolution_interval is not None):
            key = "drop_fraction" if drop_fraction is not None else "evolution_interval"
            raise TypeError(
                f"{type(self).__name__} has a fixed topology and takes no {key!r}; "
                f"use {type(self).__name__.replace('Static', 'DS')} to evolve it"
            )
        if self.dynamic:
            drop_fraction = self.default_drop_fraction if drop_fraction is None else drop_fraction
            evolution_interval = self.default_evolution_interval if evolution_interval is None else evolution_interval
            if not (is_real(drop_fraction) and 0.0 < drop_fraction < 1.0):
                raise ValueError(f"drop_fraction (η) must be in (0, 1), got {drop_fraction!r}")
            if isinstance(evolution_interval, bool) or not isinstance(evolution_interval, numbers.Integral):
                raise ValueError(f"evolution_interval (e) must be an integer >= 1, got {evolution_interval!r}")
            if evolution_interval < 1:
                raise ValueError(f"evolution_interval (e) must be an integer >= 1, got {evolution_interval!r}")
            self.drop_fraction: float = float(drop_fraction)
            self.evolution_interval: int = int(evolution_interval)
        else:
            self.evolution_interval = 0
        self.num_evolutions = 0
        self.last_changed_fraction: dict[str, float] = {}
        self.dst_callback: DSTCallback | None = None

    def _policy_kwargs_with_topology(self) -> None:
        """Hand the topology hyperparameters to the sparse policy (called before the policy is built)."""
        if not (isinstance(self.policy_class, type) and issubclass(self.policy_class, SparseTopologyMixin)):
            raise ValueError(
                f"{type(self).__name__} needs a sparse policy (use 'MlpPolicy'), got {self.policy_class!r}"
            )
        self.policy_kwargs = {**self.policy_kwargs, **{k: getattr(self, k) for k in TOPOLOGY_KEYS}}

    def _setup_dst(self) -> None:
        """Cache the sparse layers, the target layers paired with their online connection counts, and sizes."""
        self._sparse_layers: dict[str, list[nn.Linear]] = {}
        self._target_sparsity: dict[str, list[TargetSparsity]] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        for name, (online_attr, target_attr) in self.networks.items():
            online = getattr(self, online_attr)
            layers = sparse_linears(online)
            self._sparse_layers[name] = layers
            if target_attr is not None:
                targets = sparse_linears(getattr(self, target_attr))
                self._target_sparsity[name] = [
                    _target_sparsity(target, getattr(online, MASK_NAME))
                    for online, target in zip(layers, targets, strict=True)
                ]
            self._sizes[name] = (
                count_connections(online),
                sum(layer.weight.numel() for layer in linear_layers(online)),
            )

    # --- SB3 hooks ---------------------------------------------------------------------------------------

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        """Add a :class:`DSTCallback` unless the user passed one."""
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
            "_sizes",
        ]

    def set_parameters(self, *args: Any, **kwargs: Any) -> None:
        super().set_parameters(*args, **kwargs)  # type: ignore[misc]
        self._setup_dst()

    # --- Called from train() -----------------------------------------------------------------------------

    def _masked_step(self, network: str) -> None:
        """Optimizer step of ``network`` that moves existing connections only (weights stay masked)."""
        masked_step(getattr(self, self.networks[network][0]).optimizer, self._sparse_layers[network])

    def _on_gradient_step(self, network: str, steps_since_last_call: int = 1) -> None:
        """Let the DST callback evolve ``network`` if due (Algorithm 1, L15-L16 and L21-L22)."""
        if self.dst_callback is None:  # train() called outside learn()
            self.dst_callback = DSTCallback()
            self.dst_callback.init_callback(self)  # type: ignore[arg-type]
        self.dst_callback.on_gradient_step(network, steps_since_last_call)

    def _evolve_topology(self, network: str) -> float:
        """Algorithm 2 on every sparse layer of ``network``; resets the optimizer state of changed connections.

        :return: fraction of the network's sparse connections that moved.
        """
        optimizer = getattr(self, self.networks[network][0]).optimizer
        moved = total = 0
        layers = self._sparse_layers[network]
        targets: list[TargetSparsity | None] = list(self._target_sparsity.get(network, [None] * len(layers)))
        for layer, target in zip(layers, targets, strict=True):
            mask = getattr(layer, MASK_NAME)
            dropped, grown, changed = drop_and_grow(layer.weight, mask, self.drop_fraction)
            reset_optimizer_state(optimizer, layer.weight, dropped | grown)
            if target is not None:
                target.mark_changed(changed)
            moved += int(changed.sum()) // 2
            total += int(mask.sum())
        fraction = moved / max(total, 1)
        self.last_changed_fraction[network] = fraction
        if network == "critic":
            self.num_evolutions += 1
        return fraction

    def _maintain_target_sparsity(self, network: str) -> None:
        """Algorithm 3 on each target layer of ``network``: keep as many connections as the online layer."""
        for target in self._target_sparsity[network]:
            target.maintain()

    def _record_dst_metrics(self) -> None:
        """Log the ``dst/`` metrics through SB3's logger."""
        connections = total = 0
        for name, (n_conn, n_total) in self._sizes.items():
            self.logger.record(f"dst/{name}_sparsity", 1.0 - n_conn / n_total)
            connections += n_conn
            total += n_total
        self.logger.record("dst/connections", connections)
        self.logger.record("dst/sparsity", 1.0 - connections / total)
        if self.dynamic:
            self.logger.record("dst/evolutions", self.num_evolutions)
            for name, fraction in self.last_changed_fraction.items():
                self.logger.record(f"dst/{name}_changed_fraction", fraction)
        self.logger.record("dst/flops", training_flops(self))


def _target_sparsity(target: nn.Linear, online_mask: th.Tensor) -> TargetSparsity:
    """Algorithm 3 state of one target layer; its mask buffer follows the target's non-zero pattern."""
    return TargetSparsity(target.weight, online_mask, int(online_mask.sum()), support=getattr(target, MASK_NAME))
