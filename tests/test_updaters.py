"""Topology updaters (issue #28, part 3): Evolve, Static and Prune own their keywords, schedule and step.

The bit-for-bit check of the refactor: small DS/Static/Pruned models trained a few hundred gradient steps on
Pendulum-v1 end with the same parameters, masks and optimizer state as before it (digests recorded on main at
f9af121, before the updaters existed).

``python tests/test_updaters.py`` prints the digests of the current code (how :data:`REFERENCE` was made; run it
with ``PYTHONPATH`` pointing at an older ``sb3_dst`` to compare another version).
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import gymnasium as gym
import pytest
import torch as th

import sb3_dst

#: Tiny networks and an early start: 250 gradient steps of 300 environment steps take about a second.
TINY: dict[str, Any] = dict(
    policy_kwargs=dict(net_arch=[32, 32]), sparsity=0.8, learning_starts=50, batch_size=32, buffer_size=1000
)
EVOLVE = dict(evolution_interval=25)
PRUNE = dict(evolution_interval=25, pruning_start=25, pruning_end=200)

#: name -> (algorithm, keywords). Every updater, both growth criteria, both η schedules, both target prunings,
#: and each algorithm family once.
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "DSTD3": ("DSTD3", EVOLVE),
    "DSTD3-gradient-cosine": ("DSTD3", dict(EVOLVE, growth="gradient", drop_fraction_schedule="cosine")),
    "DSTD3-online-mask-end": ("DSTD3", dict(EVOLVE, target_pruning="online_mask", evolution_end=150)),
    "StaticTD3": ("StaticTD3", {}),
    "PrunedTD3": ("PrunedTD3", PRUNE),
    "PrunedTD3-default-window": ("PrunedTD3", dict(evolution_interval=25)),
    "DSSAC": ("DSSAC", EVOLVE),
    "DSSAC-gradient": ("DSSAC", dict(EVOLVE, growth="gradient", drop_fraction=0.3)),
    "StaticSAC": ("StaticSAC", {}),
    "PrunedSAC": ("PrunedSAC", PRUNE),
    "DSDDPG": ("DSDDPG", EVOLVE),
    "PrunedDDPG": ("PrunedDDPG", PRUNE),
    "DSTQC": ("DSTQC", EVOLVE),
    "StaticTQC": ("StaticTQC", {}),
    "DSCrossQ": ("DSCrossQ", EVOLVE),
    "PrunedCrossQ": ("PrunedCrossQ", PRUNE),
}

#: Cases also run with a save and load half-way.
RELOADED = ("DSTD3-gradient-cosine", "StaticSAC", "PrunedTD3", "DSCrossQ")
#: Every digest: each case, then each reloaded one.
DIGESTS = [*CASES, *(f"{case}+reload" for case in RELOADED)]

#: Digests of :func:`run_digest` for each case, on main at f9af121 (before the updaters), with the masked backend.
REFERENCE: dict[str, str] = {
    "DSTD3": "d6f56c4830b60d85",
    "DSTD3-gradient-cosine": "83a5364142640f93",
    "DSTD3-online-mask-end": "54ae1ea08fb1c706",
    "StaticTD3": "f69e74d450bffe1e",
    "PrunedTD3": "88b8df046a37d04c",
    "PrunedTD3-default-window": "6c06a291f193c0b4",
    "DSSAC": "a79e51424b7afe88",
    "DSSAC-gradient": "1082c93655515550",
    "StaticSAC": "125209f6d0c06d4a",
    "PrunedSAC": "4a01988c485c3e4b",
    "DSDDPG": "7dabdabab23fd952",
    "PrunedDDPG": "e64bfdc3393ac416",
    "DSTQC": "e3b7af566d62b44d",
    "StaticTQC": "fa107f53616c0552",
    "DSCrossQ": "631bf84f526aa69d",
    "PrunedCrossQ": "d9836227d7dbcdce",
    "DSTD3-gradient-cosine+reload": "0ac7bd2958c24d03",
    "StaticSAC+reload": "843b760b050f3449",
    "PrunedTD3+reload": "ac664b1885561702",
    "DSCrossQ+reload": "bb74554ca8a88dc1",
}


def model_digest(model: Any) -> str:
    """SHA-256 (16 digits) of the policy's state dict (weights, masks, targets, batch-norm statistics), the
    optimizers' per-parameter state and the DST counters: equal digests mean bit-for-bit equal models."""
    sha = hashlib.sha256()
    for name, tensor in model.policy.state_dict().items():
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for attr in ("actor", "critic"):
        optimizer = getattr(model, attr).optimizer
        for group in optimizer.param_groups:
            for param in group["params"]:
                for key, value in sorted(optimizer.state.get(param, {}).items()):
                    sha.update(key.encode())
                    sha.update(th.as_tensor(value).detach().cpu().contiguous().numpy().tobytes())
    sha.update(repr((model._n_updates, model.num_evolutions, sorted(model.last_changed_fraction.items()))).encode())
    return sha.hexdigest()[:16]


def run_digest(digest: str, tmp_dir: str = ".") -> str:
    """Train the model of a case 300 environment steps (250 gradient steps) from seed 0 and digest it; a
    ``+reload`` one is saved to ``tmp_dir`` and loaded half-way (SB3 does not save random generators: it goes on
    from the load as it always did)."""
    case, _, reload = digest.partition("+")
    name, kwargs = CASES[case]
    algo = getattr(sb3_dst, name)
    th.manual_seed(0)
    tiny = {**TINY, "policy_kwargs": dict(TINY["policy_kwargs"])}  # SB3 writes into policy_kwargs
    model = algo("MlpPolicy", "Pendulum-v1", seed=0, sparse_backend="masked", **tiny, **kwargs)
    if not reload:
        model.learn(300)
    else:
        model.learn(150)
        model.save(f"{tmp_dir}/{case}.zip")
        model.save_replay_buffer(f"{tmp_dir}/{case}.pkl")
        model = algo.load(f"{tmp_dir}/{case}.zip", env=gym.make("Pendulum-v1"))
        model.load_replay_buffer(f"{tmp_dir}/{case}.pkl")
        model.learn(150, reset_num_timesteps=False)
    return model_digest(model)


# --- 1. bit for bit as before ---------------------------------------------------------------------------------


@pytest.mark.parametrize("digest", DIGESTS)
def test_training_is_bit_for_bit_as_before_the_updaters(digest: str, tmp_path) -> None:
    assert run_digest(digest, str(tmp_path)) == REFERENCE[digest]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        digests = {digest: run_digest(digest, tmp) for digest in (sys.argv[1:] or DIGESTS)}
    print(json.dumps(digests, indent=4))
