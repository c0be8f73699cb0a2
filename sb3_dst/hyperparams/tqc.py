"""Dense TQC with the settings of the sparse TQC files, for rl-zoo3: ``-conf sb3_dst.hyperparams.tqc``."""

from sb3_dst.hyperparams import load

hyperparams = load("tqc")
