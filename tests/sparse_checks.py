"""The algorithm lists of the tests, from the family table (:data:`sb3_dst.families.FAMILIES`), and the checks that
every sparse algorithm shares: connection counts, absent weights, targets."""

from __future__ import annotations

import torch as th

from sb3_dst.common.masking import MASK_NAME, sparse_layers, sparse_linears
from sb3_dst.families import FAMILIES, Family

#: Every family's sparse versions.
DYNAMIC = [family.cls("ds") for family in FAMILIES]
STATIC = [family.cls("static") for family in FAMILIES]
PRUNED = [family.cls("pruned") for family in FAMILIES]
ALL = DYNAMIC + STATIC + PRUNED


def family_of(algo: type) -> Family:
    """The family row of a sparse class."""
    return next(family for family in FAMILIES for variant in ("ds", "static", "pruned") if family.cls(variant) is algo)


def with_targets(algos: list[type]) -> list[type]:
    """Those of ``algos`` whose family has target networks."""
    return [algo for algo in algos if family_of(algo).has_targets]


def topology_kwargs(algo: type) -> dict:
    """An evolution every 20 gradient steps (DS), or pruning from step 10 to 60 every 10 steps (Pruned)."""
    if algo.topology_mode == "evolve":
        return dict(evolution_interval=20)
    if algo.topology_mode == "prune":
        return dict(evolution_interval=10, pruning_start=10, pruning_end=60)
    return {}


def connection_counts(model) -> list[int]:
    return [int(getattr(x, MASK_NAME).sum()) for x in sparse_linears(model.actor) + sparse_linears(model.critic)]


def target_pairs(model) -> list[tuple[th.nn.Linear, th.nn.Linear]]:
    """(online, target) sparse layers (convolutions included) of every network that has a target."""
    pairs = []
    for online, target in (("critic", "critic_target"), ("actor", "actor_target")):
        if getattr(model, target, None) is not None:
            online_layers, target_layers = sparse_layers(getattr(model, online)), sparse_layers(getattr(model, target))
            pairs += list(zip(online_layers, target_layers, strict=True))
    return pairs


def masks(model) -> dict[str, th.Tensor]:
    return {k: v.clone() for k, v in model.policy.state_dict().items() if k.endswith(MASK_NAME)}


def assert_absent_weights_zero(model) -> None:
    """Absent weights of the online networks (convolutions included) are exactly zero."""
    for layer in sparse_layers(model.actor) + sparse_layers(model.critic):
        assert bool((layer.weight[getattr(layer, MASK_NAME) == 0] == 0).all())


def assert_targets_hold_k(model) -> None:
    """Algorithm 3: each sparse target layer has exactly as many non-zeros as its online layer has connections."""
    for online, target in target_pairs(model):
        assert int(th.count_nonzero(target.weight)) == int(getattr(online, MASK_NAME).sum())


def assert_sparse_and_targets_match(model) -> None:
    """Absent online weights are exactly zero; each sparse target layer has as many non-zeros as its online one."""
    assert_absent_weights_zero(model)
    assert_targets_hold_k(model)
