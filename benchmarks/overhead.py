"""Per-gradient-step overhead of DSTD3 over SB3's TD3 with the same network shapes (``--algo tqc``/``crossq``:
DSTQC over sb3-contrib's TQC, DSCrossQ over CrossQ).

Two modes, both with the paper's settings (256-256 networks, batch 100, policy delay 2, e = 1000, so
evolutions and the target pruning that follows them are inside the timed blocks):

- ``--mode train``: only ``model.train()``, on the same replay data for both models (random-action transitions
  of the environment): the cost of one gradient step.
- ``--mode learn``: ``model.learn()`` on the environment (one gradient step per environment step, after a warm-up
  that fills the buffer): what a user waits for in training, environment and action selection included.

Blocks alternate between the two models (ABBA order), so slow drifts of the machine hit both alike. The overhead
is the median over rounds of the paired ratio DSTD3/TD3 - 1 (each round times both models back to back, which is
robust to the drifts of a shared machine); the ratios of the two medians and of the total times (every block
counts, evolutions included) are reported too. DSTD3 steps Adam with
sb3-dst's fused step (bit for bit torch's); ``--torch-adam-too`` also times DSTD3 with torch's own step, which
separates the cost of the DST bookkeeping from what the fused step saves.

    python benchmarks/overhead.py --mode train --rounds 20 --steps 500 --out benchmarks/results/overhead_train.json
    python benchmarks/overhead.py --mode learn --rounds 20 --steps 500 --out benchmarks/results/overhead_learn.json

``--algo tqc`` times DSTQC against TQC (256-256, batch 256, learning rate 3e-4, 25 quantiles, 2 critics: the
benchmark's TQC settings) and ``--algo crossq`` DSCrossQ against CrossQ (its own networks: actor 256-256, critics
1024-1024 with BatchRenorm, batch 256, learning rate 1e-3, policy delay 3). The sparse model keeps the package's
DST defaults (λ = [7, 64], η = 0.1, e = 1000); the JSON keys keep the names of the TD3 comparison (``TD3`` is the
dense model, ``DSTD3`` the sparse one) and ``algo`` says which pair was timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.logger import configure

from sb3_dst import DSTD3, DSTQC, DSCrossQ
from sb3_dst.benchmark.worker import code_version, machine_info


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


def pair(algo: str) -> tuple[type, type, dict, dict]:
    """Dense class, sparse class, their shared keywords and the sparse model's own keywords, for ``--algo``."""
    if algo == "td3":
        common = dict(
            batch_size=100, learning_rate=1e-3, policy_delay=2, seed=0, policy_kwargs=dict(net_arch=[256, 256])
        )
        return TD3, DSTD3, common, dict(er_lambda=[7, 64], drop_fraction=0.05, evolution_interval=1000)
    if algo == "tqc":
        from sb3_contrib import TQC

        common = dict(
            batch_size=256,
            learning_rate=3e-4,
            top_quantiles_to_drop_per_net=2,
            seed=0,
            policy_kwargs=dict(net_arch=[256, 256], n_quantiles=25, n_critics=2),
        )
        return TQC, DSTQC, common, {}
    from sb3_contrib import CrossQ

    common = dict(batch_size=256, learning_rate=1e-3, policy_delay=3, seed=0)
    return CrossQ, DSCrossQ, common, {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--mode", choices=["train", "learn"], default="train", help="time train() or learn()")
    parser.add_argument(
        "--algo",
        choices=["td3", "tqc", "crossq"],
        default="td3",
        help="pair to time: DSTD3 vs TD3, DSTQC vs TQC or DSCrossQ vs CrossQ (the result keys say TD3 for the dense "
        "model and DSTD3 for the sparse one whatever the pair)",
    )
    parser.add_argument("--rounds", type=int, default=12, help="alternating blocks per model")
    parser.add_argument("--steps", type=int, default=500, help="gradient steps per block")
    parser.add_argument("--warmup", type=int, default=1000, help="untimed steps per model first")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    parser.add_argument(
        "--flush-denormal",
        action="store_true",
        help="treat denormal floats as zero (torch.set_flush_denormal) for both models: on CPU, denormals that "
        "accumulate in TD3's weights and Adam moments slow it down over a run, which blurs the bookkeeping cost",
    )
    parser.add_argument(
        "--torch-adam-too",
        action="store_true",
        help="also time DSTD3 with torch's own Adam step on masked gradients (model.fused_adam = False), to "
        "separate the DST bookkeeping from the saving of the fused Adam step",
    )
    parser.add_argument(
        "--td3-fused-adam-too",
        action="store_true",
        help="also time SB3's TD3 with torch's fused Adam (optimizer_kwargs=dict(fused=True)): a dense reference "
        "that, like DSTD3, does not pay for torch's per-operation Adam",
    )
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.flush_denormal and not th.set_flush_denormal(True):
        parser.error("--flush-denormal: this CPU does not support flushing denormals")

    if args.algo != "td3" and args.td3_fused_adam_too:
        parser.error("--td3-fused-adam-too applies to --algo td3 only")
    dense_cls, sparse_cls, common, sparse_kwargs = pair(args.algo)
    batch_size = common["batch_size"]
    # Timings are keyed by class name (files written before this named them "TD3" and "DSTD3" whatever the pair)
    dense_name, sparse_name = dense_cls.__name__, sparse_cls.__name__
    models = {
        dense_name: dense_cls("MlpPolicy", args.env, **common),
        sparse_name: sparse_cls("MlpPolicy", args.env, **sparse_kwargs, **common),
    }
    torch_adam = f"{sparse_name} (torch Adam)"
    if args.torch_adam_too:
        models[torch_adam] = sparse_cls("MlpPolicy", args.env, **sparse_kwargs, **common)
        models[torch_adam].fused_adam = False
    if args.td3_fused_adam_too:
        fused_kwargs = dict(common["policy_kwargs"], optimizer_kwargs=dict(fused=True))
        models["TD3 (fused Adam)"] = TD3("MlpPolicy", args.env, **dict(common, policy_kwargs=fused_kwargs))
    if args.mode == "train":
        fill_buffers(args.env, list(models.values()), 5000, seed=0)
        for model in models.values():
            model.set_logger(configure(None, []))
            model.train(gradient_steps=args.warmup, batch_size=batch_size)
    else:
        for model in models.values():
            model.learning_starts = args.warmup
            model.learn(args.warmup + 100)

    def block(model) -> None:
        if args.mode == "train":
            model.train(gradient_steps=args.steps, batch_size=batch_size)
        else:
            model.learn(args.steps, reset_num_timesteps=False)

    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            start = time.perf_counter()
            block(models[name])
            times[name].append((time.perf_counter() - start) / args.steps)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.3f} ms/step" for n in models))

    median = {name: statistics.median(t) for name, t in times.items()}
    paired = {name: [ds / td3 - 1.0 for td3, ds in zip(times[dense_name], times[name], strict=True)] for name in models}
    overhead = {name: statistics.median(p) for name, p in paired.items()}
    overhead_of_medians = {name: median[name] / median[dense_name] - 1.0 for name in models}
    overhead_of_totals = {name: sum(times[name]) / sum(times[dense_name]) - 1.0 for name in models}
    result = {
        "algo": args.algo,
        "dense": dense_name,
        "sparse": sparse_name,
        "mode": args.mode,
        "env": args.env,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "median_ms_per_step": {k: v * 1e3 for k, v in median.items()},
        "per_round_ms": {k: [x * 1e3 for x in v] for k, v in times.items()},
        "overhead": overhead[sparse_name],
        "overhead_definition": f"median over rounds of {sparse_name}/{dense_name} - 1 (paired, same round)",
        "overhead_per_round": paired[sparse_name],
        "overhead_of_medians": overhead_of_medians[sparse_name],
        "overhead_of_totals": overhead_of_totals[sparse_name],
        **(
            {
                "overhead_torch_adam": overhead[torch_adam],
                "overhead_of_medians_torch_adam": overhead_of_medians[torch_adam],
                "overhead_of_totals_torch_adam": overhead_of_totals[torch_adam],
            }
            if args.torch_adam_too
            else {}
        ),
        **(
            {
                "overhead_td3_fused_adam": overhead["TD3 (fused Adam)"],
                "overhead_of_medians_td3_fused_adam": overhead_of_medians["TD3 (fused Adam)"],
                "overhead_of_totals_td3_fused_adam": overhead_of_totals["TD3 (fused Adam)"],
            }
            if args.td3_fused_adam_too
            else {}
        ),
        "evolutions_timed": models[sparse_name].num_evolutions,
        "flush_denormal": args.flush_denormal,
        "torch": th.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "machine_info": machine_info(),  # CPU, torch's kernel level, package versions
        "load_average_at_end": os.getloadavg(),
        "command": "python " + " ".join(sys.argv),
        "commit": code_version(Path(__file__).resolve()),  # result files being rewritten do not count
    }
    for name in list(models)[1:]:
        print(
            f"median: TD3 {median['TD3'] * 1e3:.3f} ms/step, {name} {median[name] * 1e3:.3f} ms/step; "
            f"overhead (median of paired rounds) {overhead[name]:+.2%}, "
            f"ratio of medians {overhead_of_medians[name]:+.2%}, of total times {overhead_of_totals[name]:+.2%}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
