"""DS-DDPG: SB3's DDPG trained with the dynamic sparse training of Sokar et al., and its Static-DDPG and
Pruned-DDPG baselines.

SB3's ``DDPG`` is its ``TD3`` without TD3's tricks (one critic, no policy delay, no target-policy smoothing);
likewise :class:`DSDDPG` is :class:`~sb3_dst.DSTD3` with DDPG's settings, so its ``train()`` is DS-TD3's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.td3.policies import TD3Policy

from sb3_dst.dstd3.dstd3 import DSTD3


class DSDDPG(DSTD3):
    """Dynamic Sparse DDPG (DS-DDPG): DDPG whose actor, critic and their targets are sparse from the first step and
    whose topology evolves during training, as in :class:`~sb3_dst.DSTD3` (Algorithm 1 with d = 1, one critic and
    no target-policy smoothing, as SB3's ``DDPG`` derives from its ``TD3``).

    Takes the arguments of SB3's ``DDPG`` (not TD3's ``policy_delay``, ``target_policy_noise`` or
    ``target_noise_clip``) and the DST keywords of :class:`~sb3_dst.DSTD3` (``er_lambda``, ``sparsity``,
    ``drop_fraction``, ``evolution_interval``, ...). ``n_critics`` defaults to 1 as in DDPG. Without ``net_arch``
    in ``policy_kwargs`` the networks are the paper's 256-256 (SB3's default is 400-300).
    """

    def __init__(
        self,
        policy: str | type[TD3Policy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        **dst_kwargs: Any,
    ):
        if n_steps != 1:  # n-step returns exist in recent SB3 only: pass the argument only when asked for
            dst_kwargs["n_steps"] = n_steps
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            # DDPG's settings, as SB3's DDPG passes them to its TD3 (a noise > 0 clipped to 0: no smoothing)
            policy_delay=1,
            target_noise_clip=0.0,
            target_policy_noise=0.1,
            _init_setup_model=False,
            **dst_kwargs,
        )
        if "n_critics" not in self.policy_kwargs:
            self.policy_kwargs["n_critics"] = 1
        if _init_setup_model:
            self._setup_model()


class StaticDDPG(DSDDPG):
    """Static-DDPG: the sparse networks of :class:`DSDDPG` with their topology frozen.

    Takes the arguments of :class:`DSDDPG` except those of the evolution (``drop_fraction``,
    ``evolution_interval``, ``growth``, ``drop_fraction_schedule``, ``evolution_end``).
    """

    topology_mode: ClassVar[str] = "static"
    dynamic: ClassVar[bool] = False


class PrunedDDPG(DSDDPG):
    """DDPG with gradual magnitude pruning: dense at the start, pruned to the final sparsity (see
    :class:`~sb3_dst.PrunedTD3` for the schedule and its keywords ``pruning_start``, ``pruning_end``,
    ``evolution_interval``). Targets follow as in :class:`DSDDPG`.
    """

    topology_mode: ClassVar[str] = "prune"
    dynamic: ClassVar[bool] = False
