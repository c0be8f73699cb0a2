"""Cost of one CrossQ gradient step with 1024-wide vs 2048-wide critics, side by side (one torch thread).

Why the contrib campaign runs CrossQ with the library's 1024-1024 critics rather than rl-zoo3's tuned 2048-2048
(see benchmarks/hyperparams/crossq_1024/). Both models train in alternation, so load on the machine affects them
alike: read the ratio, not the absolute times.

    python benchmarks/crossq_critic_width.py --out benchmarks/results/crossq_critic_width.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch as th
from sb3_contrib import CrossQ

from sb3_dst.benchmark.worker import machine_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=30, help="gradient steps per round and width")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    th.set_num_threads(1)
    widths = (1024, 2048)
    models = {}
    for width in widths:
        model = CrossQ(
            "MlpPolicy", args.env, learning_starts=0, policy_delay=3, batch_size=256, seed=0,
            policy_kwargs={"net_arch": {"pi": [256, 256], "qf": [width, width]}},
        )  # fmt: skip
        model.learn(300)  # a replay buffer to sample from
        models[width] = model
    times: dict[int, list[float]] = {width: [] for width in widths}
    for _ in range(args.rounds):
        for width, model in models.items():
            start = time.perf_counter()
            model.train(gradient_steps=args.steps, batch_size=256)
            times[width].append((time.perf_counter() - start) / args.steps)
    median = {width: sorted(ts)[len(ts) // 2] for width, ts in times.items()}
    result = {
        "command": "python benchmarks/crossq_critic_width.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "machine": machine_info(),
        "load_average": os.getloadavg(),
        "ms_per_gradient_step": {str(w): 1000 * m for w, m in median.items()},
        "ratio_2048_over_1024": median[2048] / median[1024],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
