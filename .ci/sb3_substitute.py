"""Pytest plugin for ``.ci/sb3_tests``: SB3's own test files, run with DS-TD3 and DS-SAC in place of TD3 and SAC.

Loaded with ``-p sb3_substitute`` before SB3's test modules are imported, it replaces ``stable_baselines3.TD3`` and
``stable_baselines3.SAC`` by subclasses of :class:`sb3_dst.DSTD3` and :class:`sb3_dst.DSSAC` named ``TD3`` and
``SAC`` (so the tests' ``from stable_baselines3 import TD3`` picks them up and pytest's ids stay ``[TD3]``). Each
builds sparse networks at ``sparsity=0.5`` unless the test gives a topology itself; everything else is SB3's.
"""

from __future__ import annotations

from typing import Any

import stable_baselines3

from sb3_dst import DSSAC, DSTD3

#: Sparsity of every substituted model (half the weights of each sparse layer are zero).
SPARSITY = 0.5


def _with_sparsity(kwargs: dict[str, Any]) -> dict[str, Any]:
    if kwargs.get("er_lambda") is None and kwargs.get("sparsity") is None:
        kwargs = {**kwargs, "sparsity": SPARSITY}
    return kwargs


class TD3(DSTD3):
    """DS-TD3 at ``sparsity=0.5``, standing in for SB3's TD3."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **_with_sparsity(kwargs))


class SAC(DSSAC):
    """DS-SAC at ``sparsity=0.5``, standing in for SB3's SAC."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **_with_sparsity(kwargs))


stable_baselines3.TD3 = TD3  # type: ignore[misc]
stable_baselines3.SAC = SAC  # type: ignore[misc]
