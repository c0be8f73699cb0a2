"""What DS-TD3 and DS-SAC share: hyperparameters, masked updates, evolution and target sparsity."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.utils import polyak_update
from torch import nn

from sb3_dst.common.callbacks import DSTCallback
from sb3_dst.common.masking import (
    MASK_NAME,
    linear_layers,
    masked_step,
    mirror_nonzero_pattern,
    settle_absent_state,
    sparse_linears,
)
from sb3_dst.common.policies import ErLambda, SparseTopologyMixin, check_topology, is_real
from sb3_dst.common.topology import TargetSparsity, drop_and_grow, reset_optimizer_state
from sb3_dst.metrics import FlopsBreakdown, _total_flops, count_connections, flops_breakdown

TOPOLOGY_KEYS = ("er_lambda", "sparsity", "sparse_output_layer")


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


#: Gradient steps between two settles of the optimizer state of absent connections (0.999^1000 ≈ 0.37).
SETTLE_INTERVAL = 1000


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
    #: Step Adam/AdamW with :mod:`sb3_dst.common.fused_adam` (bit for bit torch's step, and faster). Set it to
    #: False on a model to use torch's own ``optimizer.step()`` on masked gradients, for comparison.
    fused_adam: bool = True

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
                f"{type(self).__name__} needs a sparse policy ('MlpPolicy', 'CnnPolicy' or 'MultiInputPolicy'), "
                f"got {self.policy_class!r}"
            )
        self.policy_kwargs = {**self.policy_kwargs, **{k: getattr(self, k) for k in TOPOLOGY_KEYS}}

    def _setup_dst(self) -> None:
        """Cache the sparse layers, the target layers paired with their online connection counts, and sizes."""
        self._sparse_layers: dict[str, list[nn.Linear]] = {}
        self._target_sparsity: dict[str, list[TargetSparsity]] = {}
        # (online parameters, target parameters, Algorithm 3 state of the segment's last target weight, if sparse)
        self._target_updates: dict[str, list[tuple[list[th.Tensor], list[th.Tensor], TargetSparsity | None]]] = {}
        sizes: dict[str, tuple[int, int]] = {}  # connections and weight entries per network
        self._next_settle: dict[str, int] = {}  # gradient step of the next settle_absent_state, per network
        for name, (online_attr, target_attr) in self.networks.items():
            online = getattr(self, online_attr)
            layers = sparse_linears(online)
            self._sparse_layers[name] = layers
            if target_attr is not None:
                target_module = getattr(self, target_attr)
                targets = sparse_linears(target_module)
                self._target_sparsity[name] = [
                    _target_sparsity(target, getattr(layer, MASK_NAME))
                    for layer, target in zip(layers, targets, strict=True)
                ]
                # Split the parameters after each sparse target weight, so that it is pruned right after its update
                by_weight = {id(t.weight): s for t, s in zip(targets, self._target_sparsity[name], strict=True)}
                segments: list[tuple[list[th.Tensor], list[th.Tensor], TargetSparsity | None]] = []
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
            sizes[name] = (count_connections(online), sum(layer.weight.numel() for layer in linear_layers(online)))
        connections, total = (sum(size[i] for size in sizes.values()) for i in (0, 1))
        self._size_records = [(f"dst/{name}_sparsity", 1.0 - n / n_total) for name, (n, n_total) in sizes.items()]
        self._size_records += [("dst/connections", connections), ("dst/sparsity", 1.0 - connections / total)]
        self._flops_cache: tuple[tuple[Any, ...], FlopsBreakdown] | None = None

    # --- SB3 hooks ---------------------------------------------------------------------------------------

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
            "_next_settle",
            "_size_records",
            "_flops_cache",
        ]

    def set_parameters(self, *args: Any, **kwargs: Any) -> None:
        super().set_parameters(*args, **kwargs)  # type: ignore[misc]
        self._setup_dst()

    # --- Called from train() -----------------------------------------------------------------------------

    def _masked_step(self, network: str) -> None:
        """Optimizer step of ``network`` that moves existing connections only (weights stay masked).

        Every ``SETTLE_INTERVAL`` gradient steps (and at the first step after construction or loading) the
        optimizer state of absent connections is settled (:func:`settle_absent_state`): Adam's second moment
        there decays by β2 per step and must not reach zero.
        """
        optimizer, layers = getattr(self, self.networks[network][0]).optimizer, self._sparse_layers[network]
        masked_step(optimizer, layers, fused=self.fused_adam)
        if self._n_updates >= self._next_settle.get(network, 0):
            settle_absent_state(optimizer, layers)
            self._next_settle[network] = self._n_updates + SETTLE_INTERVAL

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
        settle_absent_state(optimizer, layers)  # dropped connections: zero first moment, unit second moment
        fraction = moved / max(total, 1)
        self.last_changed_fraction[network] = fraction
        if network == "critic":
            self.num_evolutions += 1
        return fraction

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
        if self.dynamic:
            self.logger.record("dst/evolutions", self.num_evolutions)
            for name, fraction in self.last_changed_fraction.items():
                self.logger.record(f"dst/{name}_changed_fraction", fraction)
        # The per-step FLOPs depend on the connection counts (fixed by the exact budgets) and on these settings.
        settings = tuple(getattr(self, k, None) for k in ("batch_size", "policy_delay", "target_update_interval"))
        flops_key = (settings, getattr(self, "gradient_steps", None))
        if self._flops_cache is None or self._flops_cache[0] != flops_key:
            self._flops_cache = (flops_key, flops_breakdown(self))
        self.logger.record("dst/flops", _total_flops(self, self._flops_cache[1]))


def _target_sparsity(target: nn.Linear, online_mask: th.Tensor) -> TargetSparsity:
    """Algorithm 3 state of one target layer; its mask buffer follows the target's non-zero pattern."""
    mirror_nonzero_pattern(target)
    return TargetSparsity(target.weight, online_mask, int(online_mask.sum()))
