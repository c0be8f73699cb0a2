"""Count the ties that pruning splits during a DS-TD3 run (HalfCheetah-v5, seed 1, the campaign's settings).

A tie is *split* when entries of equal magnitude end up on both sides of a cut, so that the result depends on
how the implementation breaks ties:

- target pruning (Algorithm 3): a kept non-zero has the magnitude of the largest pruned entry;
- drop (Algorithm 2): a kept connection has the weight magnitude of the last dropped one of its sign.

The script wraps ``TargetSparsity.maintain`` and ``drop_and_grow``; the training itself is unchanged.

Usage: ``python benchmarks/ties.py [steps]`` (default 20,000 environment steps, about 3 minutes).
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import gymnasium as gym
import torch as th

import sb3_dst.common.dst as dst_module
from sb3_dst.benchmark.specs import AlgoSpec, RunConfig, resolve_hyperparams
from sb3_dst.benchmark.worker import build_model
from sb3_dst.common.topology import TargetSparsity

stats: Counter[str] = Counter()
_maintain = TargetSparsity.maintain
_drop_and_grow = dst_module.drop_and_grow


def counting_maintain(self: TargetSparsity) -> bool:
    before = self.weight.detach().clone().view(-1)
    pruned = _maintain(self)
    after = self.weight.detach().view(-1)
    removed = (before != 0) & (after == 0)
    stats["target_calls"] += 1
    if removed.any():
        stats["target_prunes"] += 1
        bound = before[removed].abs().max()
        kept_at_bound = int(((after != 0) & (after.abs() == bound)).sum())
        if kept_at_bound:
            stats["target_split_ties"] += 1
            stats["target_split_entries"] += kept_at_bound
    return pruned


def counting_drop_and_grow(weight: th.Tensor, mask: th.Tensor, drop_fraction: float, **kwargs: Any) -> Any:
    w = weight.detach().clone().view(-1)
    present = mask.detach().clone().view(-1) > 0
    dropped, grown, changed = _drop_and_grow(weight, mask, drop_fraction, **kwargs)
    flat_dropped = dropped.view(-1)
    stats["evolutions_layers"] += 1
    for same_sign in (present & (w >= 0), present & (w < 0)):
        gone = flat_dropped & same_sign
        if not gone.any():
            continue
        last = w[gone].abs().max()
        kept = same_sign & ~flat_dropped & (w.abs() == last)
        if kept.any():
            stats["drop_split_ties"] += 1
            stats["drop_split_entries"] += int(kept.sum())
            if last == 0:
                stats["drop_split_ties_at_zero"] += 1
    stats["drop_exact_zeros_dropped"] += int((flat_dropped & (w == 0)).sum())
    return dropped, grown, changed


def main(steps: int) -> None:
    th.set_num_threads(1)
    TargetSparsity.maintain = counting_maintain  # type: ignore[method-assign]
    dst_module.drop_and_grow = counting_drop_and_grow
    params = resolve_hyperparams(AlgoSpec.parse("DS-TD3"), "HalfCheetah-v5", learning_starts=10_000)
    config = RunConfig("DS-TD3", "HalfCheetah-v5", 1, steps, 5000, 10, params)
    model = build_model(config, gym.make("HalfCheetah-v5"))
    model.learn(total_timesteps=steps)
    print(f"steps={steps} n_updates={model._n_updates}")
    for key in sorted(stats):
        print(f"{key}: {stats[key]}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
