"""sb3-dst: dynamic sparse training for Stable-Baselines3 (Sokar et al., DS-TD3 and DS-SAC), and for DDPG and
sb3-contrib's TQC and CrossQ."""

from sb3_dst.common.callbacks import DSTCallback
from sb3_dst.common.topology import matching_sparsity
from sb3_dst.dscrossq import DSCrossQ, PrunedCrossQ, StaticCrossQ
from sb3_dst.dsddpg import DSDDPG, PrunedDDPG, StaticDDPG
from sb3_dst.dssac import DSSAC, PrunedSAC, StaticSAC
from sb3_dst.dstd3 import DSTD3, PrunedTD3, StaticTD3
from sb3_dst.dstqc import DSTQC, PrunedTQC, StaticTQC

__version__ = "0.1.0"

__all__ = [
    "DSDDPG",
    "DSSAC",
    "DSTD3",
    "DSTQC",
    "DSCrossQ",
    "DSTCallback",
    "PrunedCrossQ",
    "PrunedDDPG",
    "PrunedSAC",
    "PrunedTD3",
    "PrunedTQC",
    "StaticCrossQ",
    "StaticDDPG",
    "StaticSAC",
    "StaticTD3",
    "StaticTQC",
    "__version__",
    "matching_sparsity",
]
