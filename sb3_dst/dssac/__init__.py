from sb3_dst.dssac.dssac import DSSAC, StaticSAC
from sb3_dst.dssac.policies import MlpPolicy, SparseSACPolicy

__all__ = ["DSSAC", "MlpPolicy", "SparseSACPolicy", "StaticSAC"]
