"""Sparse SAC policy: SB3's SAC actor and critics with Erdős–Rényi masks on their layers."""

from __future__ import annotations

from typing import Any

from gymnasium import spaces
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.sac.policies import Actor, SACPolicy
from torch import nn

from sb3_dst.common.policies import DEFAULT_NET_ARCH, ErLambda, SparseTopologyMixin, linear_layers


class SparseSACPolicy(SparseTopologyMixin, SACPolicy):
    """SAC policy whose actor and critics are sparse from construction (Algorithm 4, L2-L4).

    The actor's hidden layers (``latent_pi``) are sparse; its output heads ``mu`` and ``log_std`` are dense
    unless ``sparse_output_layer`` is set (they then share the last λ). Each Q-network is sparsified like
    the TD3 critics. SB3 builds the critic target as a copy of the critic's state, masks included (L4).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        *args: Any,
        er_lambda: ErLambda = None,
        sparsity: float | None = None,
        sparse_output_layer: bool = False,
        **kwargs: Any,
    ):
        self._init_topology(er_lambda, sparsity, sparse_output_layer)
        net_arch = list(DEFAULT_NET_ARCH) if net_arch is None else net_arch
        super().__init__(observation_space, action_space, lr_schedule, net_arch, *args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), **self._topology_kwargs()}

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> Actor:
        actor = super().make_actor(features_extractor)
        # With gSDE, log_std is a parameter rather than a layer and stays dense.
        heads = [m for head in (actor.mu, actor.log_std) if isinstance(head, nn.Module) for m in linear_layers(head)]
        self._sparsify("actor", hidden=linear_layers(actor.latent_pi), output=heads)
        return actor

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> ContinuousCritic:
        critic = super().make_critic(features_extractor)
        for i, q_net in enumerate(critic.q_networks):
            layers = linear_layers(q_net)
            self._sparsify(f"critic qf{i}", hidden=layers[:-1], output=layers[-1:])
        return critic


MlpPolicy = SparseSACPolicy
