"""Sparse TD3 policy: SB3's TD3 actor and critics with Erdős–Rényi masks on their layers."""

from __future__ import annotations

from typing import Any

from gymnasium import spaces
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.td3.policies import Actor, TD3Policy

from sb3_dst.common.policies import DEFAULT_NET_ARCH, ErLambda, SparseTopologyMixin, linear_layers


class SparseTD3Policy(SparseTopologyMixin, TD3Policy):
    """TD3 policy whose actor and critics are sparse from construction (Algorithm 1, L2-L5).

    Takes every argument of SB3's ``TD3Policy`` plus the topology ones of
    :class:`~sb3_dst.common.policies.SparseTopologyMixin`. Without ``net_arch`` the networks are the paper's
    256-256 (SB3's TD3 default is 400-300). Targets are built by ``TD3Policy`` as copies of the online
    networks' state, masks included (L5).
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
        layers = linear_layers(actor.mu)
        self._sparsify("actor", hidden=layers[:-1], output=layers[-1:])
        return actor

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> ContinuousCritic:
        critic = super().make_critic(features_extractor)
        for i, q_net in enumerate(critic.q_networks):
            layers = linear_layers(q_net)
            self._sparsify(f"critic qf{i}", hidden=layers[:-1], output=layers[-1:])
        return critic


MlpPolicy = SparseTD3Policy
