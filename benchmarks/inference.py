"""Inference speed and file size of the exported policies against SB3 and torch, on one CPU thread.

For the HalfCheetah-v5 actor shape (17 observations, 6 actions), hidden layers 256-256 and 1024-1024, at each
sparsity: a DSTD3 actor with random sparse topology and weights (``DSTD3(sparsity=...)``, no training: speed
does not depend on the values, except through how many hidden units are zero after the ReLU, about half with
random weights). Every path computes the same action (checked against ``model.predict``):

- ``sb3_predict``: ``model.predict(obs, deterministic=True)``;
- ``torch_actor``: ``model.actor(torch.from_numpy(obs)).numpy()`` under ``no_grad`` (no action rescaling);
- ``onnxruntime``: the ``export(format="onnx")`` graph (dense weights), one intra-op thread;
- ``numpy_dense``: a NumPy forward pass with dense matrices (``x @ W.T + b``), rescaling included;
- ``sparse_policy``: :class:`sb3_dst.inference.SparsePolicy` on the ``export(format="sparse")`` file (Numba);
- ``c_ctypes``: the ``export(format="c")`` code compiled as a shared library, one ctypes call per observation
  (batch 256: a C loop over the rows, compiled with it); ``c_native`` is the same function timed inside C
  (``clock_gettime`` around a loop of calls), without Python's call overhead.

Latency is per call at batch 1 (one observation), throughput is observations per second at batch 256. Timing
alternates between the paths: each round times one block of calls of every path, in a rotating order, so the
drifts of a shared machine hit all paths alike. A block lasts about ``--block-ms``; the reported figure is the
median over rounds of the per-call time in a block (``min`` is also recorded: the least disturbed block).
File sizes: each export, the compiled C library, the actor's torch ``state_dict`` and SB3's ``model.save`` (the
whole model: actor, critics, targets and optimizer states).

    python benchmarks/inference.py --out benchmarks/results/inference/inference.json
    python benchmarks/inference.py --quick --out benchmarks/results/inference/inference_quick.json
"""

from __future__ import annotations

import argparse
import ctypes
import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np
import torch as th

from sb3_dst import DSTD3
from sb3_dst.benchmark.worker import code_version, machine_info
from sb3_dst.export import export, policy_spec
from sb3_dst.inference import SparsePolicy

ENV_ID = "HalfCheetah-v5"
N_OBS_POOL = 64  # distinct observations the batch-1 measurements cycle through
C_FLAGS = ["-std=c99", "-O3", "-march=native", "-shared", "-fPIC"]

C_HARNESS = r"""
#define _POSIX_C_SOURCE 199309L
#include <time.h>
#include "policy.h"

void sb3_dst_policy_batch(const float *obs, float *action, int n)
{
    int i;
    for (i = 0; i < n; ++i) sb3_dst_policy(obs + (long)i * SB3_DST_OBS_DIM, action + (long)i * SB3_DST_ACTION_DIM);
}

/* nanoseconds per call of sb3_dst_policy, over reps calls cycling through n_obs observations */
double sb3_dst_policy_ns(const float *obs, int n_obs, float *action, int reps)
{
    struct timespec t0, t1;
    int i;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < reps; ++i) sb3_dst_policy(obs + (long)(i % n_obs) * SB3_DST_OBS_DIM, action);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / reps;
}
"""


def numpy_dense(model: DSTD3) -> Callable[[np.ndarray], np.ndarray]:
    """The fastest plain NumPy forward pass of the actor we know: dense matrices, transposed once."""
    spec = policy_spec(model)
    weights = [np.ascontiguousarray(layer.weight.T) for layer in spec.layers]
    biases = [layer.bias for layer in spec.layers]
    low, half = spec.action_low, (np.float32(0.5) * (spec.action_high - spec.action_low)).astype(np.float32)
    (w0, w1, w2), (b0, b1, b2) = weights, biases

    def forward(obs: np.ndarray) -> np.ndarray:
        x = np.maximum(obs @ w0 + b0, np.float32(0.0))
        x = np.maximum(x @ w1 + b1, np.float32(0.0))
        return low + (np.tanh(x @ w2 + b2) + np.float32(1.0)) * half

    return forward


def compile_c(c_path: Path, work: Path) -> tuple[Any, float]:
    """Compile the exported C with the harness; return the library and the compile time in seconds."""
    (work / "harness.c").write_text(C_HARNESS)
    lib = work / "libpolicy.so"
    t0 = time.perf_counter()
    subprocess.run(
        [COMPILER, *C_FLAGS, "-o", str(lib), str(c_path), str(work / "harness.c"), "-lm"],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - t0
    library = ctypes.CDLL(str(lib))
    float_p = ctypes.POINTER(ctypes.c_float)
    library.sb3_dst_policy.argtypes = [float_p, float_p]
    library.sb3_dst_policy.restype = None
    library.sb3_dst_policy_batch.argtypes = [float_p, float_p, ctypes.c_int]
    library.sb3_dst_policy_batch.restype = None
    library.sb3_dst_policy_ns.argtypes = [float_p, ctypes.c_int, float_p, ctypes.c_int]
    library.sb3_dst_policy_ns.restype = ctypes.c_double
    return library, seconds


def block_size(fn: Callable[[], Any], block_s: float) -> int:
    """Calls per block so that a block lasts about ``block_s``."""
    fn()
    n, elapsed = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed > block_s / 4 or n >= 1 << 20:
            return max(1, int(n * block_s / max(elapsed, 1e-9)))
        n *= 4


def time_alternating(paths: dict[str, Callable[[], Any]], rounds: int, block_s: float) -> dict[str, dict]:
    """Per-call seconds of every path: median (and min, quartiles) over rounds of one block each."""
    sizes = {name: block_size(fn, block_s) for name, fn in paths.items()}
    samples: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotating order
            fn, n = paths[name], sizes[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {
        name: {
            "median_s": float(np.median(values)),
            "min_s": float(np.min(values)),
            "q25_s": float(np.quantile(values, 0.25)),
            "q75_s": float(np.quantile(values, 0.75)),
            "calls_per_block": sizes[name],
        }
        for name, values in samples.items()
    }


def file_size(path: Path) -> int:
    return path.stat().st_size


def measure(hidden: int, sparsity: float, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every path for one actor shape and sparsity."""
    th.manual_seed(0)
    model = DSTD3(
        "MlpPolicy", ENV_ID, policy_kwargs=dict(net_arch=[hidden, hidden]), sparsity=sparsity, buffer_size=1, seed=0
    )
    model.policy.set_training_mode(False)
    actor = model.actor
    spec = policy_spec(model)
    rng = np.random.default_rng(0)
    # batch 1 cycles through distinct observations: one observation repeated would let the branch predictor
    # learn every branch and loop count of a call (the activation pattern), which no controller sees
    obs_pool = rng.normal(size=(N_OBS_POOL, spec.obs_dim)).astype(np.float32)
    obs_rows = list(obs_pool)
    obs_batch = rng.normal(size=(args.batch, spec.obs_dim)).astype(np.float32)

    paths = {name: work / name for name in ("policy.onnx", "policy.npz", "policy.c")}
    export(model, paths["policy.onnx"], format="onnx")
    export(model, paths["policy.npz"], format="sparse")
    export(model, paths["policy.c"], format="c")
    sizes = {
        "onnx": file_size(paths["policy.onnx"]),
        "sparse_npz": file_size(paths["policy.npz"]),
        "c_source": file_size(paths["policy.c"]) + file_size(work / "policy.h"),
    }
    buffer = io.BytesIO()
    th.save(actor.state_dict(), buffer)
    sizes["torch_actor_state_dict"] = buffer.getbuffer().nbytes
    model.save(work / "model.zip")
    sizes["sb3_model_zip"] = file_size(work / "model.zip")

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(paths["policy.onnx"]), options, providers=["CPUExecutionProvider"])
    sparse = SparsePolicy.load(paths["policy.npz"])
    dense = numpy_dense(model)
    float_p = ctypes.POINTER(ctypes.c_float)
    library = None
    compile_s = None
    if COMPILER is not None:
        library, compile_s = compile_c(paths["policy.c"], work)
        sizes["c_shared_library"] = file_size(work / "libpolicy.so")

    obs_pool_p = obs_pool.ctypes.data_as(float_p)
    row_pointers = [row.ctypes.data_as(float_p) for row in obs_rows]
    batch_rows = [row[None] for row in obs_rows]
    out1 = np.empty(spec.action_dim, dtype=np.float32)
    out1_p = out1.ctypes.data_as(float_p)
    out_batch = np.empty((args.batch, spec.action_dim), dtype=np.float32)
    obs_batch_p, out_batch_p = obs_batch.ctypes.data_as(float_p), out_batch.ctypes.data_as(float_p)

    def torch_actor(obs: np.ndarray) -> np.ndarray:
        with th.no_grad():
            return actor(th.from_numpy(obs)).numpy()

    def cycling(items: list) -> Callable[[], Any]:
        return itertools.cycle(items).__next__

    rows, rows_2d, pointers = cycling(obs_rows), cycling(batch_rows), cycling(row_pointers)
    one: dict[str, Callable[[], Any]] = {
        "sb3_predict": lambda: model.predict(rows(), deterministic=True),
        "torch_actor": lambda: torch_actor(rows_2d()),
        "onnxruntime": lambda: session.run(None, {"obs": rows_2d()}),
        "numpy_dense": lambda: dense(rows()),
        "sparse_policy": lambda: sparse.predict(rows()),
    }
    batch: dict[str, Callable[[], Any]] = {
        "sb3_predict": lambda: model.predict(obs_batch, deterministic=True),
        "torch_actor": lambda: torch_actor(obs_batch),
        "onnxruntime": lambda: session.run(None, {"obs": obs_batch}),
        "numpy_dense": lambda: dense(obs_batch),
        "sparse_policy": lambda: sparse.predict(obs_batch),
    }
    if library is not None:
        one["c_ctypes"] = lambda: library.sb3_dst_policy(pointers(), out1_p)
        batch["c_ctypes"] = lambda: library.sb3_dst_policy_batch(obs_batch_p, out_batch_p, args.batch)

    # every path computes model.predict's action
    check_obs = rng.normal(size=(64, spec.obs_dim)).astype(np.float32) * 2
    want = model.predict(check_obs, deterministic=True)[0]
    low, half = spec.action_low, (np.float32(0.5) * (spec.action_high - spec.action_low))
    got = {
        "torch_actor": low + (torch_actor(check_obs) + 1) * half,
        "onnxruntime": session.run(None, {"obs": check_obs})[0],
        "numpy_dense": dense(check_obs),
        "sparse_policy": sparse.predict(check_obs),
        "sparse_policy_batch1": np.stack([sparse.predict(o) for o in check_obs]),
    }
    if library is not None:
        c_out = np.empty_like(want)
        library.sb3_dst_policy_batch(
            np.ascontiguousarray(check_obs).ctypes.data_as(float_p), c_out.ctypes.data_as(float_p), len(check_obs)
        )
        got["c_ctypes"] = c_out
    max_abs_error = {name: float(np.abs(value - want).max()) for name, value in got.items()}

    latency = time_alternating(one, args.rounds, args.block_ms / 1e3)
    throughput = time_alternating(batch, max(3, args.rounds // 2), args.block_ms / 1e3)
    if library is not None:
        reps = max(1, int(latency["c_ctypes"]["median_s"] and args.block_ms / 1e3 / latency["c_ctypes"]["median_s"]))
        native = [library.sb3_dst_policy_ns(obs_pool_p, N_OBS_POOL, out1_p, reps) * 1e-9 for _ in range(args.rounds)]
        latency["c_native"] = {
            "median_s": float(np.median(native)),
            "min_s": float(np.min(native)),
            "q25_s": float(np.quantile(native, 0.25)),
            "q75_s": float(np.quantile(native, 0.75)),
            "calls_per_block": reps,
        }
    for stats in throughput.values():
        stats["obs_per_s_median"] = args.batch / stats["median_s"]
    return {
        "load_average_after": os.getloadavg(),  # the machine's load while this configuration was timed
        "hidden": [hidden, hidden],
        "sparsity": sparsity,
        "layer_densities": [round(layer.density, 6) for layer in spec.layers],
        "actor_connections": int(sum(np.count_nonzero(layer.connections) for layer in spec.layers)),
        "actor_weights_dense": int(sum(layer.weight.size for layer in spec.layers)),
        "latency_batch1": latency,
        "throughput_batch": throughput,
        "file_bytes": sizes,
        "c_compile_s": compile_s,
        "max_abs_error_vs_predict": max_abs_error,
    }


COMPILER = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def compiler_version() -> str | None:
    if COMPILER is None:
        return None
    result = subprocess.run([COMPILER, "--version"], capture_output=True, text=True)
    return result.stdout.splitlines()[0] if result.stdout else None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 1024], help="hidden layer widths (two layers)")
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.5, 0.8, 0.9, 0.95, 0.98])
    parser.add_argument("--batch", type=int, default=256, help="batch size of the throughput measurement")
    parser.add_argument("--rounds", type=int, default=30, help="alternating rounds of the latency measurement")
    parser.add_argument("--block-ms", type=float, default=20.0, help="duration of one timed block")
    parser.add_argument("--quick", action="store_true", help="12 rounds of 10 ms blocks (about 5 minutes)")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.block_ms = 12, 10.0
    th.set_num_threads(1)
    started = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="sb3_dst_inference_") as tmp:
        for hidden in args.hidden:
            for sparsity in args.sparsity:
                work = Path(tmp) / f"{hidden}_{sparsity}"
                work.mkdir()
                result = measure(hidden, sparsity, args, work)
                results.append(result)
                lat = {k: v["median_s"] * 1e6 for k, v in result["latency_batch1"].items()}
                thr = {k: v["obs_per_s_median"] / 1e3 for k, v in result["throughput_batch"].items()}
                print(
                    f"{hidden}-{hidden} sparsity {sparsity:.2f}: batch 1 (µs) "
                    + ", ".join(f"{k} {v:.1f}" for k, v in lat.items())
                    + f"; batch {args.batch} (k obs/s) "
                    + ", ".join(f"{k} {v:.0f}" for k, v in thr.items()),
                    flush=True,
                )
    bar = None
    for result in results:
        if result["hidden"] == [256, 256] and abs(result["sparsity"] - 0.9) < 1e-9:
            lat = result["latency_batch1"]
            dense_paths = ["sb3_predict", "torch_actor", "onnxruntime", "numpy_dense"]
            fastest = min(dense_paths, key=lambda k: lat[k]["median_s"])
            speedup = lat[fastest]["median_s"] / lat["sparse_policy"]["median_s"]
            bar = {
                "what": "256-256 at 90 % sparsity, batch 1: SparsePolicy >= 2x faster than the fastest dense path",
                "fastest_dense_path": fastest,
                "fastest_dense_us": lat[fastest]["median_s"] * 1e6,
                "sparse_policy_us": lat["sparse_policy"]["median_s"] * 1e6,
                "speedup": speedup,
                "met": speedup >= 2.0,
            }
            verdict = "met" if bar["met"] else "NOT met"
            print(f"bar: SparsePolicy {speedup:.2f}x faster than the fastest dense path ({fastest}): {verdict}")
    document = {
        "benchmark": "inference",
        "env_shape": ENV_ID,
        "batch": args.batch,
        "rounds": args.rounds,
        "block_ms": args.block_ms,
        "threads": {"torch": th.get_num_threads(), "onnxruntime": 1, "numpy_blas": os.environ["OPENBLAS_NUM_THREADS"]},
        "c_compiler": COMPILER,
        "c_compiler_version": compiler_version(),
        "onnx_versions": {name: _version(name) for name in ("onnx", "onnxruntime")},
        "c_flags": C_FLAGS,
        "bar": bar,
        "results": results,
        "seconds": round(time.time() - started, 1),
        "machine_info": machine_info(),
        "load_average_at_end": os.getloadavg(),
        "command": "python " + " ".join(sys.argv),
        "commit": code_version(Path(__file__).resolve()),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
