"""DS-SAC (Algorithm 4, Appendix A of Sokar et al.) and its Static-SAC baseline."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from sb3_dst.common.dst import DSTMixin
from sb3_dst.common.updaters import Evolve, Prune, Static, Updater
from sb3_dst.dssac.policies import CnnPolicy, MlpPolicy, MultiInputPolicy


class DSSAC(DSTMixin, SAC):
    """Dynamic Sparse SAC (DS-SAC): SAC with sparse actor, critics and critic target whose topology evolves.

    The same four components as :class:`~sb3_dst.DSTD3` (Erdős–Rényi initialisation, masked updates, evolution
    every e gradient steps, target sparsity after each target update), placed as in Algorithm 4.

    One deliberate difference from SB3's ``SAC``: the target update happens when the *total* number of gradient
    steps is a multiple of ``target_update_interval``. SB3 counts inside one ``train()`` call, so with
    ``gradient_steps=1`` it updates the target at every step whatever the interval; the paper's hard update
    (``tau=1.0``, ``target_update_interval=1000``) needs the global count. With interval 1 both agree.

    Recommended target update: SB3's soft one (``tau=0.005`` every gradient step, the defaults here and in
    ``ds_sac.yml``). The paper's hard update above is available (``-conf sb3_dst.hyperparams.ds_sac_paper`` in
    rl-zoo3) but learned much more slowly in sb3-dst's runs on HalfCheetah-v5
    (``benchmarks/results/sac_targets_100k/README.md``).

    ``growth``, ``drop_fraction_schedule``, ``evolution_end``, ``sparsity_distribution``, ``erk_power_scale``,
    ``actor_sparsity``, ``critic_sparsity``, ``target_pruning`` and ``sparse_backend`` are as for
    :class:`~sb3_dst.DSTD3`.

    :param policy: ``"MlpPolicy"`` (:class:`~sb3_dst.dssac.policies.SparseSACPolicy`), ``"CnnPolicy"`` (image
        observations, ``NatureCNN`` extractor), ``"MultiInputPolicy"`` (``Dict`` observations, e.g. with
        HER; ``CombinedExtractor``), or one of those classes. Extractors are dense by default.
    :param env: the environment, as for SB3's ``SAC``.
    :param er_lambda: λ per sparse layer (``[λ1, λ2]``) or one number for all; default (7, 64). The paper's
        per-environment values (its Table 4) are in ``hyperparams/ds_sac.yml``.
    :param sparsity: alternative to ``er_lambda``: fraction of zero weights in each network's sparse layers.
    :param sparse_output_layer: also make the output layers sparse (the paper keeps them dense).
    :param drop_fraction: η, fraction of each layer's connections replaced per evolution (paper: 0.1).
    :param evolution_interval: e, gradient steps between evolutions (paper: 1000).
    :param kwargs: every other argument of SB3's ``SAC`` (learning_rate, batch_size, tau, ent_coef, ...).
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

    def _init_dst(self, *args: Any, **kwargs: Any) -> None:
        interval = self.target_update_interval
        if isinstance(interval, bool) or not (isinstance(interval, int) and interval >= 1):
            raise ValueError(f"target_update_interval must be an integer >= 1, got {interval!r}")
        super()._init_dst(*args, **kwargs)

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """Algorithm 4, lines 12-23, once per gradient step (t is ``self._n_updates``)."""
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)

        ent_coef_losses, ent_coefs = [], []
        actor_losses, critic_losses = [], []
        for _ in range(gradient_steps):
            self._n_updates += 1
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = getattr(replay_data, "discounts", None)
            discounts = self.gamma if discounts is None else discounts
            if self.use_sde:
                self.actor.reset_noise()

            # Action of the current policy on s, and the entropy temperature α (fixed, or tuned as in SB3)
            actions_pi, log_prob = self.actor.action_log_prob(replay_data.observations)
            log_prob = log_prob.reshape(-1, 1)
            ent_coef_loss = None
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                ent_coef = th.exp(self.log_ent_coef.detach())
                assert isinstance(self.target_entropy, float)
                ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
                ent_coef_losses.append(ent_coef_loss.item())
            else:
                ent_coef = self.ent_coef_tensor
            ent_coefs.append(ent_coef.item())
            if ent_coef_loss is not None and self.ent_coef_optimizer is not None:
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()

            # Soft Bellman target with the (sparse) critic target
            with th.no_grad():
                next_actions, next_log_prob = self.actor.action_log_prob(replay_data.next_observations)
                next_q_values = th.cat(self.critic_target(replay_data.next_observations, next_actions), dim=1)
                next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
                next_q_values = next_q_values - ent_coef * next_log_prob.reshape(-1, 1)
                target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

            # L13: θi <- θi - λ_Q ∇J_Q(θi), existing connections only
            current_q_values = self.critic(replay_data.observations, replay_data.actions)
            critic_loss = 0.5 * sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
            assert isinstance(critic_loss, th.Tensor)
            critic_losses.append(critic_loss.item())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self._masked_step("critic")

            # L14-L15: every e steps, θi <- Topological_Evolution(θi, M_θi, η)  (Algorithm 2)
            self._on_gradient_step("critic")

            # L17: φ <- φ - λ_π ∇J_π(φ), existing connections only
            q_values_pi = th.cat(self.critic(replay_data.observations, actions_pi), dim=1)
            min_qf_pi, _ = th.min(q_values_pi, dim=1, keepdim=True)
            actor_loss = (ent_coef * log_prob - min_qf_pi).mean()
            actor_losses.append(actor_loss.item())
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self._masked_step("actor")

            # L18-L19: every e steps, φ <- Topological_Evolution(φ, M_φ, η)  (Algorithm 2)
            self._on_gradient_step("actor")

            if self._n_updates % self.target_update_interval == 0:
                # L21: θ'i <- τ θi + (1 - τ) θ'i  (τ = 1: hard update)
                # L22: θ'i <- Maintain_Sparsity(θ'i, ‖θi‖0)  (Algorithm 3), each layer right after its update
                self._update_target("critic")
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        if len(ent_coef_losses) > 0:
            self.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))
        self._record_dst_metrics()


class StaticSAC(DSSAC):
    """Static-SAC: the sparse networks of :class:`DSSAC` with their topology frozen.

    Takes the arguments of :class:`DSSAC` except those of the evolution (``drop_fraction``, ``evolution_interval``,
    ``growth``, ``drop_fraction_schedule``, ``evolution_end``).
    """

    default_updater: ClassVar[Updater] = Static()


class PrunedSAC(DSSAC):
    """SAC with gradual magnitude pruning: dense at the start, pruned to the final sparsity (see
    :class:`~sb3_dst.PrunedTD3` for the schedule and its keywords ``pruning_start``, ``pruning_end``,
    ``evolution_interval``). The critic target follows as in :class:`DSSAC`.
    """

    default_updater: ClassVar[Updater] = Prune()
