"""Sparse SAC policy: SB3's SAC actor and critics with Erdős–Rényi masks on their layers."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, NatureCNN
from stable_baselines3.sac.policies import Actor, SACPolicy

from sb3_dst.common.policies import SparseMasksMixin, SparseTopologyMixin


class SparseActor(SparseMasksMixin, Actor):
    """SB3's SAC ``Actor`` that can be saved and loaded on its own, masks included.

    Takes the arguments of SB3's SAC ``Actor`` plus ``sparse_connections``
    (see :class:`~sb3_dst.common.policies.SparseMasksMixin`).
    """


class SparseSACPolicy(SparseTopologyMixin, SACPolicy):
    """SAC policy whose actor and critics are sparse from construction (Algorithm 4, L2-L4).

    The actor's hidden layers (``latent_pi``) are sparse; its output heads ``mu`` and ``log_std`` are dense
    unless ``sparse_output_layer`` is set (they then share the last λ). Each Q-network is sparsified like
    the TD3 critics. SB3 builds the critic target as a copy of the critic's state, masks included (L4).
    """

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> SparseActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        actor = SparseActor(**actor_kwargs).to(self.device)
        self._sparsify_gaussian_actor(actor)
        return actor


MlpPolicy = SparseSACPolicy


class CnnPolicy(SparseSACPolicy):
    """:class:`SparseSACPolicy` for image observations: SB3's ``NatureCNN`` features extractor by default.

    The extractor stays dense unless ``sparse_features_extractor=True`` (its convolutions and its last, linear
    layer then become sparse too); the layers after it are sparse as in ``MlpPolicy``. Takes the same arguments.
    """

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputPolicy(SparseSACPolicy):
    """:class:`SparseSACPolicy` for ``Dict`` observations (e.g. with HER): SB3's ``CombinedExtractor`` by default.

    The extractor stays dense unless ``sparse_features_extractor=True`` (its linear and convolution layers then
    become sparse, e.g. those of the ``NatureCNN`` of image entries); the layers after it are sparse as in
    ``MlpPolicy``. Takes the same arguments.
    """

    def __init__(
        self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any
    ):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)
