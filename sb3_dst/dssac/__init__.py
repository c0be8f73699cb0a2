from sb3_dst.dssac.dssac import DSSAC, PrunedSAC, StaticSAC
from sb3_dst.dssac.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, SparseSACPolicy

__all__ = ["DSSAC", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "PrunedSAC", "SparseSACPolicy", "StaticSAC"]
