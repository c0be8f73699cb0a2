"""Sparse CrossQ policy: sb3-contrib's CrossQ actor and critics with Erdős–Rényi masks on their linear layers.

The BatchRenorm layers are not linear layers: they stay dense, their scale and bias are trained by the ordinary
optimizer step and their running statistics are updated by CrossQ as usual.
"""

from __future__ import annotations

from typing import ClassVar

from sb3_contrib.crossq.policies import Actor, CrossQCritic, CrossQPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_dst.common.policies import SparseMasksMixin, SparseTopologyMixin


class SparseActor(SparseMasksMixin, Actor):
    """sb3-contrib's CrossQ ``Actor`` that can be saved and loaded on its own, masks and batch-normalisation settings
    included: :class:`~sb3_dst.common.policies.SparseMasksMixin` records ``batch_norm``, ``batch_norm_momentum``,
    ``batch_norm_eps`` and ``renorm_warmup_steps``, which CrossQ's actor does not save. Takes the arguments of
    CrossQ's ``Actor`` plus ``sparse_connections``."""


class SparseCrossQCritic(SparseMasksMixin, CrossQCritic):
    """sb3-contrib's ``CrossQCritic`` that can be saved and loaded on its own, masks included:
    :class:`~sb3_dst.common.policies.SparseMasksMixin` records its constructor parameters (batch-normalisation ones
    included), which CrossQ's critic does not. Takes the arguments of ``CrossQCritic`` plus ``sparse_connections``."""


class SparseCrossQPolicy(SparseTopologyMixin, CrossQPolicy):
    """CrossQ policy whose actor and critics are sparse from construction; BatchRenorm layers stay dense.

    The actor is sparsified as DS-SAC's (hidden layers of ``latent_pi``; heads ``mu`` and ``log_std`` only with
    ``sparse_output_layer``), each Q-network's hidden layers as DS-SAC's. Without ``net_arch`` the networks are
    CrossQ's own default (actor 256-256, critics 1024-1024), not the paper's 256-256: with such uneven widths
    ``sparsity=`` (or ``actor_sparsity``/``critic_sparsity``) is easier to set than one ``er_lambda``. There are no
    target networks. Takes every argument of sb3-contrib's ``CrossQPolicy`` plus the topology ones of
    :class:`~sb3_dst.common.policies.SparseTopologyMixin`.
    """

    default_net_arch: ClassVar[list[int] | None] = None
    critic_class: ClassVar[type[nn.Module]] = SparseCrossQCritic

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> SparseActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        actor = SparseActor(**actor_kwargs).to(self.device)
        self._sparsify_gaussian_actor(actor)
        return actor


MlpPolicy = SparseCrossQPolicy
