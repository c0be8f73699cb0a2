from sb3_dst.dsddpg.dsddpg import DSDDPG, PrunedDDPG, StaticDDPG
from sb3_dst.dstd3.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["DSDDPG", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "PrunedDDPG", "StaticDDPG"]
