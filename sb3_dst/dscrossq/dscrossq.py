"""DS-CrossQ: sb3-contrib's CrossQ trained with the dynamic sparse training of Sokar et al. (Algorithm 1, without
target networks), and its Static-CrossQ and Pruned-CrossQ baselines."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from sb3_contrib import CrossQ
from stable_baselines3.common.policies import BasePolicy
from torch.nn import functional as F

from sb3_dst.common.dst import DSTMixin
from sb3_dst.common.masking import sparse_layers
from sb3_dst.common.updaters import Evolve, Prune, Static, Updater
from sb3_dst.dscrossq.batch_renorm import set_batch_stats
from sb3_dst.dscrossq.policies import MlpPolicy


class DSCrossQ(DSTMixin, CrossQ):
    """Dynamic Sparse CrossQ (DS-CrossQ): CrossQ whose actor and critics are sparse from the first step and whose
    topology evolves during training.

    CrossQ has no target networks, so DS-CrossQ has no Algorithm 3: the Bellman target comes from the online
    critics, evaluated on (s, a) and (s', a') in one joint forward pass (so that BatchRenorm sees both). The
    BatchRenorm layers stay dense and keep their running statistics; only linear layers are sparse. The critics
    evolve every ``evolution_interval`` gradient steps right after their update, the actor (updated every
    ``policy_delay`` steps) at its first update on or after each multiple of ``evolution_interval``.

    ``er_lambda``, ``sparsity``, ``sparse_output_layer``, ``growth``, ``drop_fraction_schedule``,
    ``evolution_end``, ``sparsity_distribution``, ``erk_power_scale``, ``actor_sparsity`` and ``critic_sparsity``
    are as for :class:`~sb3_dst.DSTD3`. Without ``net_arch`` the critics are CrossQ's 1024-1024 and the actor
    256-256.

    :param policy: ``"MlpPolicy"`` (:class:`~sb3_dst.dscrossq.policies.SparseCrossQPolicy`) or that class.
    :param env: the environment, as for CrossQ.
    :param drop_fraction: η (default 0.1, DS-SAC's).
    :param evolution_interval: e, gradient steps between evolutions (default 1000).
    :param target_pruning: only the default ``"magnitude"`` is accepted (there are no target networks to prune).
    :param kwargs: every other argument of sb3-contrib's ``CrossQ`` (learning_rate, policy_delay, ent_coef, ...).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    default_updater: ClassVar[Updater] = Evolve(drop_fraction=0.1)
    networks: ClassVar[dict[str, tuple[str, str | None]]] = {
        "critic": ("critic", None),
        "actor": ("actor", None),
    }

    def _init_dst(self, *args: Any, **kwargs: Any) -> None:
        super()._init_dst(*args, **kwargs)
        if self.target_pruning != "magnitude":
            raise ValueError(
                f"{type(self).__name__} has no target networks: target_pruning={self.target_pruning!r} does not "
                "apply (leave it at its default)"
            )

    def _install_backend(self) -> None:
        """The sparse layers as every family's; on a backend other than ``"masked"``, the BatchRenorm layers take the
        statistics of batches that leave the sparse kernels by matrix-vector products
        (:mod:`sb3_dst.dscrossq.batch_renorm`; torch's variance was the largest item of a sparse step)."""
        super()._install_backend()
        fast = getattr(self, "sparse_backend", "auto") != "masked"
        for online_attr, _ in self.networks.values():
            network = getattr(self, online_attr)
            set_batch_stats(network, fast, sparse_layers(network))

    def _update_period(self, network: str) -> int:
        """The actor is updated every ``policy_delay`` gradient steps, the critics at every step."""
        return int(self.policy_delay) if network == "actor" else 1

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """sb3-contrib's ``CrossQ.train`` with Algorithm 1's sparse updates and evolution (L11-L22; no target
        networks, so no L24-L28); t is ``self._n_updates``."""
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)

        ent_coef_losses, ent_coefs = [], []
        actor_losses, critic_losses = [], []
        for _ in range(gradient_steps):
            self._n_updates += 1
            # L11: sample a mini-batch of N transitions from B
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = getattr(replay_data, "discounts", None)  # n-step returns (recent SB3 only)
            discounts = self.gamma if discounts is None else discounts
            if self.use_sde:
                self.actor.reset_noise()

            if self.log_ent_coef is not None:
                ent_coef = th.exp(self.log_ent_coef.detach())
            else:
                ent_coef = self.ent_coef_tensor
            ent_coefs.append(ent_coef.item())

            # BatchRenorm layers behave differently in train and eval modes: each pass sets them, as CrossQ does
            with th.no_grad():
                # L12: a' ~ π_φ(s') (no target actor)
                self.actor.set_bn_training_mode(False)
                next_actions, next_log_prob = self.actor.action_log_prob(replay_data.next_observations)

            # Joint forward pass of (s, a) and (s', a') through the online critics (batch statistics of both)
            all_obs = th.cat([replay_data.observations, replay_data.next_observations], dim=0)
            all_actions = th.cat([replay_data.actions, next_actions], dim=0)
            self.critic.set_bn_training_mode(True)
            all_q_values = th.cat(self.critic(all_obs, all_actions), dim=1)
            self.critic.set_bn_training_mode(False)
            current_q_values, next_q_values = th.split(all_q_values, batch_size, dim=0)
            current_q_values = current_q_values.T[..., None]  # (n_critics, batch, 1)

            with th.no_grad():
                # L13: y <- r + γ (min_i Q_θi(s', a') - α log π(a'|s'))  (online critics, no target networks)
                next_q_values, _ = th.min(next_q_values.detach(), dim=1, keepdim=True)
                next_q_values = next_q_values - ent_coef * next_log_prob.reshape(-1, 1)
                target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

            # L14: update the critics θi on the existing connections only
            critic_loss = 0.5 * sum(F.mse_loss(current_q, target_q_values.detach()) for current_q in current_q_values)
            assert isinstance(critic_loss, th.Tensor)
            critic_losses.append(critic_loss.item())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self._masked_step("critic")

            # L15-L16: every e steps, θi <- Topological_Evolution(θi, M_θi, η)  (Algorithm 2)
            self._on_gradient_step("critic")

            # L18: delayed policy update, every policy_delay steps
            if self._n_updates % self.policy_delay == 0:
                self.actor.set_bn_training_mode(True)
                actions_pi, log_prob = self.actor.action_log_prob(replay_data.observations)
                log_prob = log_prob.reshape(-1, 1)
                self.actor.set_bn_training_mode(False)

                # Entropy temperature α, tuned as in CrossQ
                if self.ent_coef_optimizer is not None:
                    ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()  # type: ignore[operator]
                    ent_coef_losses.append(ent_coef_loss.item())
                    self.ent_coef_optimizer.zero_grad()
                    ent_coef_loss.backward()
                    self.ent_coef_optimizer.step()

                # L19-L20: φ <- φ - λ_π ∇J_π(φ) through min_i Q_θi, existing connections only
                self.critic.set_bn_training_mode(False)
                q_values_pi = th.cat(self.critic(replay_data.observations, actions_pi), dim=1)
                min_qf_pi, _ = th.min(q_values_pi, dim=1, keepdim=True)
                actor_loss = (ent_coef * log_prob.reshape(-1, 1) - min_qf_pi).mean()
                actor_losses.append(actor_loss.item())
                self.actor.optimizer.zero_grad()
                actor_loss.backward()
                self._masked_step("actor")

                # L21-L22: every e steps, φ <- Topological_Evolution(φ, M_φ, η)  (Algorithm 2)
                self._on_gradient_step("actor", steps_since_last_call=self.policy_delay)
            # L24-L28: no target networks in CrossQ, hence no Polyak update and no Maintain_Sparsity

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        if len(actor_losses) > 0:
            self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        if len(ent_coef_losses) > 0:
            self.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))
        self._record_dst_metrics()


class StaticCrossQ(DSCrossQ):
    """Static-CrossQ: the sparse networks of :class:`DSCrossQ` with their topology frozen.

    Takes the arguments of :class:`DSCrossQ` except those of the evolution (``drop_fraction``,
    ``evolution_interval``, ``growth``, ``drop_fraction_schedule``, ``evolution_end``).
    """

    default_updater: ClassVar[Updater] = Static()


class PrunedCrossQ(DSCrossQ):
    """CrossQ with gradual magnitude pruning: dense at the start, pruned to the final sparsity (see
    :class:`~sb3_dst.PrunedTD3` for the schedule and its keywords ``pruning_start``, ``pruning_end``,
    ``evolution_interval``)."""

    default_updater: ClassVar[Updater] = Prune()
