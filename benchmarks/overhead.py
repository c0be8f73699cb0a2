"""Per-gradient-step overhead of DSTD3 over SB3's TD3 with the same network shapes.

Both models train on the same replay data (random-action transitions of the environment) with the paper's
settings: 256-256 networks, batch 100, policy delay 2, e = 1000 (so evolutions are included in the timing).
Blocks of gradient steps alternate between the two models, so slow drifts of the machine hit both alike; the
overhead is the ratio of the medians of per-step time over blocks.

    python benchmarks/overhead.py --env HalfCheetah-v5 --rounds 12 --steps 500 --out benchmarks/results/overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.logger import configure

from sb3_dst import DSTD3


def fill_buffers(env_id: str, models: list, n: int, seed: int) -> None:
    """Add the same ``n`` random-action transitions to every model's replay buffer."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(n):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for model in models:
            model.replay_buffer.add(
                obs[None], next_obs[None], action[None], np.array([reward]), np.array([terminated]), [{}]
            )
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--rounds", type=int, default=12, help="alternating blocks per model")
    parser.add_argument("--steps", type=int, default=500, help="gradient steps per block")
    parser.add_argument("--warmup", type=int, default=200, help="untimed gradient steps per model first")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args()
    th.set_num_threads(1)

    common = dict(batch_size=100, learning_rate=1e-3, policy_delay=2, seed=0, policy_kwargs=dict(net_arch=[256, 256]))
    models = {
        "TD3": TD3("MlpPolicy", args.env, **common),
        "DSTD3": DSTD3("MlpPolicy", args.env, er_lambda=[7, 64], drop_fraction=0.05, evolution_interval=1000, **common),
    }
    fill_buffers(args.env, list(models.values()), 5000, seed=0)
    for model in models.values():
        model.set_logger(configure(None, []))
        model.train(gradient_steps=args.warmup, batch_size=100)

    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            start = time.perf_counter()
            models[name].train(gradient_steps=args.steps, batch_size=100)
            times[name].append((time.perf_counter() - start) / args.steps)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.3f} ms/step" for n in models))

    median = {name: statistics.median(t) for name, t in times.items()}
    overhead = median["DSTD3"] / median["TD3"] - 1.0
    result = {
        "env": args.env,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "median_ms_per_step": {k: v * 1e3 for k, v in median.items()},
        "per_round_ms": {k: [x * 1e3 for x in v] for k, v in times.items()},
        "overhead": overhead,
        "evolutions_timed": models["DSTD3"].num_evolutions,
        "torch": th.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
    }
    print(
        f"median: TD3 {median['TD3'] * 1e3:.3f} ms/step, DSTD3 {median['DSTD3'] * 1e3:.3f} ms/step, "
        f"overhead {overhead:+.2%}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
