"""The scheduler: plans runs, skips finished ones, runs the rest in subprocesses (``jobs`` at a time), shows progress.

Resume semantics: a run is finished when its directory holds ``done.json`` and its ``config.json`` equals the
requested configuration; finished runs are skipped. An unfinished run with a checkpoint (written every
``checkpoint_freq`` steps, :mod:`sb3_dst.benchmark.checkpoint`) resumes from it, and its results are bit for
bit those of one uninterrupted, seeded process; any other run starts from scratch, discarding the rows of the
interrupted attempt. Asking for a different configuration of an existing run is an error (use another output
directory).
"""

from __future__ import annotations

import csv
import fcntl
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sb3_dst.benchmark.checkpoint import checkpoint_home, latest_checkpoint
from sb3_dst.benchmark.files import CONFIG, DONE, LOG, PROGRESS, read_json, write_json_atomic
from sb3_dst.benchmark.specs import AlgoSpec, RunConfig, family, resolve_hyperparams

__all__ = [
    "RUNS_CSV",
    "RUNS_DIR",
    "check_runs",
    "describe_plan",
    "plan_runs",
    "run_campaign",
    "run_dir_of",
    "unfinished_runs",
]

RUNS_DIR = "runs"
RUNS_CSV = "runs.csv"


def run_dir_of(out: Path, config: RunConfig) -> Path:
    return out / RUNS_DIR / config.run_id


def _latest(out: Path, config: RunConfig, checkpoint_dir: Path | None) -> Path | None:
    """The run's newest checkpoint of its configuration, wherever its checkpoints live."""
    home = checkpoint_home(run_dir_of(out, config), config.run_id, config.digest(), checkpoint_dir)
    return latest_checkpoint(home, config.digest())


def plan_runs(
    algos: Sequence[str],
    envs: Sequence[str],
    seeds: Sequence[int],
    total_timesteps: int,
    eval_freq: int,
    eval_episodes: int,
    hyperparams_dir: str | Path | None = None,
    learning_starts: int | None = None,
    net_arch: Sequence[int] | None = None,
    flush_denormal: bool = False,
) -> list[RunConfig]:
    """All runs of algos × envs × seeds, ordered so every algorithm gets its first seeds early."""
    if total_timesteps % eval_freq:
        raise ValueError(f"the step budget {total_timesteps} must be a multiple of eval_freq {eval_freq}")
    configs = []
    for seed in seeds:
        for env_id in envs:
            for algo in algos:
                spec = AlgoSpec.parse(algo)
                params = resolve_hyperparams(spec, env_id, hyperparams_dir, learning_starts, net_arch)
                configs.append(
                    RunConfig(algo, env_id, seed, total_timesteps, eval_freq, eval_episodes, params, flush_denormal)
                )
    ids = [c.run_id for c in configs]
    if len(set(ids)) != len(ids):
        raise ValueError("two requested runs share a run id (repeated algorithm, env or seed?)")
    return configs


def check_runs(configs: Sequence[RunConfig]) -> None:
    """Build each distinct model once, without training, so bad input fails before any run starts.

    Catches MuJoCo v3 ids (with the ids to use instead), unknown environments, unknown hyperparameters and bad
    values (for example a λ that makes a layer denser than full), each named with the run it belongs to.

    :raises ValueError: naming the run and the problem.
    """
    import gymnasium as gym

    from sb3_dst.benchmark.worker import build_model
    from sb3_dst.zoo import check_env_id

    seen: set[str] = set()
    for config in configs:
        key = json.dumps([config.algo, config.env_id, config.hyperparams], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        check_env_id(config.env_id)
        try:
            env = gym.make(config.env_id)
        except gym.error.Error as error:
            raise ValueError(f"{config.run_id}: cannot make {config.env_id!r}: {error}") from error
        try:
            build_model(config, env)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{config.run_id}: {error}") from error
        finally:
            env.close()


def _is_finished(out: Path, config: RunConfig) -> bool:
    """True if the run is finished; raises if its directory holds another configuration."""
    run_dir = run_dir_of(out, config)
    config_path = run_dir / CONFIG
    if not config_path.exists():
        return False
    existing = read_json(config_path, f"; delete {run_dir} to run it again from scratch")
    if existing != config.to_json():
        diff = sorted(k for k in set(existing) | set(config.to_json()) if existing.get(k) != config.to_json().get(k))
        raise ValueError(
            f"{run_dir} holds a run with another configuration (differs in {diff}); "
            "use another --out directory or delete that run"
        )
    return (run_dir / DONE).exists()


def unfinished_runs(configs: Sequence[RunConfig], out: Path) -> list[RunConfig]:
    """The runs of ``configs`` that are not finished in ``out``, in order. Raises ``ValueError`` if ``out`` holds
    one of them with another configuration."""
    return [config for config in configs if not _is_finished(Path(out), config)]


def _summary_rows_present(out: Path) -> set[str]:
    path = out / RUNS_CSV
    if not path.exists():
        return set()
    with open(path, newline="") as file:
        return {row["run_id"] for row in csv.DictReader(file)}


def _append_summary(out: Path, config: RunConfig) -> None:
    """Append the finished run's summary row to ``runs.csv`` (header on first write)."""
    from sb3_dst.benchmark.report import SUMMARY_COLUMNS, summarize_run

    row = summarize_run(run_dir_of(out, config))
    path = out / RUNS_CSV
    new = not path.exists()
    with open(path, "a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=SUMMARY_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in SUMMARY_COLUMNS})
        file.flush()
        os.fsync(file.fileno())


def describe_plan(configs: Sequence[RunConfig], out: Path, checkpoint_dir: Path | None = None) -> str:
    """What ``run`` would do with ``configs`` in ``out``, without doing it: each run finished (skipped), resumed
    from a checkpoint (at which step) or started from scratch, and an estimate of the training time left.

    The estimate counts the environment steps still to take at the median speed of the finished runs of the same
    algorithm family (steps per second of one core, evaluations included), or of all finished runs if that
    family has none yet. The median, not the mean, so that a run slowed by a paused or crowded machine does not
    skew it; it stays rough (machines here vary by up to 2.5x from day to day).

    :raises ValueError: if a run directory holds another configuration (as ``run`` would).
    """
    out = Path(out)
    speeds: dict[str, list[float]] = {}
    lines, seconds, unknown = [], 0.0, 0
    states = []
    for config in configs:
        run_dir = run_dir_of(out, config)
        if _is_finished(out, config):
            done = json.loads((run_dir / DONE).read_text())
            speeds.setdefault(family(config.algo), []).append(done["num_timesteps"] / max(done["wall_time"], 1e-9))
            states.append((config, "finished", 0))
            continue
        checkpoint = _latest(out, config, checkpoint_dir)
        start = int(checkpoint.name.rpartition("_")[2]) if checkpoint is not None else 0
        states.append((config, f"resumes at step {start}" if checkpoint is not None else "starts", start))
    everything = [v for values in speeds.values() for v in values]
    for config, state, start in states:
        lines.append(f"{state:>24}  {config.run_id}")
        if state == "finished":
            continue
        family_speeds = speeds.get(family(config.algo)) or everything
        if family_speeds:
            seconds += (config.total_timesteps - start) / statistics.median(family_speeds)
        else:
            unknown += 1
    n_finished = sum(state == "finished" for _, state, _ in states)
    summary = f"{len(configs)} runs in {out}: {n_finished} finished, {len(configs) - n_finished} to run"
    if unknown == len(configs) - n_finished > 0:
        summary += "; time left unknown (no finished run to measure the speed)"
    elif len(configs) > n_finished:
        summary += f"; about {seconds / 3600:.1f} core-hours left at the median speed of the finished runs"
        if unknown:
            summary += f" ({unknown} runs of families with no finished run yet not counted)"
    return "\n".join([*lines, summary])


@dataclass
class _Running:
    config: RunConfig
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float


def _start(out: Path, config: RunConfig, checkpoint_freq: int = 0, checkpoint_dir: Path | None = None) -> _Running:
    run_dir = run_dir_of(out, config)
    resumable = _latest(out, config, checkpoint_dir) is not None
    if run_dir.exists() and not resumable:  # an interrupted attempt without checkpoint: start from scratch
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / CONFIG, config.to_json())
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    package_root = str(Path(__file__).resolve().parents[2])  # run the same sb3_dst as the scheduler
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    log = open(run_dir / LOG, "ab")
    # The worker runs inside its run directory, so it must be given an absolute path.
    command = [
        sys.executable,
        "-m",
        "sb3_dst.benchmark",
        "worker",
        str(run_dir.resolve()),
        "--parent-pid",
        str(os.getpid()),
        "--checkpoint-freq",
        str(checkpoint_freq),
    ]
    if checkpoint_dir is not None:
        command += ["--checkpoint-dir", str(Path(checkpoint_dir).expanduser().resolve())]
    process = subprocess.Popen(command, cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    return _Running(config, process, log, time.time())


def _progress_of(run_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((run_dir / PROGRESS).read_text()))
    except (OSError, ValueError):
        return {}


def _label(config: RunConfig) -> str:
    return f"{config.env_id} {config.spec.label} s{config.seed}"


class _Display:
    """Progress: a rich display on a terminal, plain status lines otherwise."""

    def __init__(self, total: int, done: int, plain_interval: float = 60.0) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.plain = not self.console.is_terminal
        self.total, self.done, self.failed = total, done, 0
        self.plain_interval, self.last_plain = plain_interval, 0.0
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        if not self.plain:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
            )  # fmt: skip
            self.overall = self.progress.add_task("runs done", total=total, completed=done, info="")
            self.progress.start()

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False)

    def update(self, out: Path, running: Sequence[Any], where: Callable[[RunConfig], Path] | None = None) -> None:
        """Show the progress of the ``running`` runs (objects with a ``config``), read from their run
        directories in ``out``, or from ``where(config)`` if given (the Ray backend's working directories)."""
        where = where or (lambda config: run_dir_of(out, config))
        states = {r.config.run_id: (r.config, _progress_of(where(r.config))) for r in running}
        if self.progress is not None:
            summary = f"{len(running)} running, {self.failed} failed"
            self.progress.update(self.overall, completed=self.done, info=summary)
            for run_id, (config, state) in states.items():
                last = state.get("last_return", math.nan)
                info = "" if math.isnan(last) else f"last eval R={last:.0f}"
                if run_id not in self.tasks:
                    self.tasks[run_id] = self.progress.add_task(_label(config), total=config.total_timesteps, info="")
                self.progress.update(self.tasks[run_id], completed=state.get("timesteps", 0), info=info)
            for run_id in [k for k in self.tasks if k not in states]:
                self.progress.remove_task(self.tasks.pop(run_id))
        elif time.time() - self.last_plain >= self.plain_interval:
            self.last_plain = time.time()
            parts = [f"{_label(c)} {s.get('timesteps', 0)}/{c.total_timesteps}" for c, s in states.values()]
            self.log(f"[{self.done}/{self.total} done, {len(running)} running] " + "; ".join(parts))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _lock(out: Path) -> IO[str]:
    """An exclusive lock on ``out``: two schedulers must not share an output directory."""
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / ".lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RuntimeError(f"another benchmark scheduler is using {out}") from None
    return handle


def run_campaign(
    configs: Sequence[RunConfig],
    out: Path,
    jobs: int = 2,
    poll: float = 0.5,
    checkpoint_freq: int = 0,
    checkpoint_dir: Path | None = None,
) -> int:
    """Run every unfinished run of ``configs`` in subprocesses, ``jobs`` at a time.

    :param checkpoint_freq: environment steps between a run's checkpoints (0: none); an interrupted run
        resumes from its last checkpoint.
    :param checkpoint_dir: keep checkpoints under this directory (keyed by run id and configuration digest)
        instead of in the run directories, e.g. outside the work tree.
    :return: the number of runs that failed (their logs are in ``out/runs/<run_id>/log.txt``).
    """
    out = Path(out)
    lock = _lock(out)
    pending = unfinished_runs(configs, out)
    finished = [c for c in configs if c not in pending]
    recorded = _summary_rows_present(out)
    for config in finished:  # finished while the scheduler was being killed: record it now
        if config.run_id not in recorded:
            _append_summary(out, config)
    display = _Display(len(configs), len(finished))
    display.log(f"{len(configs)} runs in {out}: {len(finished)} finished (skipped), {len(pending)} to run")
    for config in finished:
        display.log(f"skip {config.run_id} (finished)")
    running: list[_Running] = []
    failed: list[str] = []

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                config = pending.pop(0)
                running.append(_start(out, config, checkpoint_freq, checkpoint_dir))
                display.log(f"start {config.run_id}")
            time.sleep(poll)
            for run in [r for r in running if r.process.poll() is not None]:
                running.remove(run)
                run.log.close()
                minutes = (time.time() - run.started) / 60
                if run.process.returncode == 0 and (run_dir_of(out, run.config) / DONE).exists():
                    _append_summary(out, run.config)
                    display.done += 1
                    display.log(f"done  {run.config.run_id} ({minutes:.1f} min)")
                else:
                    failed.append(run.config.run_id)
                    display.failed += 1
                    display.log(f"FAILED {run.config.run_id} (exit {run.process.returncode}, see its log.txt)")
            display.update(out, running)
    except KeyboardInterrupt:
        display.log("interrupted: stopping running runs")
        for run in running:
            run.process.terminate()
        for run in running:
            run.process.wait()
            run.log.close()
            path = _latest(out, run.config, checkpoint_dir)
            where = "from scratch" if path is None else f"from its checkpoint at step {path.name.rpartition('_')[2]}"
            display.log(f"{run.config.run_id} resumes {where} when the command is run again")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        display.close()
        (out / ".lock").unlink(missing_ok=True)
        lock.close()
    if failed:
        display.log(f"{len(failed)} runs failed: {', '.join(failed)}")
    return len(failed)
