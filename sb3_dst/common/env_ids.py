"""MuJoCo v2/v3 environment ids: an early, explained refusal naming the v4/v5 ids to use instead.

Used by the algorithms' constructors (an id given as ``env``) and by the rl-zoo3 integration (``--env``), so both
paths give the same message rather than gymnasium's import error about mujoco-py / gymnasium-robotics.
"""

import importlib.util
import re


class MujocoPyRequiredError(ValueError):
    """A MuJoCo v2/v3 environment id was asked for, and gymnasium cannot make it without mujoco-py."""


_OLD_MUJOCO_ENTRY_POINT = re.compile(r"\.mujoco\.\w+_v[23]\b")


def _needs_mujoco_py(entry_point: object) -> bool:
    if callable(entry_point):  # gymnasium >= 1.0 registers a function that raises
        name = getattr(entry_point, "__name__", "")
        return "mujoco_py" in name
    # gymnasium < 1.0: the v2/v3 classes import mujoco_py
    return bool(_OLD_MUJOCO_ENTRY_POINT.search(str(entry_point))) and importlib.util.find_spec("mujoco_py") is None


def check_env_id(env_id: str) -> None:
    """Refuse a MuJoCo v2/v3 id that gymnasium cannot make here, naming the v4/v5 ids to use instead.

    Nothing is substituted: the user chooses. Ids that are not registered are left to rl-zoo3's own check.

    :raises MujocoPyRequiredError: for ``Walker2d-v3`` and the like when mujoco-py is not available.
    """
    import gymnasium as gym

    spec = gym.envs.registry.get(env_id)
    if spec is None or not _needs_mujoco_py(spec.entry_point):
        return
    name = spec.name if spec.namespace is None else f"{spec.namespace}/{spec.name}"
    alternatives = [f"{name}-v{v}" for v in (4, 5) if f"{name}-v{v}" in gym.envs.registry]
    suggestion = " or ".join(alternatives) if alternatives else "a v4 or v5 MuJoCo id"
    raise MujocoPyRequiredError(
        f"{env_id} is a MuJoCo v{spec.version} environment: gymnasium can make it only with mujoco-py and the "
        f"MuJoCo 2.1 binaries, which are not installed here (and no longer maintained). Use {suggestion} "
        "instead: v4 has the v3 model and reward on the maintained `mujoco` bindings, v5 is the current version, "
        "and sb3-dst's hyperparameter files have entries for both. Nothing was substituted."
    )
