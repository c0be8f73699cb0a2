"""The paper's hyperparameters as rl-zoo3 files, and where to find them.

The YAML files live in the repository's top-level ``hyperparams/`` folder; the wheel ships them inside this
package, so the lookup works after ``pip install .`` as well as from a source checkout or ``pip install -e .``.

``ds_td3.yml``, ``ds_sac.yml``, ``static_td3.yml``, ``static_sac.yml``, ``pruned_td3.yml`` and ``pruned_sac.yml`` are
the default files of those algorithms in rl-zoo3 (see :mod:`sb3_dst.zoo`), and so are the ``ds_``, ``static_`` and
``pruned_`` files of ``tqc``, ``crossq`` and ``ddpg`` (rl-zoo3's tuned values for the dense algorithm, see their
comments). ``td3.yml``, ``sac.yml``, ``tqc.yml``, ``crossq.yml`` and ``ddpg.yml`` hold the same settings for the
dense baselines; rl-zoo3's own files stay the defaults of ``--algo td3`` and the others, so ask for ours with
``-conf sb3_dst.hyperparams.td3`` (``.sac``, ``.tqc``, ``.crossq``, ``.ddpg``: modules defining ``hyperparams``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sb3_dst.families import FAMILIES

#: Algorithms with a hyperparameter file here: each family's three sparse versions and its dense algorithm
#: (:attr:`sb3_dst.families.Family.hyperparams_files`).
ALGOS_WITH_FILES: tuple[str, ...] = tuple(stem for family in FAMILIES for stem in family.hyperparams_files)


def hyperparams_dir() -> Path:
    """Folder holding the YAML files: this package in a wheel, else the repository's ``hyperparams/``."""
    here = Path(__file__).resolve().parent
    for folder in (here, here.parent.parent / "hyperparams"):
        if (folder / "ds_td3.yml").is_file():
            return folder
    raise FileNotFoundError(f"sb3-dst's hyperparameter files are missing: looked in {here} and {here.parent.parent}")


def hyperparams_file(algo: str) -> Path:
    """Path of the YAML file of ``algo`` (one of :data:`ALGOS_WITH_FILES`)."""
    if algo not in ALGOS_WITH_FILES:
        raise ValueError(f"sb3-dst has no hyperparameter file for {algo!r}; it has {', '.join(ALGOS_WITH_FILES)}")
    return hyperparams_dir() / f"{algo}.yml"


def load(algo: str) -> dict[str, dict[str, Any]]:
    """The entries of ``algo``'s file, keyed by environment id (and ``default``)."""
    with open(hyperparams_file(algo)) as file:
        return yaml.safe_load(file)


#: The paper's target update of its sparse SAC (Appendix A): a hard copy, tau = 1, every 1000 gradient steps.
PAPER_SAC_TARGET_UPDATE: dict[str, Any] = {"tau": 1.0, "target_update_interval": 1000}


def with_paper_target_update(algo: str) -> dict[str, dict[str, Any]]:
    """The entries of ``algo``'s file (a SAC variant) with the paper's hard target update
    (:data:`PAPER_SAC_TARGET_UPDATE`) in place of the file's soft one; every other key as in the file."""
    return {env_id: {**entry, **PAPER_SAC_TARGET_UPDATE} for env_id, entry in load(algo).items()}
