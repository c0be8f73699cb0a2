"""The algorithm families: one row per dense algorithm that sb3-dst trains sparse.

Each :class:`Family` names the dense class and the package of its three sparse versions (``DS``: dynamic sparse
training, the paper's; ``Static``: a fixed random sparse topology; ``Pruned``: dense to sparse by gradual magnitude
pruning), and from it follow their class names, rl-zoo3 names, benchmark-harness names and hyperparameter files:

========  ===================  ====================================  ============================================
family    classes              rl-zoo3 names (and YAML files)        harness names
========  ===================  ====================================  ============================================
TD3       DSTD3, StaticTD3,    ds_td3, static_td3, pruned_td3 (and   TD3, Static-TD3, DS-TD3, Pruned-TD3
          PrunedTD3            td3.yml for the dense baseline)
========  ===================  ====================================  ============================================

and likewise for SAC, DDPG, TQC and CrossQ. Each row also says what the samplers, the harness and the tests need
to know of the algorithm: its actor (deterministic or Gaussian), its target-update schedule (:class:`TargetUpdate`),
its critics, its default network.

Everything that lists algorithms is derived from :data:`FAMILIES`: the rl-zoo3 registry
(:mod:`sb3_dst.zoo.registry`), the Optuna samplers (:mod:`sb3_dst.zoo.samplers`), the harness's algorithm names
(:mod:`sb3_dst.benchmark.specs`), the hyperparameter files (:mod:`sb3_dst.hyperparams`) and the tests' algorithm
lists. A new family is its package, one row here and its YAML files (``docs/adding_a_family.md``).

Classes are named by strings and imported on demand (:meth:`Family.cls`): this module imports nothing, so that
reading the table stays as light as ``import sb3_dst``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FAMILIES", "VARIANTS", "Family", "TargetUpdate", "by_harness_name", "by_zoo_name", "resolve"]

#: A sparse version: ``"ds"`` (dynamic sparse training), ``"static"`` or ``"pruned"``.
Variant = Literal["ds", "static", "pruned"]
#: The sparse versions of each family, in the harness's order (after the dense algorithm): prefix of the class
#: name, of the rl-zoo3 name (lower case, ``ds_td3``) and of the harness name (``DS-TD3``).
VARIANTS: dict[Variant, tuple[str, str, str]] = {
    "static": ("Static", "static_", "Static-"),
    "ds": ("DS", "ds_", "DS-"),
    "pruned": ("Pruned", "pruned_", "Pruned-"),
}


@dataclass(frozen=True)
class TargetUpdate:
    """When an algorithm updates its target networks (a Polyak update with ``tau``, then Algorithm 3's pruning of
    each sparse target layer to its online layer's connection count).

    :param networks: the networks with a target, in the order they are updated (empty: no target networks).
    :param interval: the attribute holding the interval in gradient steps (``policy_delay`` for TD3 and DDPG,
        whose DDPG is 1; ``target_update_interval`` for SAC and TQC); ``None`` without targets.
    :param counted: ``"global"``: at every gradient step whose global count (``_n_updates``) is a multiple of the
        interval; ``"per_call"``: whose index inside one ``train()`` call is (sb3-contrib's TQC, so that
        ``gradient_steps=1`` updates at every step whatever the interval).
    """

    networks: tuple[str, ...] = ()
    interval: str | None = None
    counted: Literal["global", "per_call"] = "global"

    def updates(self, n_updates: int, interval: int, gradient_steps: int = 1) -> list[str]:
        """The target updates, in order, of ``n_updates`` gradient steps run ``gradient_steps`` per ``train()``."""
        done: list[str] = []
        for step in range(1, n_updates + 1):
            index = (step - 1) % gradient_steps if self.counted == "per_call" else step
            if self.networks and index % interval == 0:
                done += self.networks
        return done


@dataclass(frozen=True)
class Family:
    """One dense algorithm and its three sparse versions.

    :param name: the dense algorithm's name, as in the harness (``"TD3"``); the sparse classes are ``DS<name>``,
        ``Static<name>`` and ``Pruned<name>``, the harness names ``DS-<name>``, ``Static-<name>``, ``Pruned-<name>``.
    :param dense: ``module:Class`` of the dense algorithm (``"stable_baselines3:TD3"``).
    :param package: the module defining the sparse classes (``"sb3_dst.dstd3"``).
    :param stem: the rl-zoo3 name of the dense algorithm (``"td3"``); the sparse ones are ``ds_<stem>``,
        ``static_<stem>``, ``pruned_<stem>``, and ``hyperparams/<zoo name>.yml`` holds each one's settings.
    :param actor: ``"deterministic"`` (TD3, DDPG: Gaussian exploration noise, the TD3 sampler) or ``"gaussian"``
        (SAC, TQC, CrossQ: a squashed Gaussian with an entropy coefficient, the SAC sampler).
    :param target_update: the target-update schedule.
    :param policy_smoothing: TD3's delayed policy updates and target policy smoothing are hyperparameters
        (``policy_delay``, ``target_policy_noise``; DDPG has neither and refuses them).
    :param quantile_critics: the critics output ``n_quantiles`` values (TQC), not one.
    :param critics: the number of Q-networks with the default ``policy_kwargs``.
    :param default_net_arch: the network built when ``policy_kwargs`` gives no ``net_arch``.
    :param per_layer_lambda: an Optuna search samples λ per layer; False: one ``sparsity`` level (CrossQ, whose
        critics are much wider than its actor, which one λ list shared by both would not fit).
    """

    name: str
    dense: str
    package: str
    stem: str
    actor: Literal["deterministic", "gaussian"]
    target_update: TargetUpdate
    policy_smoothing: bool = False
    quantile_critics: bool = False
    critics: int = 2
    default_net_arch: Any = (256, 256)
    per_layer_lambda: bool = True

    def class_name(self, variant: Variant) -> str:
        """``DSTD3``, ``StaticTD3``, ``PrunedTD3``."""
        return VARIANTS[variant][0] + self.name

    def zoo_name(self, variant: Variant | None = None) -> str:
        """``ds_td3``, ``static_td3``, ``pruned_td3``; the dense algorithm's (``td3``) for ``None``."""
        return self.stem if variant is None else VARIANTS[variant][1] + self.stem

    def harness_name(self, variant: Variant | None = None) -> str:
        """``DS-TD3``, ``Static-TD3``, ``Pruned-TD3``; the dense algorithm's (``TD3``) for ``None``."""
        return self.name if variant is None else VARIANTS[variant][2] + self.name

    def class_path(self, variant: Variant | None = None) -> str:
        """``module:Class`` of a sparse version, or of the dense algorithm for ``None``."""
        return self.dense if variant is None else f"{self.package}:{self.class_name(variant)}"

    def cls(self, variant: Variant | None = None) -> type:
        """The class of a sparse version, or the dense algorithm for ``None`` (imported now)."""
        return resolve(self.class_path(variant))

    @property
    def has_targets(self) -> bool:
        return bool(self.target_update.networks)

    @property
    def hyperparams_files(self) -> tuple[str, ...]:
        """The stems of this family's YAML files: the three sparse versions', then the dense algorithm's."""
        return (*(self.zoo_name(variant) for variant in VARIANTS), self.stem)


def resolve(path: str) -> type:
    """The object named by ``module:attribute``."""
    module, _, attribute = path.partition(":")
    value: type = getattr(importlib.import_module(module), attribute)
    return value


_TD3_TARGETS = TargetUpdate(("critic", "actor"), "policy_delay")

#: The families, in the order the harness lists and reports them.
FAMILIES: list[Family] = [
    Family("TD3", "stable_baselines3:TD3", "sb3_dst.dstd3", "td3", "deterministic", _TD3_TARGETS,
           policy_smoothing=True),
    Family("SAC", "stable_baselines3:SAC", "sb3_dst.dssac", "sac", "gaussian",
           TargetUpdate(("critic",), "target_update_interval")),
    Family("DDPG", "stable_baselines3:DDPG", "sb3_dst.dsddpg", "ddpg", "deterministic", _TD3_TARGETS,
           critics=1),
    Family("TQC", "sb3_contrib:TQC", "sb3_dst.dstqc", "tqc", "gaussian",
           TargetUpdate(("critic",), "target_update_interval", counted="per_call"), quantile_critics=True),
    Family("CrossQ", "sb3_contrib:CrossQ", "sb3_dst.dscrossq", "crossq", "gaussian", TargetUpdate(),
           default_net_arch={"pi": (256, 256), "qf": (1024, 1024)}, per_layer_lambda=False),
]  # fmt: skip


def by_zoo_name(name: str) -> Family:
    """The family of an rl-zoo3 name (``ds_td3``, ``td3``)."""
    for family in FAMILIES:
        if name == family.stem or any(name == family.zoo_name(variant) for variant in VARIANTS):
            return family
    raise KeyError(f"no algorithm family has the rl-zoo3 name {name!r}")


def by_harness_name(name: str) -> Family:
    """The family of a harness name (``DS-TD3``, ``TD3``)."""
    for family in FAMILIES:
        if name == family.name or any(name == family.harness_name(variant) for variant in VARIANTS):
            return family
    raise KeyError(f"no algorithm family has the harness name {name!r}")
