"""DS-DDPG: SB3's DDPG trained with the dynamic sparse training of Sokar et al., and its Static-DDPG and
Pruned-DDPG baselines.

SB3's ``DDPG`` is its ``TD3`` without TD3's tricks (one critic, no policy delay, no target-policy smoothing);
likewise :class:`DSDDPG` is :class:`~sb3_dst.DSTD3` with DDPG's settings, so its ``train()`` is DS-TD3's.
"""

from __future__ import annotations

from typing import ClassVar

from stable_baselines3 import DDPG

from sb3_dst.common.updaters import Prune, Static, Updater
from sb3_dst.dstd3.dstd3 import DSTD3


class DSDDPG(DSTD3, DDPG):
    """Dynamic Sparse DDPG (DS-DDPG): DDPG whose actor, critic and their targets are sparse from the first step and
    whose topology evolves during training, as in :class:`~sb3_dst.DSTD3` (Algorithm 1 with d = 1, one critic and
    no target-policy smoothing, as SB3's ``DDPG`` derives from its ``TD3``).

    A subclass of both :class:`~sb3_dst.DSTD3` (its ``train()`` and DST machinery) and SB3's ``DDPG`` (its
    constructor: DDPG's arguments and defaults, ``n_critics`` 1, no ``policy_delay``, ``target_policy_noise`` or
    ``target_noise_clip``), so ``isinstance(model, DDPG)`` holds. Takes the DST keywords of
    :class:`~sb3_dst.DSTD3` (``er_lambda``, ``sparsity``, ``drop_fraction``, ``evolution_interval``, ...).
    Without ``net_arch`` in ``policy_kwargs`` the networks are the paper's 256-256 (SB3's default is 400-300).
    """


class StaticDDPG(DSDDPG):
    """Static-DDPG: the sparse networks of :class:`DSDDPG` with their topology frozen.

    Takes the arguments of :class:`DSDDPG` except those of the evolution (``drop_fraction``,
    ``evolution_interval``, ``growth``, ``drop_fraction_schedule``, ``evolution_end``).
    """

    default_updater: ClassVar[Updater] = Static()


class PrunedDDPG(DSDDPG):
    """DDPG with gradual magnitude pruning: dense at the start, pruned to the final sparsity (see
    :class:`~sb3_dst.PrunedTD3` for the schedule and its keywords ``pruning_start``, ``pruning_end``,
    ``evolution_interval``). Targets follow as in :class:`DSDDPG`.
    """

    default_updater: ClassVar[Updater] = Prune()
