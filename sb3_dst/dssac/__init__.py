from sb3_dst.dssac.dssac import DSSAC, StaticSAC
from sb3_dst.dssac.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, SparseSACPolicy

__all__ = ["DSSAC", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "SparseSACPolicy", "StaticSAC"]
