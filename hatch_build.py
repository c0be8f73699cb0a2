"""Hatchling build hook: what an editable install copies into site-packages.

A wheel gets the whole ``force-include`` table of pyproject.toml: the zoo's YAML files inside the package and
the rl-zoo3 start-up hook (``zoo_hook/``) at the root of site-packages. An editable install reads the YAML files
from the checkout (:func:`sb3_dst.hyperparams.hyperparams_dir`), so it copies only the start-up hook; copying
the YAML files too would leave a stray, never-read ``sb3_dst/hyperparams/`` folder in site-packages.
"""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class EditableStartupHook(BuildHookInterface):
    """Force-include only the files under ``zoo_hook/`` in editable builds."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version != "editable":
            return
        force_include = self.build_config.target_config.get("force-include", {})
        build_data["force_include_editable"] = {
            source: target for source, target in force_include.items() if source.startswith("zoo_hook/")
        }
