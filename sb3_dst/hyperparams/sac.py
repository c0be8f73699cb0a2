"""Dense SAC with the paper's main-text settings, for rl-zoo3: ``-conf sb3_dst.hyperparams.sac``."""

from sb3_dst.hyperparams import load

hyperparams = load("sac")
