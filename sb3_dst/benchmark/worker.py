"""One benchmark run, in its own process: train, evaluate every ``eval_freq`` steps, write results as they come.

Files in the run directory:

- ``config.json``: the :class:`~sb3_dst.benchmark.specs.RunConfig` (written by the scheduler).
- ``evaluations.csv``: one row per evaluation, flushed and synced to disk when taken.
- ``progress.json``: current step, for the scheduler's progress display (removed at the end).
- ``done.json``: written atomically last; a run without it is unfinished.
- ``log.txt``: the process's output.
- ``checkpoint.json`` and ``checkpoint_<steps>/``: the newest mid-run checkpoint (every ``checkpoint_freq``
  steps, see :mod:`sb3_dst.benchmark.checkpoint`), here or under ``--checkpoint-dir``. An unfinished run
  resumes from it, bit for bit as if it had not stopped (its evaluation rows after the checkpoint are dropped
  and taken again); without one it restarts from scratch. Removed when the run is finished.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import importlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import sb3_dst
from sb3_dst.benchmark.files import (
    CONFIG,
    DONE,
    EVALUATIONS,
    LOG,
    PROGRESS,
    read_json,
    write_json_atomic,
    write_text_atomic,
)
from sb3_dst.benchmark.specs import ALGORITHMS, RunConfig

# The file helpers and names are defined in sb3_dst.benchmark.files and stay importable from here.
__all__ = [
    "CONFIG",
    "DONE",
    "EVALUATIONS",
    "EVAL_COLUMNS",
    "LOG",
    "PROGRESS",
    "build_model",
    "read_json",
    "run_worker",
    "write_json_atomic",
    "write_text_atomic",
]

EVAL_COLUMNS = [
    "timesteps",
    "mean_return",
    "std_return",
    "mean_ep_length",
    "n_updates",
    "flops",
    "wall_time",
    "eval_time",
]
ATTEMPTS = "resumed_at.json"  # the checkpoint steps this run resumed from so far


def _previous_attempts(run_dir: Path) -> list[int]:
    try:
        return [int(step) for step in json.loads((run_dir / ATTEMPTS).read_text())]
    except (OSError, ValueError, TypeError):
        return []


def algorithm_class(name: str) -> type:
    module, _, attr = ALGORITHMS[name][0].partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def build_model(config: RunConfig, env: Any) -> Any:
    """The algorithm of ``config`` on ``env``, with rl-zoo3-style hyperparameters turned into constructor args."""
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    params = copy.deepcopy(dict(config.hyperparams))  # SB3 fills policy_kwargs in place: keep the config intact
    policy = params.pop("policy", "MlpPolicy")
    noise_type, noise_std = params.pop("noise_type", None), params.pop("noise_std", None)
    if noise_type is not None:
        n_actions = env.action_space.shape[-1]
        mean, sigma = np.zeros(n_actions), float(noise_std) * np.ones(n_actions)
        noises = {"normal": NormalActionNoise, "ornstein-uhlenbeck": OrnsteinUhlenbeckActionNoise}
        if noise_type not in noises:
            raise ValueError(f"unsupported noise_type {noise_type!r}")
        params["action_noise"] = noises[noise_type](mean=mean, sigma=sigma)
    cls = algorithm_class(config.spec.base)
    return cls(policy, env, seed=config.seed, verbose=0, **params)


def _make_callback(
    config: RunConfig,
    run_dir: Path,
    eval_env: Any,
    parent_pid: int | None,
    checkpoint_freq: int = 0,
    resumed: dict[str, Any] | None = None,
    home: Path | None = None,
    resumed_at: list[int] | None = None,
) -> Any:
    """The run's callback: evaluations, progress, and (every ``checkpoint_freq`` steps, 0 = never) checkpoints.

    :param resumed: the state of a checkpoint this attempt resumes from (see :func:`run_worker`).
    :param home: the directory of the run's checkpoints (default ``run_dir``).
    :param resumed_at: the checkpoint steps this run resumed from so far (kept in each checkpoint).
    """
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_dst.benchmark import checkpoint
    from sb3_dst.metrics import training_flops

    class EvalAndProgress(BaseCallback):
        """Evaluates every ``eval_freq`` steps (deterministic, ``eval_episodes`` episodes), reports progress,
        and writes checkpoints."""

        def __init__(self) -> None:
            super().__init__()
            clock = resumed["extra"] if resumed else {"elapsed": 0.0, "eval_time": 0.0, "last_return": float("nan")}
            self.start = time.perf_counter() - clock["elapsed"]
            self.eval_time = clock["eval_time"]
            self.last_return = clock["last_return"]
            self.last_checkpoint = resumed["steps"] if resumed else 0
            self.file = open(run_dir / EVALUATIONS, "a" if resumed else "w", newline="")
            self.writer = csv.writer(self.file)
            if not resumed:
                self.writer.writerow(EVAL_COLUMNS)
            self._sync()

        def _sync(self) -> None:
            self.file.flush()
            os.fsync(self.file.fileno())

        def _on_training_start(self) -> None:
            if resumed:  # after learn()'s set-up, which resets the action noise: the state of the checkpoint
                self.model.action_noise = resumed["action_noise"]
                checkpoint.set_random_states(resumed["random"])

        def _on_rollout_start(self) -> None:
            # Between the last gradient update and the next environment step: a consistent point to save.
            n = self.num_timesteps
            if checkpoint_freq and n // checkpoint_freq > self.last_checkpoint // checkpoint_freq:
                if n < config.total_timesteps:
                    clock = {
                        "elapsed": time.perf_counter() - self.start,
                        "eval_time": self.eval_time,
                        "last_return": self.last_return,
                        "resumed_at": list(resumed_at or []),
                    }
                    checkpoint.save_checkpoint(
                        home or run_dir, self.model, eval_env, config.digest(), clock, rows=run_dir / EVALUATIONS
                    )
                self.last_checkpoint = n

        def _on_step(self) -> bool:
            n = self.num_timesteps
            if n % config.eval_freq == 0:
                self._evaluate(n)
            if n % 500 == 0 or n % config.eval_freq == 0:
                progress = {"timesteps": n, "total": config.total_timesteps, "last_return": self.last_return}
                write_json_atomic(run_dir / PROGRESS, progress)
                if parent_pid is not None and os.getppid() != parent_pid:
                    print("scheduler is gone; stopping", flush=True)
                    return False
            return True

        def _evaluate(self, n: int) -> None:
            t0 = time.perf_counter()
            returns, lengths = evaluate_policy(
                self.model,
                eval_env,
                n_eval_episodes=config.eval_episodes,
                deterministic=True,
                return_episode_rewards=True,
                warn=False,
            )
            self.eval_time += time.perf_counter() - t0
            self.last_return = float(np.mean(returns))
            self.writer.writerow([
                n, self.last_return, float(np.std(returns)), float(np.mean(lengths)), self.model._n_updates,
                training_flops(self.model), round(time.perf_counter() - self.start, 3), round(self.eval_time, 3),
            ])  # fmt: skip
            self._sync()

        def _on_training_end(self) -> None:
            self.file.close()

    return EvalAndProgress()


#: Packages whose version can change a run's bits (their versions are recorded in ``done.json``).
RECORDED_PACKAGES = ("torch", "stable_baselines3", "gymnasium", "mujoco", "numpy", "numba")


def machine_info() -> dict[str, Any]:
    """What a run's exact numbers depend on besides its config: CPU, torch's kernel level, package versions.

    Runs repeat to the last digit only on the same machine and software stack (the matrix products' code path,
    chosen for the CPU, changes the last bits; see ``benchmarks/results/reproducibility``).
    """
    from importlib import metadata

    import torch as th

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    except OSError:
        pass
    packages: dict[str, str | None] = {}
    for name in RECORDED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch_cpu_capability": th.backends.cpu.get_cpu_capability(),
        "packages": packages,
    }


def code_version(*also: Path) -> str:
    """sb3-dst's version, with the git commit when it runs from a checkout (``+dirty`` if its code is modified).

    :param also: more files whose modification makes the checkout dirty (e.g. the measuring script itself).
    """
    package = Path(__file__).resolve().parents[1]
    if not (package.parent / "pyproject.toml").exists():  # an installed wheel, not a source checkout
        return sb3_dst.__version__
    try:
        head = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(package), "status", "--porcelain", "--", ".", *map(str, also)],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return sb3_dst.__version__
    return f"{sb3_dst.__version__}+{head}" + ("+dirty" if dirty else "")


def parameters_digest(model: Any) -> str:
    """SHA-1 (12 digits) of the policy's parameters and buffers (masks, batch-norm statistics), in order: two
    runs that end with the same digest end with the same networks, bit for bit."""
    sha = hashlib.sha1()
    for name, tensor in model.policy.state_dict().items():
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()[:12]


def _keep_rows_until(path: Path, steps: int) -> None:
    """Drop the evaluation rows taken after ``steps`` (they are taken again by the resumed run)."""
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    kept = [rows[0], *(row for row in rows[1:] if int(row[0]) <= steps)]
    text = io.StringIO(newline="")
    csv.writer(text).writerows(kept)
    write_text_atomic(path, text.getvalue())


def run_worker(
    run_dir: Path, parent_pid: int | None = None, checkpoint_freq: int = 0, checkpoint_dir: Path | None = None
) -> int:
    """Train and evaluate the run described by ``run_dir/config.json``; returns the process exit code.

    :param checkpoint_freq: environment steps between checkpoints (0: none). A run with a checkpoint of the
        same configuration resumes from it, whatever ``checkpoint_freq`` is now.
    :param checkpoint_dir: keep checkpoints in ``checkpoint_dir/<run id>-<config digest>/`` instead of the run
        directory (see :func:`~sb3_dst.benchmark.checkpoint.checkpoint_home`).
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import gymnasium as gym
    import torch as th
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_dst.metrics import network_size, training_flops

    th.set_num_threads(1)
    config = RunConfig.from_json(json.loads((run_dir / CONFIG).read_text()))
    if config.flush_denormal and not th.set_flush_denormal(True):
        raise RuntimeError(f"run {config.run_id} asks to flush denormals, which this CPU does not support")
    from sb3_dst.benchmark import checkpoint

    (run_dir / DONE).unlink(missing_ok=True)
    print(f"run {config.run_id}: {json.dumps(config.to_json())}", flush=True)
    code = code_version()  # the code imported now is the code that runs
    previous = _previous_attempts(run_dir)
    home = checkpoint.checkpoint_home(run_dir, config.run_id, config.digest(), checkpoint_dir)
    path = checkpoint.latest_checkpoint(home, config.digest())
    rows_kept = path is not None and (path / checkpoint.ROWS).exists()  # older checkpoints have no rows
    resumed: dict[str, Any] | None = None
    if path is not None and (rows_kept or (run_dir / EVALUATIONS).exists()):
        try:
            model, eval_env, resumed = checkpoint.load_checkpoint(path, algorithm_class(config.spec.base))
        except Exception as error:  # e.g. written by another version of the code: the run starts again instead
            print(
                f"cannot resume from {path.name} ({type(error).__name__}: {error}); starting from scratch", flush=True
            )
            resumed = None
    if resumed is not None:
        if rows_kept:  # the checkpoint's own rows: the run directory may be gone (a fresh clone)
            shutil.copyfile(path / checkpoint.ROWS, run_dir / EVALUATIONS)  # type: ignore[operator]
            previous = list(resumed["extra"].get("resumed_at", previous))
        _keep_rows_until(run_dir / EVALUATIONS, resumed["steps"])
        print(f"resuming from {path.name} (step {resumed['steps']})", flush=True)  # type: ignore[union-attr]
    else:
        checkpoint.clear_checkpoints(home)
        for name in (EVALUATIONS, PROGRESS):
            (run_dir / name).unlink(missing_ok=True)
        eval_env = DummyVecEnv([lambda: Monitor(gym.make(config.env_id))])
        eval_env.seed(config.seed + 10_000)
        model = build_model(config, gym.make(config.env_id))
    resumed_at = [*previous, resumed["steps"]] if resumed else []
    write_json_atomic(run_dir / ATTEMPTS, resumed_at)

    callback = _make_callback(config, run_dir, eval_env, parent_pid, checkpoint_freq, resumed, home, resumed_at)
    model.learn(
        total_timesteps=config.total_timesteps - model.num_timesteps,
        callback=callback,
        reset_num_timesteps=resumed is None,
    )
    if model.num_timesteps < config.total_timesteps:
        return 3  # stopped early (the scheduler died): stays unfinished
    wall = time.perf_counter() - callback.start  # training and evaluation time, summed over attempts
    done = {
        "run_id": config.run_id,
        "config_digest": config.digest(),
        "num_timesteps": int(model.num_timesteps),
        "n_updates": int(model._n_updates),
        "network_size": network_size(model),
        "parameters_digest": parameters_digest(model),
        "flops": training_flops(model),
        "flops_paper": training_flops(model, "paper"),
        "num_evolutions": int(getattr(model, "num_evolutions", 0)),
        "wall_time": round(wall, 3),
        "eval_time": round(callback.eval_time, 3),
        "resumed_at": resumed_at,
        "train_steps_per_second": round(model.num_timesteps / max(wall - callback.eval_time, 1e-9), 2),
        "python": sys.version.split()[0],
        "torch_threads": th.get_num_threads(),
        "flush_denormal": config.flush_denormal,
        "sb3_dst": code,
        "machine": machine_info(),
    }
    model.get_env().close()
    eval_env.close()
    (run_dir / PROGRESS).unlink(missing_ok=True)
    mujoco_log = run_dir / "MUJOCO_LOG.TXT"  # MuJoCo's warnings land in the working directory
    if mujoco_log.exists():
        print(mujoco_log.read_text(), flush=True)
        mujoco_log.unlink()
    write_json_atomic(run_dir / DONE, done)
    checkpoint.clear_checkpoints(home, remove_home=home != run_dir)
    (run_dir / ATTEMPTS).unlink(missing_ok=True)
    print(f"done in {wall:.1f} s", flush=True)
    return 0
