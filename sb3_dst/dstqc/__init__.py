from sb3_dst.dstqc.dstqc import DSTQC, PrunedTQC, StaticTQC
from sb3_dst.dstqc.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, SparseTQCPolicy

__all__ = ["DSTQC", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "PrunedTQC", "SparseTQCPolicy", "StaticTQC"]
