from sb3_dst.dstd3.dstd3 import DSTD3, PrunedTD3, StaticTD3
from sb3_dst.dstd3.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, SparseTD3Policy

__all__ = ["DSTD3", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "PrunedTD3", "SparseTD3Policy", "StaticTD3"]
