"""Sparse TD3 policy: SB3's TD3 actor and critics with Erdős–Rényi masks on their layers."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, NatureCNN
from stable_baselines3.td3.policies import Actor, TD3Policy

from sb3_dst.common.masking import linear_layers
from sb3_dst.common.policies import SparseMasksMixin, SparseTopologyMixin


class SparseActor(SparseMasksMixin, Actor):
    """SB3's TD3 ``Actor`` that can be saved and loaded on its own, masks included.

    Takes the arguments of SB3's TD3 ``Actor`` plus ``sparse_connections``
    (see :class:`~sb3_dst.common.policies.SparseMasksMixin`).
    """


class SparseTD3Policy(SparseTopologyMixin, TD3Policy):
    """TD3 policy whose actor and critics are sparse from construction (Algorithm 1, L2-L5).

    Takes every argument of SB3's ``TD3Policy`` plus the topology ones of
    :class:`~sb3_dst.common.policies.SparseTopologyMixin`. Without ``net_arch`` the networks are the paper's
    256-256 (SB3's TD3 default is 400-300). Targets are built by ``TD3Policy`` as copies of the online
    networks' state, masks included (L5).
    """

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> SparseActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        actor = SparseActor(**actor_kwargs).to(self.device)
        layers = linear_layers(actor.mu)
        self._sparsify("actor", hidden=[*self._extractor_layers(actor), *layers[:-1]], output=layers[-1:])
        return actor


MlpPolicy = SparseTD3Policy


class CnnPolicy(SparseTD3Policy):
    """:class:`SparseTD3Policy` for image observations: SB3's ``NatureCNN`` features extractor by default.

    The extractor stays dense unless ``sparse_features_extractor=True`` (its convolutions and its last, linear
    layer then become sparse too); the layers after it are sparse as in ``MlpPolicy``. Takes the same arguments.
    """

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputPolicy(SparseTD3Policy):
    """:class:`SparseTD3Policy` for ``Dict`` observations (e.g. with HER): SB3's ``CombinedExtractor`` by default.

    The extractor stays dense unless ``sparse_features_extractor=True`` (its linear and convolution layers then
    become sparse, e.g. those of the ``NatureCNN`` of image entries); the layers after it are sparse as in
    ``MlpPolicy``. Takes the same arguments.
    """

    def __init__(
        self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any
    ):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)
