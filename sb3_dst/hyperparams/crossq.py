"""Dense CrossQ with the settings of the sparse CrossQ files, for rl-zoo3: ``-conf sb3_dst.hyperparams.crossq``."""

from sb3_dst.hyperparams import load

hyperparams = load("crossq")
