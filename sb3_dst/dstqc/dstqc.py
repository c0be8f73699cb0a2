"""DS-TQC: sb3-contrib's TQC trained with the dynamic sparse training of Sokar et al. (Algorithm 1), and its
Static-TQC and Pruned-TQC baselines."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from sb3_contrib import TQC
from sb3_contrib.common.utils import quantile_huber_loss
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import polyak_update

from sb3_dst.common.dst import DSTMixin
from sb3_dst.common.updaters import Evolve, Prune, Static, Updater, check_steps
from sb3_dst.dstqc.policies import CnnPolicy, MlpPolicy, MultiInputPolicy


class DSTQC(DSTMixin, TQC):
    """Dynamic Sparse TQC (DS-TQC): TQC whose actor, quantile critics and critic target are sparse from the first
    step and whose topology evolves during training.

    The four components of :class:`~sb3_dst.DSTD3`, placed as in DS-SAC: every quantile network of the critic
    and the actor get exactly ``round(λ_l (n_in + n_out))`` connections per sparse layer (the output layer of
    ``n_quantiles`` units stays dense unless ``sparse_output_layer``); updates move existing connections only;
    every ``evolution_interval`` gradient steps the critic (each quantile network, layer by layer) and then the
    actor drop and regrow ``drop_fraction`` of their connections (Algorithm 2); after each Polyak update of the
    critic target, each target layer keeps its ‖θ‖₀ largest weights (Algorithm 3). The entropy coefficient is
    TQC's (fixed, or tuned with ``ent_coef="auto"``).

    The critic target is updated on TQC's own schedule: at the gradient steps of each ``train()`` call whose index
    in the call is a multiple of ``target_update_interval`` (with ``gradient_steps=1``, every step).

    ``er_lambda``, ``sparsity``, ``sparse_output_layer``, ``growth``, ``drop_fraction_schedule``,
    ``evolution_end``, ``sparsity_distribution``, ``erk_power_scale``, ``actor_sparsity``, ``critic_sparsity`` and
    ``target_pruning`` are as for :class:`~sb3_dst.DSTD3` (``critic_sparsity`` applies to each quantile network).

    :param policy: ``"MlpPolicy"`` (:class:`~sb3_dst.dstqc.policies.SparseTQCPolicy`), ``"CnnPolicy"``,
        ``"MultiInputPolicy"`` or one of those classes. Extractors are dense by default.
    :param env: the environment, as for TQC.
    :param drop_fraction: η (default 0.1, DS-SAC's).
    :param evolution_interval: e, gradient steps between evolutions (default 1000).
    :param kwargs: every other argument of sb3-contrib's ``TQC`` (n_quantiles and n_critics in ``policy_kwargs``,
        top_quantiles_to_drop_per_net, ent_coef, tau, target_update_interval, ...). Without ``net_arch`` in
        ``policy_kwargs`` the networks are 256-256 (TQC's default too).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    default_updater: ClassVar[Updater] = Evolve(drop_fraction=0.1)
    networks: ClassVar[dict[str, tuple[str, str | None]]] = {
        "critic": ("critic", "critic_target"),
        "actor": ("actor", None),
    }
    #: The target update follows the gradient-step index inside each train() call, as sb3-contrib's TQC (the
    #: FLOPs count reads this).
    per_call_target_updates: ClassVar[bool] = True

    def _init_dst(self, *args: Any, **kwargs: Any) -> None:
        self.target_update_interval = check_steps(self.target_update_interval, "target_update_interval", 1)
        super()._init_dst(*args, **kwargs)

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """sb3-contrib's ``TQC.train`` with Algorithm 1's sparse updates, evolution and target sparsity (L11-L28);
        t is ``self._n_updates``."""
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)

        ent_coef_losses, ent_coefs = [], []
        actor_losses, critic_losses = [], []
        for gradient_step in range(gradient_steps):
            self._n_updates += 1
            # L11: sample a mini-batch of N transitions from B
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = getattr(replay_data, "discounts", None)  # n-step returns (recent SB3 only)
            discounts = self.gamma if discounts is None else discounts
            if self.use_sde:
                self.actor.reset_noise()

            # Action of the current policy on s, and the entropy temperature α (fixed, or tuned as in TQC)
            actions_pi, log_prob = self.actor.action_log_prob(replay_data.observations)
            log_prob = log_prob.reshape(-1, 1)
            ent_coef_loss = None
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                ent_coef = th.exp(self.log_ent_coef.detach())
                ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()  # type: ignore[operator]
                ent_coef_losses.append(ent_coef_loss.item())
            else:
                ent_coef = self.ent_coef_tensor
            ent_coefs.append(ent_coef.item())
            if ent_coef_loss is not None and self.ent_coef_optimizer is not None:
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()

            with th.no_grad():
                # L12-L13 (TQC's target): quantiles of the (sparse) critic target at (s', a' ~ π(s')), the top
                # ones of each network dropped, minus the entropy term: y = r + γ (Z' - α log π(a'|s'))
                next_actions, next_log_prob = self.actor.action_log_prob(replay_data.next_observations)
                next_quantiles = self.critic_target(replay_data.next_observations, next_actions)
                n_target_quantiles = (
                    self.critic.quantiles_total - self.top_quantiles_to_drop_per_net * self.critic.n_critics
                )
                next_quantiles, _ = th.sort(next_quantiles.reshape(batch_size, -1))
                next_quantiles = next_quantiles[:, :n_target_quantiles]
                target_quantiles = next_quantiles - ent_coef * next_log_prob.reshape(-1, 1)
                target_quantiles = replay_data.rewards + (1 - replay_data.dones) * discounts * target_quantiles
                target_quantiles.unsqueeze_(dim=1)  # (batch, 1, n_target_quantiles), broadcast over the critics

            # L14: update the quantile critics θi on the existing connections only
            current_quantiles = self.critic(replay_data.observations, replay_data.actions)
            critic_loss = quantile_huber_loss(current_quantiles, target_quantiles, sum_over_quantiles=False)
            critic_losses.append(critic_loss.item())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self._masked_step("critic")

            # L15-L16: every e steps, θi <- Topological_Evolution(θi, M_θi, η)  (Algorithm 2)
            self._on_gradient_step("critic")

            # L19-L20: policy update through the mean of all quantiles, existing connections only
            qf_pi = self.critic(replay_data.observations, actions_pi).mean(dim=2).mean(dim=1, keepdim=True)
            actor_loss = (ent_coef * log_prob - qf_pi).mean()
            actor_losses.append(actor_loss.item())
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self._masked_step("actor")

            # L21-L22: every e steps, φ <- Topological_Evolution(φ, M_φ, η)  (Algorithm 2)
            self._on_gradient_step("actor")

            if gradient_step % self.target_update_interval == 0:
                # L24-L25: θ'i <- τ θi + (1 - τ) θ'i  (no target actor: TQC's actor is stochastic, as SAC's)
                # L27: θ'i <- Maintain_Sparsity(θ'i, ‖θi‖0)  (Algorithm 3), each layer right after its update
                self._update_target("critic")
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        if len(ent_coef_losses) > 0:
            self.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))
        self._record_dst_metrics()


class StaticTQC(DSTQC):
    """Static-TQC: the sparse networks of :class:`DSTQC` with their topology frozen.

    Takes the arguments of :class:`DSTQC` except those of the evolution (``drop_fraction``, ``evolution_interval``,
    ``growth``, ``drop_fraction_schedule``, ``evolution_end``).
    """

    default_updater: ClassVar[Updater] = Static()


class PrunedTQC(DSTQC):
    """TQC with gradual magnitude pruning: dense at the start, pruned to the final sparsity (see
    :class:`~sb3_dst.PrunedTD3` for the schedule and its keywords ``pruning_start``, ``pruning_end``,
    ``evolution_interval``). The critic target follows as in :class:`DSTQC`.
    """

    default_updater: ClassVar[Updater] = Prune()
