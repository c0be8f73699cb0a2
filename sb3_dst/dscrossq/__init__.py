from sb3_dst.dscrossq.dscrossq import DSCrossQ, PrunedCrossQ, StaticCrossQ
from sb3_dst.dscrossq.policies import MlpPolicy, SparseCrossQPolicy

__all__ = ["DSCrossQ", "MlpPolicy", "PrunedCrossQ", "SparseCrossQPolicy", "StaticCrossQ"]
