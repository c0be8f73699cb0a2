"""Optuna storages: a local journal by default, databases with heartbeats and retries."""

import importlib.util
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

#: Environment variables that tune the heartbeat of database storages (seconds, seconds, count).
HEARTBEAT_ENV = "SB3_DST_HEARTBEAT_INTERVAL"
GRACE_PERIOD_ENV = "SB3_DST_GRACE_PERIOD"
MAX_RETRY_ENV = "SB3_DST_MAX_RETRY"
DEFAULT_HEARTBEAT_INTERVAL = 60
DEFAULT_MAX_RETRY = 2
#: Attempts to open a database storage when workers started together race to create Optuna's tables.
STORAGE_ATTEMPTS = 4


# --------------------------------------------------------------------------------------------------------------
# Optuna: storages
# --------------------------------------------------------------------------------------------------------------


def default_storage(log_folder: str, algo: str, env_id: str) -> str:
    """Local journal file of a study when ``--storage`` is not given: ``{log_folder}/{algo}/optuna/{env}.log``."""
    return str(Path(log_folder) / algo / "optuna" / f"{env_id.replace('/', '_')}.log")


def default_study_name(algo: str, env_id: str) -> str:
    """Study name used with :func:`default_storage` when ``--study-name`` is not given."""
    return f"{algo}_{env_id}"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


class HeartbeatRDBStorage(optuna.storages.RDBStorage):
    """Optuna database storage with heartbeats, handed to rl-zoo3 in place of the ``--storage`` URL.

    Every running trial records a heartbeat; a trial whose worker stopped beating (killed, machine lost) for
    longer than the grace period is marked failed by the next worker that starts a trial, and retried (once per
    failure, up to ``max_retry`` times) with the same parameters.

    It answers ``endswith`` like a string because rl-zoo3 tests ``storage.endswith(".log")`` to recognise
    journal files; a database URL never ends so.
    """

    def endswith(self, suffix: str | tuple[str, ...]) -> bool:
        return False

    def __str__(self) -> str:
        return _hide_password(self.url)


def _hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def database_url(url: str) -> str:
    """``url`` with an explicit PostgreSQL driver when it names none (``postgresql://...``).

    SQLAlchemy's default driver for ``postgresql://`` changed from psycopg2 (before 2.1) to psycopg 3; this picks
    whichever is installed (psycopg first), so the same command works with either. Other URLs are unchanged.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("postgresql", "postgres"):
        return url
    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"{dialect}://{rest}"
    return url


def make_heartbeat_storage(url: str) -> HeartbeatRDBStorage:
    """Database storage for ``url`` with heartbeats and retries, configured by environment variables.

    ``SB3_DST_HEARTBEAT_INTERVAL`` (seconds, default 60), ``SB3_DST_GRACE_PERIOD`` (seconds without heartbeat
    before a running trial counts as dead, default 4 intervals) and ``SB3_DST_MAX_RETRY`` (retries of a dead
    trial, default 2; 0 disables retries).
    """
    interval = _env_int(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_INTERVAL)
    grace = _env_int(GRACE_PERIOD_ENV, 4 * interval)
    max_retry = _env_int(MAX_RETRY_ENV, DEFAULT_MAX_RETRY)
    if interval <= 0 or grace <= 0 or max_retry < 0:
        raise ValueError(f"{HEARTBEAT_ENV} and {GRACE_PERIOD_ENV} must be > 0 and {MAX_RETRY_ENV} >= 0")
    kwargs: dict[str, Any] = {}
    with warnings.catch_warnings():  # heartbeats and retries are marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if max_retry > 0:
            retry_class = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
            if retry_class is not None:
                kwargs["heartbeat_stale_trial_callback"] = retry_class(max_retry=max_retry)
            else:  # Optuna < 4.9 names it differently
                kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=max_retry)
    import sqlalchemy.exc

    for attempt in range(STORAGE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return HeartbeatRDBStorage(
                    database_url(url),
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=interval,
                    grace_period=grace,
                    **kwargs,
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Workers started together on an empty database race to create Optuna's tables; the loser sees
            # a duplicate table/type/row. The tables exist a moment later: try again (bounded).
            if attempt == STORAGE_ATTEMPTS - 1:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")
