"""Dense TD3 with the paper's settings, for rl-zoo3: ``-conf sb3_dst.hyperparams.td3``."""

from sb3_dst.hyperparams import load

hyperparams = load("td3")
