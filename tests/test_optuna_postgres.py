"""A distributed Optuna sweep on a real PostgreSQL server survives a worker killed in the middle of a trial.

The test starts its own server (``initdb`` in a temporary folder, listening on 127.0.0.1 only, on a free port),
runs two ``python -m rl_zoo3.train --algo ds_td3 -optimize`` workers on one study, kills one with SIGKILL while
it runs a trial, and checks that the other finishes all its trials, that every completed trial is in the
database, and that the killed trial is marked failed by the heartbeat (and retried by the survivor).

It needs PostgreSQL's server binaries (Debian: ``apt-get install postgresql``, done by ``.ci/run``) and the
``psycopg`` driver (the ``postgres`` extra). Without the binaries it is skipped, except under CI where it fails.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc

from sb3_dst import DSTD3
from sb3_dst.zoo import PRUNED_REASON_ATTR, WORKER_ATTR, database_url

STUDY = "ds_td3_pendulum_shared"
WORKER_TRIALS = 5  # trials of the surviving worker: long enough to outlive the dead one's grace period
HEARTBEAT = {"SB3_DST_HEARTBEAT_INTERVAL": "1", "SB3_DST_GRACE_PERIOD": "3", "SB3_DST_MAX_RETRY": "1"}


def _server_binaries() -> dict[str, str] | None:
    """``initdb`` and ``pg_ctl``: from PATH, else the newest Debian cluster version."""
    found = {name: shutil.which(name) for name in ("initdb", "pg_ctl")}
    if all(found.values()):
        return {name: str(path) for name, path in found.items()}
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        paths = {name: os.path.join(bindir, name) for name in ("initdb", "pg_ctl")}
        if all(os.access(path, os.X_OK) for path in paths.values()):
            return paths
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (run as the ``postgres`` user when we are root)."""

    def __init__(self, binaries: dict[str, str]) -> None:
        self.binaries = binaries
        self.root = Path(tempfile.mkdtemp(prefix="sb3dst-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # the server refuses to run as root
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no `postgres` user to run the server as")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql://sb3dst@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        process = subprocess.run(
            [*self.as_user, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )
        assert process.returncode == 0, f"{' '.join(args)} failed:\n{process.stdout}\n{self.log()}"

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def start(self) -> None:
        self._run(self.binaries["initdb"], "-D", str(self.data), "-U", "sb3dst", "--auth=trust", "-E", "UTF8")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(
            self.binaries["pg_ctl"], "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self.as_user, self.binaries["pg_ctl"], "-D", str(self.data), "-m", "immediate", "-w", "-t", "30",
                 "stop"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False,
            )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    binaries = _server_binaries()
    if binaries is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found; `apt-get install postgresql` (.ci/run does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    if database_url("postgresql://") == "postgresql://":
        pytest.fail("no PostgreSQL driver: install the postgres extra (`pip install sb3-dst[postgres]`)")
    server = PostgresServer(binaries)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _worker_env() -> dict[str, str]:
    return {**os.environ, **HEARTBEAT, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _worker(url: str, folder: Path, n_trials: int, seed: int) -> subprocess.Popen:
    """One sweep worker, started as docs/zoo.md ("Tuning on several machines") tells users to on each machine."""
    command = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ds_td3", "--env", "Pendulum-v1", "-optimize",
        "--storage", url, "--study-name", STUDY, "--n-trials", str(n_trials), "-f", str(folder),
        "--sampler", "random", "--pruner", "none", "--n-evaluations", "1", "--eval-episodes", "1",
        "--no-optim-plots", "--num-threads", "1", "--seed", str(seed),
        "-params", "n_timesteps:800", "learning_starts:200", "policy_kwargs:dict(net_arch=[32, 32])",
    ]  # fmt: skip
    with open(folder.with_suffix(".out"), "w") as log:  # the child keeps its own copy of the file
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_worker_env())


def _output(folder: Path) -> str:
    return folder.with_suffix(".out").read_text()


class _Reader:
    """Reads the study through one storage, opened once the workers have created Optuna's tables."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.storage: optuna.storages.RDBStorage | None = None

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        try:
            if self.storage is None:
                self.storage = optuna.storages.RDBStorage(database_url(self.url), skip_table_creation=True)
            return optuna.load_study(study_name=STUDY, storage=self.storage).trials
        except (KeyError, sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):  # not created yet
            self.storage = None
            return []


def test_killed_worker_trial_is_failed_and_the_other_worker_finishes(postgres: PostgresServer, tmp_path: Path):
    survivor = _worker(postgres.url, tmp_path / "survivor", WORKER_TRIALS, seed=1)
    victim = _worker(postgres.url, tmp_path / "victim", 50, seed=2)
    workers = [survivor, victim]
    reader = _Reader(postgres.url)
    try:
        # Wait (bounded) until the victim is in the middle of a trial, past sampling (its last parameter, the
        # exploration noise, is in the storage: a kill during sampling would leave a partial parameter set for the
        # retry to complete), then kill it without warning.
        victim_tag = f":{victim.pid}"
        deadline = time.monotonic() + 180
        victim_trial = None
        while victim_trial is None:
            assert time.monotonic() < deadline, "the victim never started a trial:\n" + _output(tmp_path / "victim")
            assert victim.poll() is None, "the victim stopped early:\n" + _output(tmp_path / "victim")
            for trial in reader.trials():
                running = trial.state == optuna.trial.TrialState.RUNNING
                if (
                    running
                    and trial.user_attrs.get(WORKER_ATTR, "").endswith(victim_tag)
                    and "noise_std" in trial.params
                ):
                    victim_trial = trial.number
            time.sleep(0.2)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)

        returncode = survivor.wait(timeout=300)
        out = _output(tmp_path / "survivor")
        assert returncode == 0, out[-5000:]
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)

    trials = {trial.number: trial for trial in reader.trials()}
    states = {number: trial.state for number, trial in trials.items()}
    # The killed trial was failed by the heartbeat, not left running.
    assert states[victim_trial] == optuna.trial.TrialState.FAIL, states
    assert optuna.trial.TrialState.RUNNING not in states.values(), states
    # The survivor ran all its trials, one of them the retry of the killed trial, and each is in the database.
    mine = [t for t in trials.values() if t.user_attrs.get(WORKER_ATTR, "").endswith(f":{survivor.pid}")]
    assert len(mine) == WORKER_TRIALS, states
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in mine), [
        (t.number, t.state, t.user_attrs.get(PRUNED_REASON_ATTR)) for t in mine
    ]
    finished = {int(line.split("Trial ")[1].split()[0]) for line in out.splitlines() if " finished with value" in line}
    assert finished == {t.number for t in mine}
    assert all(trials[n].value is not None and trials[n].params for n in finished)
    retries = [t for t in mine if t.system_attrs.get("failed_trial") == victim_trial]
    assert len(retries) == 1 and retries[0].params == trials[victim_trial].params
    # The end-of-study report (pandas) was written.
    assert list((tmp_path / "survivor" / "ds_td3").glob("report_Pendulum-v1_*.csv"))

    # Any machine can then train with a trial of the shared study.
    chosen = retries[0]
    command = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ds_td3", "--env", "Pendulum-v1", "--storage", postgres.url,
        "--study-name", STUDY, "--trial-id", str(chosen.number), "-f", str(tmp_path / "final"), "--eval-freq", "-1",
        "--num-threads", "1", "-params", "n_timesteps:250", "learning_starts:200",
        "policy_kwargs:dict(net_arch=[32, 32])",
    ]  # fmt: skip
    process = subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, env=_worker_env()
    )
    assert process.returncode == 0, process.stdout[-5000:]
    model = DSTD3.load(tmp_path / "final" / "ds_td3" / "Pendulum-v1_1" / "Pendulum-v1.zip", device="cpu")
    assert model.er_lambda == [chosen.params["er_lambda_1"], chosen.params["er_lambda_2"]]
    assert model.drop_fraction == chosen.params["drop_fraction"]
