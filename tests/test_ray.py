"""The benchmark harness on Ray (``--backend ray``), on a real two-node cluster started on this machine.

One tiny campaign runs on the cluster while the same campaign runs locally; one of its Ray worker processes is
SIGKILLed mid-run. The campaign must still finish, with every result equal to the local run's, bit for bit.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sb3_dst.benchmark.__main__ import main

ray = pytest.importorskip("ray", reason='needs Ray: pip install "sb3-dst[ray]"')
# One cluster for the module's tests, on one xdist worker (with `--dist loadgroup`, as CI runs them).
pytestmark = pytest.mark.xdist_group("ray")

REPO = Path(__file__).resolve().parents[1]
ALGOS = ["TD3", "DS-TD3:evolution_interval=50"]
ARGS = [
    "run", "--algos", *ALGOS, "--envs", "Pendulum-v1", "--seeds", "0", "--steps", "1200", "--eval-freq", "300",
    "--eval-episodes", "2", "--learning-starts", "200", "--net-arch", "32", "32", "--checkpoint-freq", "250",
    "--no-report",
]  # fmt: skip
KILLED = "Pendulum-v1__DS-TD3__evolution_interval-50__seed0"  # the run whose worker is SIGKILLed
DETERMINISTIC_COLUMNS = ["timesteps", "mean_return", "std_return", "mean_ep_length", "n_updates", "flops"]
DONE_KEYS = ["num_timesteps", "n_updates", "network_size", "parameters_digest", "flops", "num_evolutions"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Refused before anything starts (no cluster needed) ----------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "ray", "--address", "127.0.0.1:{port}"], "cannot reach a Ray cluster at 127.0.0.1:"),
        (["--backend", "ray", "--address", "no-port"], "HOST:PORT"),
        (["--backend", "ray", "--cpus-per-run", "0"], "--cpus-per-run must be > 0"),
        (["--address", "auto"], "--address only apply to --backend ray"),
    ],
    ids=["unreachable", "malformed", "cpus", "local-backend"],
)
def test_bad_ray_options_are_refused_before_anything_starts(tmp_path: Path, extra: list[str], message: str) -> None:
    out = tmp_path / "out"
    extra = [arg.replace("{port}", str(_free_port())) for arg in extra]
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        main([*ARGS, *extra, "--checkpoint-dir", str(tmp_path / "ckpt"), "--out", str(out)])
    assert time.perf_counter() - start < 30  # the address check times out after 5 s, not Ray's minute
    assert not out.exists() and not ray.is_initialized()


def test_ray_needs_a_checkpoint_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--backend ray needs --checkpoint-dir: a directory that every node"):
        main([*ARGS, "--backend", "ray", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_without_ray_installed_the_error_says_how_to_install_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    argv = [*ARGS, "--backend", "ray", "--checkpoint-dir", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")]
    with pytest.raises(ValueError, match=r'needs Ray, which is not installed: pip install "sb3-dst\[ray\]"'):
        main(argv)
    assert not (tmp_path / "out").exists()


# --- On a two-node cluster -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head node and a worker node, one CPU each, in temporary directories; every process stopped at the end."""
    from ray.cluster_utils import Cluster

    # Cluster() writes the head's address into Ray's default temp directory (/tmp/ray unless RAY_TMPDIR or TMPDIR
    # says otherwise) without creating it, so on a clean machine that has never run Ray it fails with
    # FileNotFoundError. Create it, and remove it again if it was ours.
    default_temp = Path(_default_ray_temp_dir())
    created_default_temp = not default_temp.exists()
    default_temp.mkdir(parents=True, exist_ok=True)
    # Short paths under /tmp: Ray's socket paths must fit in 107 bytes.
    temps = [Path(tempfile.mkdtemp(prefix=f"ray{node}", dir="/tmp")) for node in ("head", "node")]
    head = {"num_cpus": 1, "include_dashboard": False, "dashboard_port": _free_port(), "temp_dir": str(temps[0])}
    nodes = Cluster(initialize_head=True, connect=False, head_node_args=head)
    try:
        nodes.add_node(num_cpus=1, temp_dir=str(temps[1]))
        nodes.wait_for_nodes()
        yield str(nodes.address)
    finally:
        started = _processes_of(temps[0]) | _processes_of(temps[1])
        nodes.shutdown()
        deadline = time.time() + 20
        while (left := [pid for pid in started if _alive(pid)]) and time.time() < deadline:
            time.sleep(0.2)
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)
        if created_default_temp:
            shutil.rmtree(default_temp, ignore_errors=True)
        assert started and not left, f"Ray processes left running: {left}"


def _default_ray_temp_dir() -> str:
    """Ray's default temp directory, where it keeps the address of the newest cluster."""
    try:  # where current Ray keeps it
        from ray._common.utils import get_default_ray_temp_dir
    except ImportError:  # Ray releases before the move to ray._common
        from ray._private.utils import get_ray_temp_dir as get_default_ray_temp_dir
    return str(get_default_ray_temp_dir())


def _processes_of(temp: Path) -> set[int]:
    """The processes of the cluster in ``temp``: its services (named with ``temp`` on their command line) and the
    worker processes of its raylets (which carry their raylet's pid in their environment)."""
    services, raylets, workers = set(), set(), set()
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if str(temp).encode() in cmdline:
            services.add(int(proc.name))
            if b"/raylet" in cmdline.split(b"\0")[0]:
                raylets.add(int(proc.name))
        pid = next((e.split(b"=", 1)[1] for e in environ if e.startswith(b"RAY_RAYLET_PID=")), None)
        if pid is not None and pid.isdigit():
            workers.add((int(proc.name), int(pid)))
    return services | {pid for pid, raylet in workers if raylet in raylets}


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


def test_a_campaign_on_two_nodes_survives_a_killed_worker_and_equals_a_local_run(cluster: str, tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cli = [sys.executable, "-m", "sb3_dst.benchmark", *ARGS]
    checkpoints, out = tmp_path / "checkpoints", tmp_path / "ray"
    argv = [*ARGS, "--backend", "ray", "--address", cluster, "--checkpoint-dir", str(checkpoints), "--out", str(out)]
    on_ray = subprocess.Popen(
        [*cli, *argv[len(ARGS) :]], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    local = subprocess.Popen(
        [*cli, "--jobs", "2", "--out", str(tmp_path / "local")], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL
    )
    try:
        # SIGKILL the Ray worker process running DS-TD3 once it has a checkpoint past step 500.
        deadline = time.time() + 600  # generous: Ray runs its workers niced, so a loaded machine slows them most
        while True:
            assert on_ray.poll() is None, on_ray.stdout.read().decode() if on_ray.stdout else ""
            assert time.time() < deadline, "no checkpoint in time"
            homes = [h for h in checkpoints.glob(f"{KILLED}-*") if (h / "checkpoint.json").exists()]
            if homes and json.loads((homes[0] / "checkpoint.json").read_text())["steps"] >= 500:
                home = homes[0]
                break
            time.sleep(0.02)
        worker = json.loads((home / "run" / "ray_worker.json").read_text())
        os.kill(worker["pid"], signal.SIGKILL)
        killed_at = json.loads((home / "checkpoint.json").read_text())["steps"]
        assert on_ray.wait(timeout=180) == 0, on_ray.stdout.read().decode() if on_ray.stdout else ""
        assert local.wait(timeout=180) == 0
    finally:
        for process in (on_ray, local):
            if process.poll() is None:
                process.kill()
                process.wait()
    output = on_ray.stdout.read().decode() if on_ray.stdout else ""
    assert f"connected to the Ray cluster at {cluster}" in output

    # Every run finished, once, in --out's usual layout; the checkpoint directory is empty again.
    for run_id in ("Pendulum-v1__TD3__seed0", KILLED):
        assert sorted(p.name for p in (out / "runs" / run_id).iterdir()) == [
            "config.json", "done.json", "evaluations.csv", "log.txt",
        ]  # fmt: skip
    assert sorted(row["run_id"] for row in _rows(out / "runs.csv")) == sorted(
        row["run_id"] for row in _rows(tmp_path / "local" / "runs.csv")
    )
    assert [p.name for p in checkpoints.iterdir()] == [".sb3-dst-ray"]

    # The killed run resumed from its checkpoint in a new worker process; the runs used both nodes.
    logs = {run_id: (out / "runs" / run_id / "log.txt").read_text() for run_id in ("Pendulum-v1__TD3__seed0", KILLED)}
    attempts = [line for text in logs.values() for line in text.splitlines() if line.startswith("attempt on node")]
    assert len(attempts) == 3 and logs[KILLED].count("attempt on node") == 2
    assert f"process {worker['pid']}" in logs[KILLED] and f"resuming from checkpoint_{killed_at}" in logs[KILLED]
    assert len({line.split("node id ")[1].split(")")[0] for line in attempts}) == 2
    assert json.loads((out / "runs" / KILLED / "done.json").read_text())["resumed_at"] == [killed_at]

    # Results equal the local run's, bit for bit.
    for run_id in logs:
        on_ray_done, local_done = (
            json.loads((root / "runs" / run_id / "done.json").read_text()) for root in (out, tmp_path / "local")
        )
        for key in DONE_KEYS:
            assert on_ray_done[key] == local_done[key], (run_id, key)
        on_ray_rows, local_rows = (
            _rows(root / "runs" / run_id / "evaluations.csv") for root in (out, tmp_path / "local")
        )
        assert [int(r["timesteps"]) for r in on_ray_rows] == [300, 600, 900, 1200]
        assert [[r[c] for c in DETERMINISTIC_COLUMNS] for r in on_ray_rows] == [
            [r[c] for c in DETERMINISTIC_COLUMNS] for r in local_rows
        ]

    # A second invocation finds everything finished: it does not even connect to the cluster.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    second = subprocess.run(
        [*cli, *argv[len(ARGS) :]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    said = " ".join(second.stderr.split())  # rich wraps long lines
    assert "2 finished (skipped), 0 to run" in said and "connected to" not in said
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps


def test_a_run_that_fails_on_its_own_is_reported_once_not_retried(
    cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configuration that breaks inside the run (an environment that does not exist, past the checks of the
    command line) fails once with its error; the good run next to it finishes."""
    from sb3_dst.benchmark.ray_backend import run_campaign_ray, stage_of
    from sb3_dst.benchmark.runner import plan_runs
    from sb3_dst.benchmark.specs import RunConfig

    (good,) = plan_runs(["TD3"], ["Pendulum-v1"], [0], 600, 300, 1, None, 200, [32, 32])
    bad = RunConfig.from_json({**good.to_json(), "env_id": "NoSuchEnv-v0"})
    checkpoints, out = tmp_path / "checkpoints", tmp_path / "out"
    failed = run_campaign_ray([bad, good], out, checkpoints, address=cluster, max_retries=3, checkpoint_freq=250)
    assert failed == 1
    err = " ".join(capsys.readouterr().err.split())
    assert err.count(f"FAILED {bad.run_id}") == 1 and "NameNotFound: Environment `NoSuchEnv` doesn't exist" in err
    log = (stage_of(checkpoints, bad) / "log.txt").read_text()
    assert log.count("attempt on node") == 1 and "NoSuchEnv" in log  # one attempt; its traceback kept
    assert not (out / "runs" / bad.run_id).exists()  # only finished runs reach --out
    assert (out / "runs" / good.run_id / "done.json").exists()
    assert not ray.is_initialized()
