"""sb3-dst: dynamic sparse training for Stable-Baselines3 (Sokar et al., DS-TD3 and DS-SAC), and for DDPG and
sb3-contrib's TQC and CrossQ.

The names below are imported on first use (``from sb3_dst import DSTD3`` or ``sb3_dst.DSTD3``), so that
importing a light module such as :mod:`sb3_dst.inference` (NumPy only) does not load torch, Stable-Baselines3
and sb3-contrib through this package's ``__init__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time :func:`__getattr__` imports these on first use
    from sb3_dst.common.callbacks import DSTCallback
    from sb3_dst.common.topology import matching_sparsity
    from sb3_dst.dscrossq import DSCrossQ, PrunedCrossQ, StaticCrossQ
    from sb3_dst.dsddpg import DSDDPG, PrunedDDPG, StaticDDPG
    from sb3_dst.dssac import DSSAC, PrunedSAC, StaticSAC
    from sb3_dst.dstd3 import DSTD3, PrunedTD3, StaticTD3
    from sb3_dst.dstqc import DSTQC, PrunedTQC, StaticTQC

from sb3_dst.families import FAMILIES, VARIANTS

__version__ = "0.1.0"

#: Public name -> the module that defines it, imported by :func:`__getattr__` when the name is first asked for: the
#: sparse classes of every row of the family table (which imports nothing), and the two names below.
_LAZY = {
    "DSTCallback": "sb3_dst.common.callbacks",
    "matching_sparsity": "sb3_dst.common.topology",
    **{family.class_name(variant): family.package for family in FAMILIES for variant in VARIANTS},
}

__all__ = [
    "DSDDPG",
    "DSSAC",
    "DSTD3",
    "DSTQC",
    "DSCrossQ",
    "DSTCallback",
    "PrunedCrossQ",
    "PrunedDDPG",
    "PrunedSAC",
    "PrunedTD3",
    "PrunedTQC",
    "StaticCrossQ",
    "StaticDDPG",
    "StaticSAC",
    "StaticTD3",
    "StaticTQC",
    "__version__",
    "matching_sparsity",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and keep the value here (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sb3_dst' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses are plain attribute look-ups
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
