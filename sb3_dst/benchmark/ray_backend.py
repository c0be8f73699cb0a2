"""Running a benchmark campaign on a Ray cluster (``python -m sb3_dst.benchmark run ... --backend ray``).

Each (environment, algorithm, seed) run is one Ray task that reserves ``cpus_per_run`` CPUs and runs the same
:func:`~sb3_dst.benchmark.worker.run_worker` as a local run, in a fresh worker process (``max_calls=1``: no
state of one run, such as flushed denormals, leaks into the next), with one torch thread, so its results are
the local backend's bit for bit.

Why Ray tasks and not Ray Tune: the harness already has what Tune's trials, storage path and failure config
would add, and in its own layout: checkpoints from which a run resumes bit for bit
(:mod:`sb3_dst.benchmark.checkpoint`), the ``runs/<run id>/`` result directories, ``runs.csv`` and the report.
Tune would keep a second copy of every run under its own experiment layout and restore trials through its own
checkpoint API. Ray tasks give the rest directly: placement by CPUs, and re-execution of a task whose worker
process or node died (``max_retries``). Only those deaths are retried (``retry_exceptions=False``): a run that
raises (a bad configuration) is reported once with its error.

Where the files live:

- A run works in ``<checkpoint dir>/<run id>-<config digest>/run/`` and keeps its checkpoints next to it, in
  ``<checkpoint dir>/<run id>-<config digest>/`` (the local backend's ``--checkpoint-dir`` layout). The
  checkpoint directory must be one that every node reaches (a shared file system such as NFS; on one machine,
  any directory): a task re-executed on another node resumes from the newest checkpoint there. The scheduler
  checks that every node sees it before anything starts.
- Only finished runs reach ``--out``: the scheduler copies ``config.json``, ``evaluations.csv``, ``log.txt`` and
  ``done.json`` (last) into ``--out/runs/<run id>/``, appends the run's row to ``runs.csv`` and removes the
  run's directory from the checkpoint directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sb3_dst.benchmark.checkpoint import checkpoint_home, latest_checkpoint
from sb3_dst.benchmark.files import CONFIG, DONE, EVALUATIONS, LOG, read_json, write_json_atomic, write_text_atomic
from sb3_dst.benchmark.runner import (
    _append_summary,
    _Display,
    _lock,
    _summary_rows_present,
    run_dir_of,
    unfinished_runs,
)
from sb3_dst.benchmark.specs import RunConfig

__all__ = ["INSTALL_HINT", "check_address", "import_ray", "ray_session", "run_campaign_ray", "stage_of"]

INSTALL_HINT = 'pip install "sb3-dst[ray]"'
STAGE = "run"  # a run's working directory inside its checkpoint home
WORKER = "ray_worker.json"  # the process and node of the run's current attempt (pid, node id, node ip)
MARKER = ".sb3-dst-ray"  # written by the scheduler in the checkpoint directory; every node must see it
RESULT_FILES = (CONFIG, EVALUATIONS, LOG, DONE)  # what a finished run leaves in --out, done.json last


def import_ray() -> Any:
    """The ``ray`` module; ``ValueError`` saying how to install it if it is missing."""
    try:
        import ray
    except ImportError as error:
        raise ValueError(f"--backend ray needs Ray, which is not installed: {INSTALL_HINT}") from error
    return ray


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast, with a clear error, if ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) does not answer.

    ``None`` (start a local instance) and ``auto`` (the cluster of this machine, or ``RAY_ADDRESS``) are checked
    when connecting, which fails at once if there is no cluster.

    :raises ValueError: naming the address and what to do.
    """
    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address must be 'auto' or HOST:PORT of a Ray cluster's head node, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ValueError(
            f"cannot reach a Ray cluster at {address} ({error or type(error).__name__}); start one there with "
            f"`ray start --head --port={port}`, or check the head node's address and firewall"
        ) from None


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Connected to the Ray cluster at ``address`` (``auto``, ``HOST:PORT``), or to a Ray instance started on
    this machine if ``address`` is None and shut down at the end. Reuses a connection that is already open
    (``ray.init`` called by the caller) and leaves it open.

    :raises ValueError: if Ray is not installed or there is no cluster at ``address``.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    check_address(address)
    env_vars = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if address is None:  # on this machine: the workers import the same sb3_dst as the scheduler
        package_root = str(Path(__file__).resolve().parents[2])
        env_vars["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    try:
        context = ray.init(
            address=address or "local", log_to_driver=False, runtime_env={"env_vars": env_vars}, logging_level="WARNING"
        )
    except ConnectionError as error:
        raise ValueError(
            f"cannot connect to a Ray cluster at --address {address}: {error} Start one with `ray start --head`, "
            "or pass the head node's HOST:PORT"
        ) from None
    try:
        url = getattr(context, "dashboard_url", None)
        gcs = context.address_info.get("gcs_address") if hasattr(context, "address_info") else None
        where = "a Ray instance started on this machine" if address is None else f"the Ray cluster at {gcs or address}"
        print(f"connected to {where}" + (f" (dashboard: http://{url})" if url else ""), file=sys.stderr)
        yield ray
    finally:
        ray.shutdown()


def stage_of(checkpoint_dir: Path, config: RunConfig) -> Path:
    """The directory where ``config``'s run works on the cluster (inside its checkpoint home)."""
    return checkpoint_home(Path(), config.run_id, config.digest(), checkpoint_dir) / STAGE


# --- On a worker --------------------------------------------------------------------------------------


def _node_ip() -> str:
    try:
        import ray

        return str(ray.util.get_node_ip_address())
    except Exception:
        return socket.gethostname()


def _probe(marker: str, token: str) -> tuple[str, bool]:
    """On one node: its address, and whether it sees the marker the scheduler just wrote."""
    try:
        return _node_ip(), Path(marker).read_text() == token
    except OSError:
        return _node_ip(), False


def run_task(config_json: dict[str, Any], checkpoint_dir: str, checkpoint_freq: int) -> int:
    """One run, as a Ray task: works in its stage directory, resumes from its newest checkpoint if there is one.

    Returns the worker's exit code (0: finished). Writes its process id and node to ``ray_worker.json`` (what to
    signal to stop this attempt) and its output to ``log.txt``, appended over attempts.
    """
    config = RunConfig.from_json(config_json)
    root = Path(checkpoint_dir)
    if not (root / MARKER).is_file():
        raise RuntimeError(
            f"node {_node_ip()} does not see the checkpoint directory {root}: it must be shared by every node "
            "(NFS or another shared file system)"
        )
    stage = stage_of(root, config)
    stage.mkdir(parents=True, exist_ok=True)
    write_json_atomic(stage / CONFIG, config_json)
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    worker = {"pid": os.getpid(), "node_ip": _node_ip(), "node_id": node_id, "started": time.time()}
    write_json_atomic(stage / WORKER, worker)
    from sb3_dst.benchmark.worker import run_worker

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(stage / LOG, "ab") as log:
        os.dup2(log.fileno(), 1)  # MuJoCo and torch write to the file descriptors, Python to sys.stdout
        os.dup2(log.fileno(), 2)
        try:
            with (
                open(1, "w", closefd=False) as out,
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(out),
            ):
                print(f"attempt on node {worker['node_ip']} (node id {node_id}), process {os.getpid()}", flush=True)
                try:
                    return run_worker(stage, None, checkpoint_freq, root)
                except BaseException:
                    traceback.print_exc()
                    raise
                finally:
                    out.flush()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# --- On the scheduler ---------------------------------------------------------------------------------


def _check_nodes_see(ray: Any, checkpoint_dir: Path, timeout: float = 120.0) -> None:
    """Write a fresh marker into ``checkpoint_dir`` and check that every alive node reads it back."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    write_text_atomic(checkpoint_dir / MARKER, token)
    probe = ray.remote(_probe)
    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    refs = [
        probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
            str(checkpoint_dir / MARKER), token
        )
        for node in nodes
    ]
    blind = [ip for ip, sees in ray.get(refs, timeout=timeout) if not sees]
    if blind:
        raise ValueError(
            f"nodes {', '.join(sorted(set(blind)))} do not see the checkpoint directory {checkpoint_dir}: pass "
            "--checkpoint-dir a directory that every node of the cluster mounts at the same path (e.g. NFS)"
        )


def _collect(out: Path, config: RunConfig, checkpoint_dir: Path) -> None:
    """Copy a run finished on the cluster into ``out/runs/<run id>/`` (done.json last, the directory swapped in
    whole), record it in ``runs.csv`` and remove its directory from ``checkpoint_dir``."""
    stage = stage_of(checkpoint_dir, config)
    run_dir = run_dir_of(out, config)
    tmp = run_dir.with_name(run_dir.name + ".collecting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in RESULT_FILES:
        if (stage / name).exists():
            shutil.copyfile(stage / name, tmp / name)
    if run_dir.exists():  # an unfinished attempt of the local backend
        shutil.rmtree(run_dir)
    os.replace(tmp, run_dir)
    _append_summary(out, config)
    shutil.rmtree(stage.parent, ignore_errors=True)


def _finished_in_stage(config: RunConfig, checkpoint_dir: Path) -> bool:
    stage = stage_of(checkpoint_dir, config)
    try:
        return (stage / DONE).exists() and read_json(stage / CONFIG) == config.to_json()
    except (OSError, ValueError):
        return False


def _resume_point(config: RunConfig, checkpoint_dir: Path) -> str:
    path = latest_checkpoint(stage_of(checkpoint_dir, config).parent, config.digest())
    return "from scratch" if path is None else f"from its checkpoint at step {path.name.rpartition('_')[2]}"


def _has_started(run: _Task, checkpoint_dir: Path) -> bool:
    """Whether a worker has taken up the submitted run (it writes ``ray_worker.json`` first)."""
    try:
        return (stage_of(checkpoint_dir, run.config) / WORKER).stat().st_mtime >= run.started - 1
    except OSError:
        return False


def _error_text(error: BaseException, max_retries: int) -> str:
    """One line for a failed task: the run's own exception, or the death of its worker after the retries."""
    import ray

    if isinstance(error, ray.exceptions.RayTaskError):
        cause = error.cause if isinstance(error.cause, BaseException) else error
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    return f"{type(error).__name__} after {max_retries} retries: {str(error).strip().splitlines()[0]}"


@dataclass
class _Task:
    config: RunConfig
    ref: Any
    started: float


def run_campaign_ray(
    configs: Sequence[RunConfig],
    out: Path,
    checkpoint_dir: Path,
    address: str | None = None,
    cpus_per_run: float = 1,
    max_retries: int = 3,
    jobs: int | None = None,
    checkpoint_freq: int = 0,
    poll: float = 0.5,
) -> int:
    """Run every unfinished run of ``configs`` as Ray tasks; finished runs land in ``out`` as a local run's do.

    :param checkpoint_dir: where runs work and keep their checkpoints; every node must reach it.
    :param address: ``auto`` or ``HOST:PORT`` of a running cluster; None starts a Ray instance on this machine
        and shuts it down at the end (an open ``ray.init`` connection is used as it is).
    :param cpus_per_run: CPUs each run reserves (a run computes with one torch thread whatever this is, so
        that its results are the local backend's; more leaves room, e.g. for MuJoCo and the replay buffer).
    :param max_retries: times a run is started again after its worker process or node died; it resumes from
        its newest checkpoint. A run that raises is not retried.
    :param jobs: at most this many runs at a time (None: as many as the cluster's CPUs allow).
    :param checkpoint_freq: environment steps between a run's checkpoints (0: none, a lost run restarts).
    :return: the number of runs that failed.
    """
    out, checkpoint_dir = Path(out), Path(checkpoint_dir).expanduser().resolve()
    if cpus_per_run <= 0 or max_retries < 0 or (jobs is not None and jobs < 1):
        raise ValueError(
            f"need --cpus-per-run > 0, --max-retries >= 0 and --jobs >= 1 (got {cpus_per_run}, {max_retries}, {jobs})"
        )
    lock = _lock(out)
    try:
        pending = unfinished_runs(configs, out)
        recorded = _summary_rows_present(out)
        for config in [c for c in configs if c not in pending]:
            if config.run_id not in recorded:  # finished while the scheduler was being killed
                _append_summary(out, config)
            if _finished_in_stage(config, checkpoint_dir):  # copied, but its directory was not removed yet
                shutil.rmtree(stage_of(checkpoint_dir, config).parent, ignore_errors=True)
        collected = [c for c in pending if _finished_in_stage(c, checkpoint_dir)]
        for config in collected:  # finished on the cluster while no scheduler was there to collect it
            _collect(out, config, checkpoint_dir)
        pending = [c for c in pending if c not in collected]
        display = _Display(len(configs), len(configs) - len(pending))
        display.log(
            f"{len(configs)} runs in {out}: {len(configs) - len(pending)} finished (skipped), {len(pending)} to run "
            "on Ray"
        )
        for config in collected:
            display.log(f"collected {config.run_id} (finished on the cluster)")
        failed: list[str] = []
        try:
            if pending:
                with ray_session(address) as ray:
                    failed = _schedule(
                        ray, pending, out, checkpoint_dir, cpus_per_run, max_retries, jobs, checkpoint_freq, poll,
                        display,
                    )  # fmt: skip
        finally:
            display.close()
    finally:
        (out / ".lock").unlink(missing_ok=True)
        lock.close()
    if failed:
        display.log(f"{len(failed)} runs failed: {', '.join(failed)}")
    return len(failed)


def _schedule(
    ray: Any,
    pending: list[RunConfig],
    out: Path,
    checkpoint_dir: Path,
    cpus_per_run: float,
    max_retries: int,
    jobs: int | None,
    checkpoint_freq: int,
    poll: float,
    display: _Display,
) -> list[str]:
    """Submit the runs, collect them as they finish, report failures; cancels the runs if interrupted."""
    _check_nodes_see(ray, checkpoint_dir)
    task = ray.remote(num_cpus=cpus_per_run, max_retries=max_retries, retry_exceptions=False, max_calls=1)(run_task)
    queue, failed = list(pending), []
    running: dict[Any, _Task] = {}

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while queue or running:
            while queue and (jobs is None or len(running) < jobs):
                config = queue.pop(0)
                ref = task.remote(config.to_json(), str(checkpoint_dir), checkpoint_freq)
                running[ref] = _Task(config, ref, time.time())
                display.log(f"submit {config.run_id} ({_resume_point(config, checkpoint_dir)})")
            ready, _ = ray.wait(list(running), num_returns=1, timeout=poll)
            for ref in ready:
                run = running.pop(ref)
                minutes = (time.time() - run.started) / 60
                try:
                    code = ray.get(ref)
                except ray.exceptions.RayError as error:
                    reason = _error_text(error, max_retries)
                else:
                    if code == 0 and _finished_in_stage(run.config, checkpoint_dir):
                        _collect(out, run.config, checkpoint_dir)
                        display.done += 1
                        display.log(f"done  {run.config.run_id} ({minutes:.1f} min)")
                        continue
                    reason = f"the run stopped with exit code {code}"
                failed.append(run.config.run_id)
                display.failed += 1
                log = stage_of(checkpoint_dir, run.config) / LOG
                display.log(f"FAILED {run.config.run_id}: {reason} (log: {log})")
            started = [run for run in running.values() if _has_started(run, checkpoint_dir)]  # not those queued
            display.update(out, started, lambda c: stage_of(checkpoint_dir, c))
    except KeyboardInterrupt:
        display.log("interrupted: cancelling the running runs")
        for ref in running:
            ray.cancel(ref, force=True)
        for run in running.values():
            display.log(f"{run.config.run_id} resumes {_resume_point(run.config, checkpoint_dir)} when run again")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return failed
