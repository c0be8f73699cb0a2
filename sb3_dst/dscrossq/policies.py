"""Sparse CrossQ policy: sb3-contrib's CrossQ actor and critics with Erdős–Rényi masks on their linear layers.

The BatchRenorm layers are not linear layers: they stay dense, their scale and bias are trained by the ordinary
optimizer step and their running statistics are updated by CrossQ as usual.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gymnasium import spaces
from sb3_contrib.crossq.policies import Actor, CrossQCritic, CrossQPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_dst.common.policies import SparseMasksMixin, SparseTopologyMixin

_BATCH_NORM_KEYS = ("batch_norm", "batch_norm_momentum", "batch_norm_eps", "renorm_warmup_steps")


class _BatchNormArgs:
    """Records CrossQ's batch-normalisation arguments, which sb3-contrib's actor and critic do not save."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._batch_norm_args = {key: kwargs[key] for key in _BATCH_NORM_KEYS if key in kwargs}
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), **self._batch_norm_args}  # type: ignore[misc]


class SparseActor(SparseMasksMixin, _BatchNormArgs, Actor):
    """sb3-contrib's CrossQ ``Actor`` that can be saved and loaded on its own, masks (and batch-norm settings)
    included. Takes the arguments of CrossQ's ``Actor`` plus ``sparse_connections``."""


class SparseCrossQCritic(SparseMasksMixin, _BatchNormArgs, CrossQCritic):
    """sb3-contrib's ``CrossQCritic`` that can be saved and loaded on its own, masks included: it records its
    constructor parameters, which CrossQ's critic does not."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_critics: int = 2,
        share_features_extractor: bool = True,
        batch_norm: bool = True,
        batch_norm_momentum: float = 0.01,
        batch_norm_eps: float = 0.001,
        renorm_warmup_steps: int = 100_000,
        sparse_connections: dict[str, int] | None = None,
    ):
        super().__init__(
            observation_space,
            action_space,
            net_arch,
            features_extractor,
            features_dim,
            activation_fn=activation_fn,
            normalize_images=normalize_images,
            n_critics=n_critics,
            share_features_extractor=share_features_extractor,
            batch_norm=batch_norm,
            batch_norm_momentum=batch_norm_momentum,
            batch_norm_eps=batch_norm_eps,
            renorm_warmup_steps=renorm_warmup_steps,
            sparse_connections=sparse_connections,
        )
        self.net_arch, self.features_dim, self.activation_fn = net_arch, features_dim, activation_fn

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            features_extractor=self.features_extractor,
            features_dim=self.features_dim,
            activation_fn=self.activation_fn,
            n_critics=self.n_critics,
            share_features_extractor=self.share_features_extractor,
        )
        return data


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
