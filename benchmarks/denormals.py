"""Why do TD3 and Static-TD3 slow down ~3x after ~20k steps on this CPU while DS-TD3 does not? Count denormals.

Trains TD3, Static-TD3 or DS-TD3 (paper settings, 256-256, weight decay 2e-4) on HalfCheetah-v5 in blocks of 2,500
steps and prints, after each block, the block's steps/s and the number of denormal floats (non-zero, below
1.18e-38 in magnitude) in the weights of all networks and in the Adam states, with the largest holders.

    python benchmarks/denormals.py TD3 30000          # also: Static, DS; a third argument "ftz" flushes denormals

The steps/s depend on what else runs on the machine; the denormal counts do not.
"""

import os, sys, time

os.environ["OMP_NUM_THREADS"] = "1"
import torch as th, numpy as np

th.set_num_threads(1)
if len(sys.argv) > 3 and sys.argv[3] == "ftz":
    assert th.set_flush_denormal(True)
from stable_baselines3 import TD3
from stable_baselines3.common.noise import NormalActionNoise
from sb3_dst import StaticTD3, DSTD3

algo = sys.argv[1]
cls = {"TD3": TD3, "Static": StaticTD3, "DS": DSTD3}[algo]
kw = dict(
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
    kw["er_lambda"] = [7, 64]
m = cls("MlpPolicy", "HalfCheetah-v5", **kw)
TINY = 1.1754944e-38


def census():
    out = {}

    def cnt(name, t):
        t = t.detach()
        d = int(((t != 0) & (t.abs() < TINY)).sum())
        if d:
            out[name] = d

    for net in ("actor", "critic", "actor_target", "critic_target"):
        for n, p in getattr(m, net).named_parameters():
            cnt(f"{net}.{n}", p)
    for opt_name, opt in (("actor", m.actor.optimizer), ("critic", m.critic.optimizer)):
        for p, st in opt.state.items():
            for k, v in st.items():
                if isinstance(v, th.Tensor) and v.numel() > 1:
                    cnt(f"{opt_name}.{k}.{tuple(p.shape)}", v)
    return out


steps = 0
t0 = time.perf_counter()
for block in range(int(sys.argv[2]) // 2500):
    t = time.perf_counter()
    m.learn(2500, reset_num_timesteps=False)
    dt = time.perf_counter() - t
    steps += 2500
    c = census()
    print(
        f"{steps:6d} steps/s {2500 / dt:6.1f}  denormals total {sum(c.values())}  "
        + ", ".join(f"{k}:{v}" for k, v in sorted(c.items(), key=lambda x: -x[1])[:4]),
        flush=True,
    )
