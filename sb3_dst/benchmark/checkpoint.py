"""Mid-run checkpoints of a benchmark run, restored so that the resumed run continues bit for bit.

A run of a few hundred thousand steps takes longer than many sessions last here; without checkpoints an
interrupted run restarts from scratch and its hours are lost. A checkpoint holds everything the rest of the
run depends on, so that a run interrupted and resumed writes the same numbers as one uninterrupted process
(the test suite checks this on every evaluation row):

- the model (SB3's ``save``: parameters, masks, optimizer states, counters, the last observation, the
  action noise), and the filled part of its replay buffer;
- the training and evaluation environments, pickled, with what pickling loses restored explicitly: each
  environment's random generator and, for MuJoCo environments, the whole ``MjData`` (positions, velocities,
  warm start of the solver and the derived quantities that the next step's reward reads);
- the global random states (``random``, NumPy, torch) and the action space's generator;
- the evaluation callback's clock, so ``wall_time`` counts training time only, across attempts.

Files: ``checkpoint_<steps>/`` directories and ``checkpoint.json`` naming the newest complete one (written
last, atomically), in the run's *checkpoint home*: the run directory by default, or, with a checkpoint
directory (``--checkpoint-dir``), ``<checkpoint dir>/<run id>-<config digest>/``, which can live outside the
work tree (e.g. ``~/.cache/sb3-dst/checkpoints``) so that a fresh clone or a cleaned work tree loses no run.
Each checkpoint also keeps the run's evaluation rows up to its step, so a run resumes from it even when its
run directory is gone. Older checkpoints are removed once a newer one is complete, and all of them once the
run is finished.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from sb3_dst.benchmark.files import write_json_atomic

__all__ = [
    "POINTER",
    "capture_envs",
    "checkpoint_home",
    "clear_checkpoints",
    "latest_checkpoint",
    "load_checkpoint",
    "restore_envs",
]

POINTER = "checkpoint.json"
_PREFIX = "checkpoint_"
_MODEL, _BUFFER, _STATE = "model.zip", "replay_buffer.pkl", "state.pkl"
ROWS = "evaluations.csv"  # the run's evaluation rows up to the checkpoint's step


def checkpoint_home(run_dir: Path, run_id: str, config_digest: str, checkpoint_dir: Path | None = None) -> Path:
    """Where a run's checkpoints live: ``run_dir``, or ``checkpoint_dir/<run_id>-<config_digest>`` if given.

    Keyed by the configuration digest, so a changed configuration never resumes from another's checkpoint.
    """
    if checkpoint_dir is None:
        return Path(run_dir)
    return Path(checkpoint_dir).expanduser().resolve() / f"{run_id}-{config_digest}"


# --- Environments -------------------------------------------------------------------------------------


def _sub_envs(vec_env: Any) -> list[Any]:
    envs = getattr(vec_env, "envs", None)
    if envs is None:
        raise TypeError(f"checkpoints need a DummyVecEnv (its environments in this process), not {type(vec_env)}")
    return list(envs)


def capture_envs(vec_env: Any) -> bytes:
    """``vec_env`` pickled, with the state that pickling an environment may drop stored next to it.

    Gymnasium's MuJoCo environments pickle as their constructor arguments (``EzPickle``): unpickled, they are
    fresh environments. Their ``MjData`` and random generator are therefore saved separately and copied back by
    :func:`restore_envs`.
    """
    import cloudpickle

    extras = []
    for env in _sub_envs(vec_env):
        base = env.unwrapped
        data = getattr(base, "data", None)
        is_mujoco = type(data).__module__.startswith("mujoco") and type(data).__name__ == "MjData"
        extras.append({
            "np_random": getattr(base, "_np_random", None),
            "np_random_seed": getattr(base, "_np_random_seed", None),
            "mjdata": pickle.dumps(data) if is_mujoco else None,
        })  # fmt: skip
    return bytes(cloudpickle.dumps({"vec_env": vec_env, "extras": extras}))


def restore_envs(blob: bytes) -> Any:
    """The vectorized environment captured by :func:`capture_envs`, in exactly the captured state."""
    import cloudpickle

    saved = cloudpickle.loads(blob)
    vec_env = saved["vec_env"]
    for env, extra in zip(_sub_envs(vec_env), saved["extras"], strict=True):
        base = env.unwrapped
        if extra["np_random"] is not None:
            base._np_random = extra["np_random"]
        if extra["np_random_seed"] is not None:
            base._np_random_seed = extra["np_random_seed"]
        if extra["mjdata"] is not None:
            import mujoco

            mujoco.mj_copyData(base.data, base.model, pickle.loads(extra["mjdata"]))
    return vec_env


# --- Replay buffer ------------------------------------------------------------------------------------


def _buffer_arrays(buffer: Any) -> dict[str, Any]:
    """The replay buffer's storage arrays (and dicts of arrays, for dict observations), by attribute name."""
    arrays: dict[str, Any] = {}
    for name, value in vars(buffer).items():
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == buffer.buffer_size:
            arrays[name] = value
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(v, np.ndarray) and v.shape[0] == buffer.buffer_size for v in value.values())
        ):
            arrays[name] = value
    return arrays


def _is_plain_buffer(buffer: Any) -> bool:
    from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer

    return type(buffer) in (ReplayBuffer, DictReplayBuffer)


def _buffer_state(buffer: Any) -> dict[str, Any]:
    """The filled rows of every storage array, plus the write position (a 1M-row buffer holding 200k steps
    saves 200k rows). Other buffers (HER's keeps episode bookkeeping beside its arrays) are pickled whole."""
    if not _is_plain_buffer(buffer):
        return {"type": type(buffer).__name__, "whole": buffer}
    filled = buffer.buffer_size if buffer.full else buffer.pos
    rows: dict[str, Any] = {}
    for name, value in _buffer_arrays(buffer).items():
        rows[name] = {k: v[:filled].copy() for k, v in value.items()} if isinstance(value, dict) else value[:filled]
    return {"type": type(buffer).__name__, "pos": buffer.pos, "full": buffer.full, "filled": filled, "rows": rows}


def _restore_buffer(buffer: Any, state: dict[str, Any]) -> None:
    if type(buffer).__name__ != state["type"]:
        raise ValueError(f"checkpoint holds a {state['type']}, the model has a {type(buffer).__name__}")
    if "whole" in state:
        env = getattr(buffer, "env", None)  # HER's buffer drops its env when pickled
        vars(buffer).update(vars(state["whole"]))
        if env is not None and getattr(buffer, "env", None) is None:
            buffer.env = env
        return
    arrays, filled = _buffer_arrays(buffer), state["filled"]
    if set(arrays) != set(state["rows"]):
        raise ValueError(f"replay buffer fields differ: {sorted(arrays)} vs {sorted(state['rows'])}")
    for name, rows in state["rows"].items():
        if isinstance(rows, dict):
            for key, value in rows.items():
                arrays[name][key][:filled] = value
        else:
            arrays[name][:filled] = rows
    buffer.pos, buffer.full = state["pos"], state["full"]


# --- Checkpoints --------------------------------------------------------------------------------------


def _random_states() -> dict[str, Any]:
    import torch as th

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": th.get_rng_state()}


def set_random_states(states: dict[str, Any]) -> None:
    """Restore the global generators saved with a checkpoint."""
    import torch as th

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    th.set_rng_state(states["torch"])


def save_checkpoint(
    run_dir: Path,
    model: Any,
    eval_env: Any,
    config_digest: str,
    extra: dict[str, Any],
    rows: Path | None = None,
) -> Path:
    """Write a checkpoint of the run at ``model.num_timesteps`` into ``run_dir`` (the checkpoint home); returns
    its directory.

    Call it between a gradient update and the next environment step (a callback's ``_on_rollout_start``), so
    that every transition taken is stored and trained on. ``extra`` is the caller's state to restore (e.g. the
    evaluation clock); ``rows``, the run's evaluation CSV, is copied into the checkpoint (call it after the
    rows up to this step are synced to disk).
    """
    steps = int(model.num_timesteps)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"{_PREFIX}{steps}"
    tmp = run_dir / f"{_PREFIX}{steps}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save(tmp / _MODEL)
    if rows is not None:
        shutil.copyfile(rows, tmp / ROWS)
    state = {
        "steps": steps,
        "config_digest": config_digest,
        "random": _random_states(),
        "action_space_random": getattr(model.action_space, "_np_random", None),
        "action_noise": copy.deepcopy(model.action_noise),
        "env": capture_envs(model.get_env()),
        "eval_env": capture_envs(eval_env),
        "extra": extra,
    }
    for name, payload in ((_BUFFER, _buffer_state(model.replay_buffer)), (_STATE, state)):
        with open(tmp / name, "wb") as file:
            pickle.dump(payload, file, protocol=pickle.HIGHEST_PROTOCOL)
            file.flush()
            os.fsync(file.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_json_atomic(run_dir / POINTER, {"steps": steps, "dir": final.name, "config_digest": config_digest})
    for old in run_dir.glob(f"{_PREFIX}*"):
        if old.is_dir() and old.name != final.name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path, config_digest: str) -> Path | None:
    """The newest complete checkpoint of the run with this configuration, or None."""
    try:
        pointer = json.loads((run_dir / POINTER).read_text())
    except (OSError, ValueError):
        return None
    path = run_dir / str(pointer.get("dir", ""))
    if pointer.get("config_digest") != config_digest or not (path / _STATE).is_file():
        return None
    return path


def load_checkpoint(path: Path, algorithm: Any) -> tuple[Any, Any, dict[str, Any]]:
    """``(model, eval_env, state)`` restored from the checkpoint directory ``path``.

    The model has its training environment and replay buffer; call :func:`set_random_states` with
    ``state["random"]`` and put back ``state["action_noise"]`` once ``learn()`` has set itself up (SB3 resets
    the action noise there), just before the first new step.
    """
    with open(path / _STATE, "rb") as file:
        state = pickle.load(file)
    model = algorithm.load(path / _MODEL, env=None, device="cpu")
    model.set_env(restore_envs(state["env"]), force_reset=False)
    with open(path / _BUFFER, "rb") as file:
        _restore_buffer(model.replay_buffer, pickle.load(file))
    if state["action_space_random"] is not None:
        model.action_space._np_random = state["action_space_random"]
    return model, restore_envs(state["eval_env"]), state


def clear_checkpoints(run_dir: Path, remove_home: bool = False) -> None:
    """Remove the run's checkpoints from ``run_dir`` (once it is finished), and ``run_dir`` itself if
    ``remove_home`` and nothing else is left in it (a home under a ``--checkpoint-dir``)."""
    (run_dir / POINTER).unlink(missing_ok=True)
    for path in run_dir.glob(f"{_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)
    if remove_home:
        try:
            run_dir.rmdir()
        except OSError:
            pass
