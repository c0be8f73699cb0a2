"""sb3-dst: dynamic sparse training for Stable-Baselines3 (Sokar et al., DS-TD3 and DS-SAC)."""

from sb3_dst.common.callbacks import DSTCallback
from sb3_dst.dssac import DSSAC, PrunedSAC, StaticSAC
from sb3_dst.dstd3 import DSTD3, PrunedTD3, StaticTD3

__version__ = "0.1.0"

__all__ = ["DSSAC", "DSTD3", "DSTCallback", "PrunedSAC", "PrunedTD3", "StaticSAC", "StaticTD3", "__version__"]
