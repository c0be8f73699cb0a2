"""Dense DDPG with the settings of the sparse DDPG files, for rl-zoo3: ``-conf sb3_dst.hyperparams.ddpg``."""

from sb3_dst.hyperparams import load

hyperparams = load("ddpg")
