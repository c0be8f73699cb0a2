"""Why do TD3 and Static-TD3 slow down ~3x after ~20k steps on this CPU while DS-TD3 does not? Count denormals.

Trains TD3, Static-TD3 or DS-TD3 (paper settings, 256-256, weight decay 2e-4) on HalfCheetah-v5 in blocks of 2,500
steps and prints, after each block, the block's steps/s and the number of denormal floats (non-zero, below
1.18e-38 in magnitude) in the weights of all networks and in the Adam states, with the largest holders.

    python benchmarks/denormals.py TD3 30000          # also: Static, DS; a third argument "ftz" flushes denormals

The steps/s depend on what else runs on the machine; the denormal counts do not.
"""

from __future__ import annotations

import os
import sys
import time

os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np
import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.noise import NormalActionNoise

from sb3_dst import DSTD3, StaticTD3

TINY = 1.1754944e-38  # the smallest normal float32


def census(model) -> dict[str, int]:
    """Denormal floats per tensor: weights and biases of every network, then the Adam states."""
    out: dict[str, int] = {}

    def count(name: str, tensor: th.Tensor) -> None:
        tensor = tensor.detach()
        n = int(((tensor != 0) & (tensor.abs() < TINY)).sum())
        if n:
            out[name] = n

    for net in ("actor", "critic", "actor_target", "critic_target"):
        for name, param in getattr(model, net).named_parameters():
            count(f"{net}.{name}", param)
    for opt_name, optimizer in (("actor", model.actor.optimizer), ("critic", model.critic.optimizer)):
        for param, state in optimizer.state.items():
            for key, value in state.items():
                if isinstance(value, th.Tensor) and value.numel() > 1:
                    count(f"{opt_name}.{key}.{tuple(param.shape)}", value)
    return out


def main() -> None:
    algorithms = {"TD3": TD3, "Static": StaticTD3, "DS": DSTD3}
    usage = "usage: python benchmarks/denormals.py {TD3,Static,DS} STEPS [ftz]"
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in algorithms or not sys.argv[2].isdigit():
        sys.exit(f"{usage}\nerror: got {sys.argv[1:]}")
    if len(sys.argv) == 4 and sys.argv[3] != "ftz":
        sys.exit(f"{usage}\nerror: the third argument can only be 'ftz', got {sys.argv[3]!r}")
    th.set_num_threads(1)
    if len(sys.argv) == 4 and not th.set_flush_denormal(True):
        sys.exit("error: ftz: this CPU does not support flushing denormals")
    algo, total = sys.argv[1], int(sys.argv[2])
    cls = algorithms[algo]
    kwargs = dict(
        batch_size=100,
        learning_rate=1e-3,
        policy_delay=2,
        seed=0,
        learning_starts=5000,
        gamma=0.99,
        tau=0.005,
        policy_kwargs=dict(net_arch=[256, 256], optimizer_kwargs=dict(weight_decay=2e-4)),
        action_noise=NormalActionNoise(np.zeros(6), 0.1 * np.ones(6)),
    )
    if algo != "TD3":
        kwargs["er_lambda"] = [7, 64]
    model = cls("MlpPolicy", "HalfCheetah-v5", **kwargs)
    steps = 0
    for _ in range(total // 2500):
        start = time.perf_counter()
        model.learn(2500, reset_num_timesteps=False)
        elapsed = time.perf_counter() - start
        steps += 2500
        counts = census(model)
        largest = sorted(counts.items(), key=lambda item: -item[1])[:4]
        print(
            f"{steps:6d} steps/s {2500 / elapsed:6.1f}  denormals total {sum(counts.values())}  "
            + ", ".join(f"{k}:{v}" for k, v in largest),
            flush=True,
        )


if __name__ == "__main__":
    main()
