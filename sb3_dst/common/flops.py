"""Network size S (Sokar et al., Eq. 9) and training FLOPs (§4.3): the counting the DST algorithms log.

:mod:`sb3_dst.common.dst` logs ``dst/flops`` and the ``dst/`` sizes from these counts, so they live beside it in
``common/`` (torch only); :mod:`sb3_dst.metrics` re-exports them with the learning curve area (Eq. 10).

Both work on Stable-Baselines3's dense :class:`~stable_baselines3.TD3` / :class:`~stable_baselines3.SAC` /
:class:`~stable_baselines3.DDPG`, sb3-contrib's ``TQC`` and ``CrossQ``, and on the sparse models of this package.
A layer is *sparse* when it is an ``nn.Linear`` or ``nn.Conv2d`` carrying a ``weight_mask`` buffer (1 = the connection
exists); its size is ``mask.sum()``. Any other ``nn.Linear`` or ``nn.Conv2d`` counts all its weights (a
convolution's connections are its kernel entries).

FLOPs convention (RigL, Evci et al. 2020, as used by the paper)
---------------------------------------------------------------
* A fully connected layer costs one multiply-add per existing connection and per sample: ``‖W^l‖_0`` for a sparse
  layer, ``n^(l-1)·n^l`` for a dense one. A convolution costs its connections (kernel entries, ``‖W^l‖_0`` when
  sparse) times its output positions ``h_out·w_out`` per sample; the positions are read once from a forward pass
  of the features extractor on an all-zero observation. A critic's features extractor runs once per critic
  forward pass, whatever the number of Q-networks, and is counted with the first one (TD3's actor loss uses Q1).
  One multiply-add counts as **one** FLOP (the count that reproduces the paper's Table 3; multiply by 2 for the
  "2 FLOPs per MAC" habit). Biases, activations, losses, target-noise
  and other element-wise work are not counted, nor is the optimizer's own update.
* A backward pass costs 2 × the forward pass (gradients of the inputs and of the weights), for every network an
  error is back-propagated through, whether or not that network's weights are then stepped.
* ``convention="executed"`` (default) counts what Stable-Baselines3 and sb3-dst run, per gradient step on a batch
  of ``B = batch_size`` samples:

  - TD3 / Static-TD3 / DS-TD3, critic update (every step): target actor forward on s', target critics forward
    on (s', a'), online critics forward + backward on (s, a).
    Actor update (every ``policy_delay`` = d steps): actor forward + backward on s, Q1 forward + backward.
  - SAC / DS-SAC (every step): actor forward + backward on s, actor forward on s', target critics forward,
    online critics forward + backward on (s, a) and again on (s, ã) for the actor loss (SB3 uses min(Q1, Q2)).
    The entropy temperature's update is element-wise and not counted.
  - DDPG / DS-DDPG: as TD3 with d = 1 and one critic.
  - TQC / DS-TQC: as SAC, each of the ``n_critics`` quantile networks ending in ``n_quantiles`` outputs (the
    sorting and truncation of the target quantiles is not counted). The critic target is updated at the gradient
    steps of each ``train()`` call whose index is a multiple of ``target_update_interval``, as TQC does.
  - CrossQ / DS-CrossQ (no target networks), critic update (every step): actor forward on s', then the online
    critics forward + backward on the joint batch of (s, a) and (s', a'), i.e. on ``2B`` samples (the backward
    pass runs through the whole joint batch). Actor update (every ``policy_delay`` steps): actor forward +
    backward on s, critics forward + backward on (s, ã). No target update. BatchRenorm layers are element-wise
    and not counted.
  - Target update (every d steps for TD3; for SAC every ``target_update_interval`` steps, counted as SB3's SAC
    or DS-SAC really schedule it): Polyak averaging at 2 FLOPs per target parameter (existing connections for
    sparse layers, plus biases), and, for sparse target layers, the Maintain-sparsity selection (Algorithm 3)
    counted as one operation per weight-matrix entry.
  - Action selection: one actor forward per environment transition once ``learning_starts`` random
    transitions are done (before that the actions are sampled uniformly and no network runs).
  - Topological evolution (Algorithm 2), per evolution event (``model.num_evolutions``): one operation per
    weight-matrix entry of every sparse layer of the actor and critics, a features extractor they share once
    (ranking the existing magnitudes and choosing empty positions). It has no multiply-adds and is tiny (~2e5
    every e steps vs ~1e8 per step).
  - Gradient growth (``growth="gradient"``, RigL): at each evolution event the weight gradient of every sparse
    layer is computed densely, which costs ``batch_size`` multiply-adds per *absent* entry on top of the sparse
    backward pass (RigL's accounting); it is added to the evolution event's cost.
  - Gradual magnitude pruning (Pruned-* algorithms): the connection counts shrink during training. The model
    checkpoints the FLOPs spent so far (``model.flops_checkpoint``) before every change of counts, and the total
    is that checkpoint plus the steps since, at the current counts: the dense phase is counted as dense.
  - Evaluation episodes are not training and are not counted.

* ``convention="paper"`` reproduces the paper's Table 3 (1.07e14 for dense TD3 on HalfCheetah, 1M steps):
  the same per-batch passes, but the actor is updated at **every** gradient step, and target updates, action
  selection and evolution are not counted.

Network size
------------
S counts the weights (connections) of the actor and of all critics, not of the target networks (these are
copies), and not biases: this reproduces Table 3 (214,784 dense, 106,169 sparse on HalfCheetah). The features
extractors' linear and convolution layers are included (a features extractor shared by actor and critic is counted
once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from weakref import WeakKeyDictionary

import torch as th
from gymnasium import spaces
from torch import nn

from sb3_dst.common.masking import MASK_NAME, weight_layers

__all__ = [
    "Convention",
    "FlopsBreakdown",
    "count_connections",
    "flops_breakdown",
    "network_size",
    "training_flops",
]

Convention = Literal["executed", "paper"]


#: Target layers mapped to the online layer whose connection count they follow (``id`` of target layer -> layer).
_Follow = dict[int, nn.Module]


def _connections(layer: nn.Linear | nn.Conv2d, follow: _Follow | None = None) -> int:
    if follow:
        layer = follow.get(id(layer), layer)  # type: ignore[assignment]
    mask = getattr(layer, MASK_NAME, None)
    return int(mask.sum().item()) if mask is not None else layer.weight.numel()


def count_connections(module: nn.Module) -> int:
    """Number of connections (weights) of the linear and convolution layers of ``module``: ``Σ_l ‖W^l‖_0`` (Eq. 9).

    A sparse layer (``nn.Linear`` or ``nn.Conv2d`` with a ``weight_mask`` buffer) contributes ``mask.sum()``, any
    other ``nn.Linear`` or ``nn.Conv2d`` its ``weight.numel()``. Biases and other layers are not counted.
    """
    return sum(_connections(layer) for layer in weight_layers(module))


def _forward_macs(module: nn.Module, positions: dict[int, int], follow: _Follow | None = None) -> int:
    """Multiply-adds of one sample through the linear and convolution layers of ``module``: connections, times
    the output positions for a convolution (``positions``, by ``id`` of the layer)."""
    return sum(_connections(layer, follow) * positions.get(id(layer), 1) for layer in weight_layers(module))


def _count_parameters(module: nn.Module, follow: _Follow | None = None) -> int:
    """Connections plus every parameter that is not a linear or convolution layer's weight (biases, log-std, ...)."""
    layers = weight_layers(module)
    weights = {id(layer.weight) for layer in layers}
    others = sum(p.numel() for p in module.parameters() if id(p) not in weights)
    return sum(_connections(layer, follow) for layer in layers) + others


def _sparse_matrix_entries(module: nn.Module) -> int:
    """Weight entries (``n^(l-1)·n^l``, or a convolution's kernel entries) of the sparse layers of ``module``."""
    return sum(layer.weight.numel() for layer in weight_layers(module) if hasattr(layer, MASK_NAME))


def _zero_observation(space: spaces.Space, device: th.device) -> Any:
    """A batch of one all-zero observation of ``space`` (a dictionary for ``Dict`` spaces)."""
    if isinstance(space, spaces.Dict):
        return {key: _zero_observation(sub, device) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Discrete):
        return th.zeros(1, dtype=th.long, device=device)
    if isinstance(space, spaces.MultiDiscrete):
        return th.zeros((1, len(space.nvec)), dtype=th.long, device=device)
    return th.zeros((1, *space.shape), dtype=th.float32, device=device)  # type: ignore[misc]


def _conv_positions(networks: Sequence[Any]) -> dict[int, int]:
    """Output positions ``h_out·w_out`` of each convolution in the features extractors of ``networks`` (SB3
    actors and critics), by ``id``: one forward pass on a zero observation, in evaluation mode, without gradient."""
    positions: dict[int, int] = {}
    for network in networks:
        extractor = getattr(network, "features_extractor", None)
        if extractor is None:
            continue
        convs = [m for m in extractor.modules() if isinstance(m, nn.Conv2d) and id(m) not in positions]
        if not convs:
            continue

        def record(layer: nn.Module, inputs: Any, output: th.Tensor) -> None:
            positions[id(layer)] = int(output.shape[-2]) * int(output.shape[-1])

        hooks = [conv.register_forward_hook(record) for conv in convs]
        training = extractor.training
        try:
            extractor.eval()
            with th.no_grad():
                network.extract_features(_zero_observation(network.observation_space, network.device), extractor)
        finally:
            extractor.train(training)
            for hook in hooks:
                hook.remove()
    return positions


def _policy(model: Any) -> Any:
    """The policy of an algorithm, or ``model`` itself when it already is a policy (has ``actor`` and ``critic``)."""
    return model.policy if hasattr(model, "policy") and hasattr(model.policy, "actor") else model


def network_size(model: Any) -> int:
    """Network size S of Eq. 9: connections of the actor plus all critics (weights only, no targets, no biases).

    :param model: a TD3/SAC-like algorithm (SB3's or sb3-dst's) or its policy.
    :return: ``Σ_l ‖W^l‖_0`` over the actor and the critics, a features extractor they share counted once.
    """
    policy = _policy(model)
    layers = {id(layer): layer for network in (policy.actor, policy.critic) for layer in weight_layers(network)}
    return sum(map(_connections, layers.values()))


def _q_network_sizes(critic: nn.Module, positions: dict[int, int], follow: _Follow | None = None) -> list[int]:
    """Multiply-adds per sample of each Q-network, the critic's features extractor counted with the first one."""
    q_networks = getattr(critic, "q_networks", None)
    if q_networks:
        sizes = [_forward_macs(q, positions, follow) for q in q_networks]
        extractor = getattr(critic, "features_extractor", None)
        if extractor is not None:
            sizes[0] += _forward_macs(extractor, positions, follow)
        return sizes
    return [_forward_macs(critic, positions, follow)]


def _target_follow(pairs: Sequence[tuple[nn.Module, nn.Module | None]]) -> _Follow:
    """Each sparse target layer mapped to its online layer.

    A target layer keeps as many connections as its online layer (Algorithm 3 prunes it to that count ``k``
    after each update), but its mask buffer is only refreshed to its non-zero pattern when ``state_dict()`` runs:
    counting it would depend on when the model was last saved, and under gradual pruning, where the online
    counts shrink, it would count the dense start. So targets are counted by their online layers.
    """
    follow: _Follow = {}
    for online, target in pairs:
        if target is None:
            continue
        online_layers, target_layers = weight_layers(online), weight_layers(target)
        if len(online_layers) != len(target_layers):
            continue  # not a copy of the online network: count its own masks
        for layer, target_layer in zip(online_layers, target_layers, strict=True):
            sparse_pair = hasattr(layer, MASK_NAME) and hasattr(target_layer, MASK_NAME)
            if sparse_pair and layer.weight.shape == target_layer.weight.shape:
                follow[id(target_layer)] = layer
    return follow


def _is_sac(model: Any) -> bool:
    # SAC, TQC and CrossQ have no target actor; TD3 (and DDPG) have one.
    return getattr(_policy(model), "actor_target", None) is None


def _is_crossq(model: Any) -> bool:
    # CrossQ is the only one without a critic target: its Bellman target comes from a joint pass of the critics.
    return getattr(_policy(model), "critic_target", None) is None


@dataclass(frozen=True)
class _Counts:
    """Connection and parameter counts of a policy's networks (per sample multiply-adds of each pass)."""

    actor: int  # multiply-adds per sample of each network (connections, times output positions for convolutions)
    q_networks: tuple[int, ...]
    actor_target: int
    critic_target: int
    target_update: int  # 2 per target parameter (Polyak) + 1 per sparse target matrix entry (Algorithm 3)
    evolution: int  # 1 per sparse matrix entry of actor and critics (Algorithm 2)
    absent: int  # absent entries of the sparse layers of actor and critics, times output positions (RigL)


def _count(policy: Any) -> _Counts:
    critic_target = getattr(policy, "critic_target", None)
    actor_target = getattr(policy, "actor_target", None)
    targets = [m for m in (critic_target, actor_target) if m is not None]
    positions = _conv_positions([policy.actor, policy.critic, *targets])
    follow = _target_follow([(policy.critic, critic_target), (policy.actor, actor_target)])
    # the sparse layers Algorithm 2 ranks, a features extractor shared by actor and critic once (it evolves once)
    layers = {id(layer): layer for network in (policy.actor, policy.critic) for layer in weight_layers(network)}
    online = [layer for layer in layers.values() if hasattr(layer, MASK_NAME)]
    return _Counts(
        actor=_forward_macs(policy.actor, positions),
        q_networks=tuple(_q_network_sizes(policy.critic, positions)),
        actor_target=_forward_macs(actor_target, positions, follow) if actor_target is not None else 0,
        critic_target=sum(_q_network_sizes(critic_target, positions, follow)) if critic_target is not None else 0,
        target_update=sum(2 * _count_parameters(m, follow) + _sparse_matrix_entries(m) for m in targets),
        evolution=sum(layer.weight.numel() for layer in online),
        absent=sum((layer.weight.numel() - _connections(layer)) * positions.get(id(layer), 1) for layer in online),
    )


# policy -> (online linear and convolution layers with the mask tensor and its version when counted, counts)
_CACHE: WeakKeyDictionary[nn.Module, tuple[list[tuple[nn.Module, Any, int]], _Counts]] = WeakKeyDictionary()


def _cached_count(policy: Any) -> _Counts:
    """:func:`_count`, cached until a mask of the actor or critics is added, replaced or changed in place.

    Target networks are not watched: their connection counts follow the online ones (Algorithm 3) and are
    re-read whenever the online masks change (at each evolution).
    """
    entry = _CACHE.get(policy)
    if entry is not None:
        layers, counts = entry
        if all(
            getattr(layer, MASK_NAME, None) is mask and (mask is None or mask._version == version)
            for layer, mask, version in layers
        ):
            return counts
    layers = []
    for layer in weight_layers(policy.actor) + weight_layers(policy.critic):
        mask = getattr(layer, MASK_NAME, None)
        layers.append((layer, mask, -1 if mask is None else mask._version))
    counts = _count(policy)
    _CACHE[policy] = (layers, counts)
    return counts


@dataclass(frozen=True)
class FlopsBreakdown:
    """Training FLOPs (multiply-adds) of one model, split by what triggers them.

    :param critic_update: per gradient step, the critic-side passes on the whole batch (TD3: target actor,
        target critics, online critics forward + backward; SAC: everything of the step but the actor's backward
        and the actor-loss critic passes, see ``actor_update``).
    :param actor_update: per actor update, on the whole batch.
    :param actor_update_interval: gradient steps per actor update (TD3's policy delay d; 1 for SAC).
    :param target_update: per target update (Polyak + Maintain sparsity).
    :param target_updates_per_step: target updates per gradient step (1/d for TD3).
    :param action_selection: per environment transition after ``learning_starts`` (one actor forward).
    :param evolution: per evolution event (Algorithm 2 on every sparse layer of actor and critics).
    """

    critic_update: float
    actor_update: float
    actor_update_interval: int
    target_update: float
    target_updates_per_step: float
    action_selection: float
    evolution: float

    @property
    def per_gradient_step(self) -> float:
        """Average FLOPs of one gradient step (critic, amortised actor and target updates; no evolution)."""
        return (
            self.critic_update
            + self.actor_update / self.actor_update_interval
            + self.target_update * self.target_updates_per_step
        )


def flops_breakdown(model: Any, convention: Convention = "executed") -> FlopsBreakdown:
    """Per-step training FLOPs of ``model`` (an SB3 or sb3-dst TD3/SAC) under ``convention``.

    See the module docstring for the convention. Sparse layers count only their existing connections, so a
    full-density sparse layer costs what the dense layer costs, and the cost scales with the density.
    """
    return _breakdown(model, _count(_policy(model)), convention)


def _breakdown(model: Any, counts: _Counts, convention: Convention) -> FlopsBreakdown:
    if convention not in ("executed", "paper"):
        raise ValueError(f"unknown FLOPs convention {convention!r}; use 'executed' or 'paper'")
    batch = float(model.batch_size)
    actor, critics = counts.actor, sum(counts.q_networks)
    paper = convention == "paper"
    if _is_crossq(model):
        # actor on s' (no grad) + online critics fwd/bwd on the joint batch of 2B samples; no target update
        critic_update = batch * (actor + 2 * 3 * critics)
        actor_update = batch * (3 * actor + 3 * critics)
        actor_interval = 1 if paper else int(getattr(model, "policy_delay", 1))
        target_rate = 0.0
    elif _is_sac(model):
        # actor on s' (no grad) + target critics + online critics fwd/bwd on (s, a)
        critic_update = batch * (actor + counts.critic_target + 3 * critics)
        # actor fwd/bwd on s + critics fwd/bwd on (s, actor(s)) for min(Q1, Q2)
        actor_update = batch * (3 * actor + 3 * critics)
        actor_interval = 1
        target_rate = _sac_target_updates_per_step(model)
    else:
        critic_update = batch * (counts.actor_target + counts.critic_target + 3 * critics)
        # actor fwd/bwd on s + Q1 fwd/bwd on (s, actor(s))
        actor_update = batch * (3 * actor + 3 * counts.q_networks[0])
        actor_interval = 1 if paper else int(getattr(model, "policy_delay", 1))
        target_rate = 1.0 / actor_interval
    if paper:
        return FlopsBreakdown(critic_update, actor_update, 1, 0.0, 0.0, 0.0, 0.0)
    evolution = float(counts.evolution)
    if getattr(model, "growth", "random") == "gradient":
        evolution += batch * counts.absent
    return FlopsBreakdown(
        critic_update=critic_update,
        actor_update=actor_update,
        actor_update_interval=actor_interval,
        target_update=float(counts.target_update),
        target_updates_per_step=target_rate,
        action_selection=float(actor),
        evolution=evolution,
    )


def _uses_global_update_counter(model: Any) -> bool:
    """sb3-dst's SAC schedules the target update on the global gradient-step counter (every
    ``target_update_interval``-th gradient step of the whole run, see :class:`~sb3_dst.DSSAC`); SB3's SAC, TQC and
    sb3-dst's TQC on the index inside each ``train()`` call."""
    return hasattr(model, "num_evolutions") and not getattr(model, "per_call_target_updates", False)


def _sac_target_updates_per_step(model: Any) -> float:
    interval = max(int(getattr(model, "target_update_interval", 1)), 1)
    if _uses_global_update_counter(model):
        return 1.0 / interval
    # SB3's SAC: ``gradient_step % interval == 0`` with gradient_step the index inside one train() call.
    gradient_steps = int(getattr(model, "gradient_steps", 1))
    if gradient_steps <= 0:  # -1: as many gradient steps as environment steps; 1 per call with train_freq 1
        gradient_steps = 1
    return len(range(0, gradient_steps, interval)) / gradient_steps


def training_flops(model: Any, convention: Convention = "executed") -> float:
    """Total training FLOPs executed so far by ``model`` (an SB3 or sb3-dst TD3/SAC).

    Computed from the counters the algorithm keeps: ``model._n_updates`` gradient steps,
    ``model.num_timesteps`` environment transitions (an actor forward each once ``learning_starts`` is
    reached) and ``model.num_evolutions`` evolution events (sb3-dst models only). At the end of ``learn()``
    this is the total for the run. The DST algorithms log it as ``dst/flops``.

    The connection counts are cached per policy and re-read when a mask of the actor or critics is added,
    replaced or changed in place (an evolution), so calling this at every step costs a few microseconds.

    :param convention: ``"executed"`` (default, what is run) or ``"paper"`` (Table 3's convention).
    """
    return _total_flops(model, _breakdown(model, _cached_count(_policy(model)), convention), convention)


def _total_flops(model: Any, parts: FlopsBreakdown, convention: Convention = "executed") -> float:
    """:func:`training_flops` from a breakdown computed beforehand (see ``DSTMixin._record_dst_metrics``)."""
    # Counts change only under gradual pruning: FLOPs up to the last change, then the steps since at today's counts.
    checkpoint = getattr(model, "flops_checkpoint", None) if convention == "executed" else None
    spent, base_updates, base_timesteps, base_evolutions = checkpoint or (0.0, 0, 0, 0)
    n_updates = int(getattr(model, "_n_updates", 0))
    if convention == "paper":
        return n_updates * parts.per_gradient_step
    if _is_crossq(model):
        n_actor = n_updates // parts.actor_update_interval - base_updates // parts.actor_update_interval
        n_target = 0
    elif _is_sac(model):
        n_actor = n_updates - base_updates
        n_target = _sac_target_updates(model, n_updates) - _sac_target_updates(model, base_updates)
    else:
        n_actor = n_updates // parts.actor_update_interval - base_updates // parts.actor_update_interval
        n_target = n_actor
    learning_starts = int(getattr(model, "learning_starts", 0))
    n_actions = max(int(getattr(model, "num_timesteps", 0)) - learning_starts, 0) - max(
        base_timesteps - learning_starts, 0
    )
    n_evolutions = int(getattr(model, "num_evolutions", 0)) - base_evolutions
    n_updates -= base_updates
    return float(
        spent
        + n_updates * parts.critic_update
        + n_actor * parts.actor_update
        + n_target * parts.target_update
        + n_actions * parts.action_selection
        + n_evolutions * parts.evolution
    )


def _sac_target_updates(model: Any, n_updates: int) -> int:
    interval = max(int(getattr(model, "target_update_interval", 1)), 1)
    if _uses_global_update_counter(model):
        return n_updates // interval
    return round(n_updates * _sac_target_updates_per_step(model))
