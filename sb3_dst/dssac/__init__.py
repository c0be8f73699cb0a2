from sb3_dst.dssac.dssac import DSSAC, PrunedSAC, StaticSAC
from sb3_dst.dssac.policies import MlpPolicy, SparseSACPolicy

__all__ = ["DSSAC", "MlpPolicy", "PrunedSAC", "SparseSACPolicy", "StaticSAC"]
