"""Start-up hook that makes sb3-dst's algorithms known to rl-zoo3 with no extra step.

``sb3_dst_zoo.pth`` (installed at the root of site-packages) imports this module when the interpreter
starts. It must stay cheap: it imports nothing heavy (no torch, no Stable-Baselines3, no sb3_dst) and only
puts a finder on :data:`sys.meta_path`. When one of rl-zoo3's modules below is imported later, the finder lets
the normal machinery load it and then hands the fresh module to :func:`sb3_dst.zoo.patch_module`, which adds
sb3-dst's algorithms (``ds_td3``, ``static_td3``, ``pruned_td3`` and their ``sac``, ``tqc``, ``crossq`` and
``ddpg`` versions, e.g. ``ds_tqc``: every name of ``sb3_dst.zoo.ZOO_ALGOS``) to
``rl_zoo3.utils.ALGOS`` (before ``train.py`` builds its ``--algo`` choices), their Optuna samplers to
``rl_zoo3.hyperparams_opt`` and their defaults to the ``ExperimentManager`` (and makes ``rl_zoo3.push_to_hub``
importable with the installed ``huggingface_sb3``).

Set ``SB3_DST_NO_ZOO_HOOK=1`` to switch it off. A failure while patching is reported on stderr and never
breaks rl-zoo3 itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

#: Modules that sb3_dst.zoo patches right after they are executed: rl-zoo3's, and huggingface_sb3's push_to_hub
#: (which ``python -m rl_zoo3.push_to_hub`` imports before any rl-zoo3 module).
TARGETS = frozenset({"rl_zoo3.utils", "rl_zoo3.hyperparams_opt", "rl_zoo3.exp_manager", "huggingface_sb3.push_to_hub"})


def _patch(module: ModuleType) -> None:
    try:
        from sb3_dst.zoo import patch_module

        patch_module(module)
    except Exception as error:  # never break rl-zoo3 because of the plugin
        print(
            f"sb3-dst: could not register its algorithms with {module.__name__} ({type(error).__name__}: {error}); "
            "`python -m sb3_dst.train` gives the full error.",
            file=sys.stderr,
        )


class RLZooFinder:
    """Meta-path finder that defers to the other finders and wraps ``exec_module`` of the target modules."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_patch(module: ModuleType) -> None:
            exec_module(module)
            _patch(module)

        # The loader object belongs to this one module: shadow its method on the instance only.
        loader.exec_module = exec_then_patch  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if os.environ.get("SB3_DST_NO_ZOO_HOOK", "").strip() not in ("", "0"):
        return
    if not any(type(finder).__name__ == RLZooFinder.__name__ for finder in sys.meta_path):
        sys.meta_path.insert(0, RLZooFinder())


install()
