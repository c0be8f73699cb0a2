"""The files of a benchmark run directory, and how they are written: shared by the worker, its checkpoints, the
scheduler and the report (no dependency on the rest of the harness).

What each file holds is described in :mod:`sb3_dst.benchmark.worker`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["CONFIG", "DONE", "EVALUATIONS", "LOG", "PROGRESS", "read_json", "write_json_atomic", "write_text_atomic"]

CONFIG, EVALUATIONS, PROGRESS, DONE, LOG = "config.json", "evaluations.csv", "progress.json", "done.json", "log.txt"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader, or an interruption, never leaves a half-written file: the old
    file stays whole until the new one is complete on disk."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON (keys sorted) to ``path`` with :func:`write_text_atomic`."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True))


def read_json(path: Path, hint: str = "") -> Any:
    """The JSON in ``path``; a corrupt file raises ``ValueError`` naming it (then ``hint``, e.g. what to do)."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}){hint}") from error
