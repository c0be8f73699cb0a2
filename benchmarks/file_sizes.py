"""Size of the files written by ``model.save`` at several sparsities, compared with SB3's dense algorithms.

For each sparsity, DSTD3 (and DSSAC) with the default 256-256 networks trains a few hundred steps on the
environment (so that Adam's state exists), then is saved twice: with ``model.save`` (compact sparse layers, the
default) and with SB3's own ``BaseAlgorithm.save`` (every tensor dense, the earlier format). SB3's ``TD3``
(``SAC``) of the same shapes, trained as long with the same seed, gives the dense reference. The compact file is
also loaded back and checked to hold the same parameters, bit for bit.

    python benchmarks/file_sizes.py --out benchmarks/results/file_sizes.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_dst import DSSAC, DSTD3


def _same_bits(a: Any, b: Any) -> bool:
    if isinstance(a, th.Tensor):
        if not isinstance(b, th.Tensor) or a.dtype != b.dtype or a.shape != b.shape:
            return False
        return bool(th.equal(a.reshape(-1).view(th.uint8), b.reshape(-1).view(th.uint8)))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_bits(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same_bits(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _size(model: BaseAlgorithm, folder: Path, name: str, dense_format: bool = False) -> int:
    path = folder / f"{name}.zip"
    if dense_format:
        BaseAlgorithm.save(model, path)
    else:
        model.save(path)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.95])
    parser.add_argument("--steps", type=int, default=300, help="environment steps of training (after 100 random)")
    parser.add_argument("--algos", nargs="+", default=["td3", "sac"], choices=["td3", "sac"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    th.set_num_threads(1)

    pairs = {"td3": (DSTD3, TD3), "sac": (DSSAC, SAC)}
    common = dict(learning_starts=100, seed=args.seed, policy_kwargs=dict(net_arch=[256, 256]))
    total = 100 + args.steps
    results: dict[str, Any] = {
        "env": args.env,
        "net_arch": [256, 256],
        "environment_steps": total,
        "gradient_steps": args.steps,
        "command": "python " + " ".join(sys.argv),
        "torch": th.__version__,
        "machine": platform.machine(),
        "algorithms": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for key in args.algos:
            sparse_cls, dense_cls = pairs[key]
            dense = dense_cls("MlpPolicy", args.env, **common).learn(total)  # type: ignore[arg-type]
            dense_bytes = _size(dense, folder, "dense")
            rows = []
            for sparsity in args.sparsities:
                model = sparse_cls("MlpPolicy", args.env, sparsity=sparsity, **common).learn(total)  # type: ignore[arg-type]
                compact = _size(model, folder, "compact")
                old = _size(model, folder, "old", dense_format=True)
                loaded = sparse_cls.load(folder / "compact.zip")
                exact = _same_bits(model.get_parameters(), loaded.get_parameters())
                row = {
                    "sparsity": sparsity,
                    "compact_bytes": compact,
                    "dense_format_bytes": old,
                    "reference_bytes": dense_bytes,
                    "compact_over_reference": round(compact / dense_bytes, 4),
                    "dense_format_over_reference": round(old / dense_bytes, 4),
                    "loads_bit_for_bit": exact,
                }
                rows.append(row)
                print(
                    f"{sparse_cls.__name__} sparsity {sparsity:.2f}: compact {compact / 1e6:.3f} MB, "
                    f"dense format {old / 1e6:.3f} MB, {dense_cls.__name__} {dense_bytes / 1e6:.3f} MB, "
                    f"ratio {compact / dense_bytes:.3f}, bit for bit: {exact}",
                    flush=True,
                )
            results["algorithms"][sparse_cls.__name__] = {"reference": dense_cls.__name__, "rows": rows}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
