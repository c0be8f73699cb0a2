"""DS-TD3 (Algorithm 1 of Sokar et al.) and its Static-TD3 baseline."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from sb3_dst.common.dst import DSTMixin
from sb3_dst.common.updaters import Prune, Static, Updater
from sb3_dst.dstd3.policies import CnnPolicy, MlpPolicy, MultiInputPolicy


class DSTD3(DSTMixin, TD3):
    """Dynamic Sparse TD3 (DS-TD3): TD3 whose actor, critics and their targets are sparse from the first step
    and whose topology evolves during training.

    - Topology initialisation (L2-L5): every hidden layer l of the actor and both critics gets exactly
      ``round(λ_l (n_in + n_out))`` connections at random positions (Erdős–Rényi, Eq. 1); targets start as copies.
    - Masked updates: absent weights get zero gradients and stay exactly zero after each optimizer step.
    - Evolution (L15-L16, L21-L22): every ``evolution_interval`` (e) gradient steps, each sparse layer drops the
      fraction ``drop_fraction`` (η) of its connections closest to zero and grows as many at random, at zero
      weight, with their Adam moments reset (Algorithm 2). Scheduled by :class:`~sb3_dst.DSTCallback`.
    - Target sparsity (L27-L28): after every Polyak update, each target layer keeps only its largest-magnitude
      weights, as many as the online layer has connections (Algorithm 3).

    :param policy: ``"MlpPolicy"`` (:class:`~sb3_dst.dstd3.policies.SparseTD3Policy`), ``"CnnPolicy"`` (image
        observations, ``NatureCNN`` extractor), ``"MultiInputPolicy"`` (``Dict`` observations, e.g. with
        HER; ``CombinedExtractor``), or one of those classes. Extractors are dense by default.
    :param env: the environment, as for SB3's ``TD3``.
    :param er_lambda: λ per sparse layer (``[λ1, λ2]``) or one number for all; default the paper's (7, 64).
    :param sparsity: alternative to ``er_lambda``: fraction of zero weights in each network's sparse layers.
    :param sparse_output_layer: also make the output layers sparse (the paper keeps them dense).
    :param drop_fraction: η, fraction of each layer's connections replaced per evolution (paper: 0.05).
    :param evolution_interval: e, gradient steps between evolutions (paper: 1000).
    :param growth: ``"random"`` (the paper's SET growth) or ``"gradient"`` (RigL: the absent connections with the
        largest ``|∂L/∂W|`` of the current batch, computed densely at evolution steps only).
    :param drop_fraction_schedule: ``"constant"`` (η at every evolution, the paper) or ``"cosine"``
        (η_t = η ½(1 + cos(π t / T)), T = ``evolution_end`` or the run's gradient steps; RigL).
    :param evolution_end: gradient step after which the topology is frozen (``None``: never).
    :param sparsity_distribution: with ``sparsity``: ``"erk"`` (default) or ``"uniform"`` over a network's layers.
    :param erk_power_scale: exponent of the ERK score (1: the Erdős–Rényi proportions of Eq. 1).
    :param actor_sparsity: the actor's sparsity, instead of ``sparsity``/``er_lambda``.
    :param critic_sparsity: each critic's sparsity, instead of ``sparsity``/``er_lambda``.
    :param target_pruning: ``"magnitude"`` (Algorithm 3: keep the target's ‖θ‖₀ largest weights, the paper) or
        ``"online_mask"`` (multiply the target by the online mask after each Polyak update, as RLx2).
    :param sparse_backend: ``"masked"`` (dense weights with masks, the paper's way), ``"sparse"`` (sparse linear
        layers compute on their connections only) or ``"auto"`` (the default: sparse where it is faster).
    :param kwargs: every other argument of SB3's ``TD3`` (learning_rate, batch_size, tau, policy_delay, ...).
        Without ``net_arch`` in ``policy_kwargs`` the networks are the paper's 256-256.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    networks: ClassVar[dict[str, tuple[str, str | None]]] = {
        "critic": ("critic", "critic_target"),
        "actor": ("actor", "actor_target"),
    }

    def _update_period(self, network: str) -> int:
        """The actor is updated every ``policy_delay`` (d) gradient steps, the critics at every step."""
        return int(self.policy_delay) if network == "actor" else 1

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """Algorithm 1, lines 11-29, once per gradient step (t is ``self._n_updates``)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])

        actor_losses, critic_losses = [], []
        for _ in range(gradient_steps):
            self._n_updates += 1
            # L11: sample a mini-batch of N transitions from B
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = getattr(replay_data, "discounts", None)
            discounts = self.gamma if discounts is None else discounts

            with th.no_grad():
                # L12: a <- π_φ'(s') + ε, ε ~ clip(N(0, σ~), -c, c)
                noise = replay_data.actions.clone().data.normal_(0, self.target_policy_noise)
                noise = noise.clamp(-self.target_noise_clip, self.target_noise_clip)
                next_actions = (self.actor_target(replay_data.next_observations) + noise).clamp(-1, 1)
                # L13: y <- r + γ min_i Q_θ'i(s', a)
                next_q_values = th.cat(self.critic_target(replay_data.next_observations, next_actions), dim=1)
                next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
                target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

            # L14: update the critics θi on the existing connections only
            current_q_values = self.critic(replay_data.observations, replay_data.actions)
            critic_loss = sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
            assert isinstance(critic_loss, th.Tensor)
            critic_losses.append(critic_loss.item())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self._masked_step("critic")

            # L15-L16: every e steps, θi <- Topological_Evolution(θi, M_θi, η)  (Algorithm 2)
            self._on_gradient_step("critic")

            # L18: delayed policy update, every d steps
            if self._n_updates % self.policy_delay == 0:
                # L19-L20: deterministic policy gradient through Q_θ1
                actions = self.actor(replay_data.observations)
                actor_loss = -self.critic.q1_forward(replay_data.observations, actions).mean()
                actor_losses.append(actor_loss.item())
                self.actor.optimizer.zero_grad()
                actor_loss.backward()
                self._masked_step("actor")

                # L21-L22: every e steps, φ <- Topological_Evolution(φ, M_φ, η)  (Algorithm 2)
                self._on_gradient_step("actor", steps_since_last_call=self.policy_delay)

                # L24-L26: θ'i <- τ θi + (1 - τ) θ'i ;  φ' <- τ φ + (1 - τ) φ'
                # L27-L28: θ'i <- Maintain_Sparsity(θ'i, ‖θi‖0) ; φ' <- Maintain_Sparsity(φ', ‖φ‖0)  (Algorithm 3)
                # (each target layer is pruned right after its own Polyak update)
                self._update_target("critic")
                self._update_target("actor")
                polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
                polyak_update(self.actor_batch_norm_stats, self.actor_batch_norm_stats_target, 1.0)

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if len(actor_losses) > 0:
            self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        self._record_dst_metrics()


class StaticTD3(DSTD3):
    """Static-TD3: the sparse networks of :class:`DSTD3` with their topology frozen (the paper's baseline).

    Takes the arguments of :class:`DSTD3` except those of the evolution (``drop_fraction``, ``evolution_interval``,
    ``growth``, ``drop_fraction_schedule``, ``evolution_end``).
    """

    default_updater: ClassVar[Updater] = Static()


class PrunedTD3(DSTD3):
    """TD3 with gradual magnitude pruning (Zhu & Gupta): the dense-to-sparse baseline of sparse-training studies.

    The networks start dense; every ``evolution_interval`` gradient steps from ``pruning_start`` on, each sparse
    layer keeps its largest-magnitude connections, as many as the cubic schedule
    ``s_t = s (1 − (1 − p)³)``, ``p = (t − pruning_start) / (pruning_end − pruning_start)`` allows, until it
    holds its final budget (set by ``sparsity``/``actor_sparsity``/``critic_sparsity`` with
    ``sparsity_distribution``, or by ``er_lambda``), which it then keeps. Pruned connections never come back.
    Targets follow as in :class:`DSTD3` (``target_pruning``).

    :param pruning_start: gradient step of the first pruning (default: 20 % of the run's gradient steps).
    :param pruning_end: gradient step at which the final sparsity is reached (default: 80 % of the run).
    :param evolution_interval: gradient steps between two pruning steps (default 1000).
    :param kwargs: the topology keywords of :class:`DSTD3` and every argument of SB3's ``TD3``.
    """

    default_updater: ClassVar[Updater] = Prune()
