"""Sparse TQC policy: sb3-contrib's TQC actor and quantile critics with Erdős–Rényi masks on their layers."""

from __future__ import annotations

from typing import Any, ClassVar

from sb3_contrib.tqc.policies import Actor, Critic, TQCPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, NatureCNN
from torch import nn

from sb3_dst.common.policies import SparseMasksMixin, SparseTopologyMixin


class SparseActor(SparseMasksMixin, Actor):
    """sb3-contrib's TQC ``Actor`` that can be saved and loaded on its own, masks included.

    Takes the arguments of TQC's ``Actor`` plus ``sparse_connections``
    (see :class:`~sb3_dst.common.policies.SparseMasksMixin`).
    """


class SparseQuantileCritic(SparseMasksMixin, Critic):
    """sb3-contrib's TQC ``Critic`` (``n_critics`` networks of ``n_quantiles`` outputs each) that can be saved and
    loaded on its own, masks included: :class:`~sb3_dst.common.policies.SparseMasksMixin` records its constructor
    parameters, which TQC's critic does not. Takes the arguments of TQC's ``Critic`` plus ``sparse_connections``."""


class SparseTQCPolicy(SparseTopologyMixin, TQCPolicy):
    """TQC policy whose actor and quantile critics are sparse from construction.

    The actor is sparsified as DS-SAC's (hidden layers ``latent_pi``; heads ``mu`` and ``log_std`` only with
    ``sparse_output_layer``); each quantile network as a DS-SAC Q-network (its output layer has ``n_quantiles``
    units). TQC builds the critic target as a copy of the critic's state, masks included. Takes every argument of
    sb3-contrib's ``TQCPolicy`` plus the topology ones of :class:`~sb3_dst.common.policies.SparseTopologyMixin`.
    """

    critic_class: ClassVar[type[nn.Module]] = SparseQuantileCritic

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> SparseActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        actor = SparseActor(**actor_kwargs).to(self.device)
        self._sparsify_gaussian_actor(actor)
        return actor


MlpPolicy = SparseTQCPolicy


class CnnPolicy(SparseTQCPolicy):
    """:class:`SparseTQCPolicy` for image observations: SB3's ``NatureCNN`` features extractor by default (dense
    unless ``sparse_features_extractor=True``). Takes the same arguments."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputPolicy(SparseTQCPolicy):
    """:class:`SparseTQCPolicy` for ``Dict`` observations (e.g. with HER): SB3's ``CombinedExtractor`` by default
    (dense unless ``sparse_features_extractor=True``). Takes the same arguments."""

    def __init__(
        self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any
    ):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)
