"""Topology updaters (issue #28, part 3): Evolve, Static and Prune own their keywords, schedule and step.

First the bit-for-bit check of the refactor: small DS/Static/Pruned models trained a few hundred gradient steps on
Pendulum-v1 end with the same parameters, masks and optimizer state as before it (digests recorded on main at
f9af121, before the updaters existed). Then unit tests of each updater.

``python tests/test_updaters.py`` prints the digests of the current code (how :data:`REFERENCE` was made; run it
with ``PYTHONPATH`` pointing at an older ``sb3_dst`` to compare another version).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import sb3_dst
from sb3_dst.common.masking import MASK_NAME

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


# --- 2. the updaters on their own -----------------------------------------------------------------------------


def sparse_linear(n_in: int = 12, n_out: int = 10, connections: int = 40, seed: int = 0) -> th.nn.Linear:
    from sb3_dst.common.masking import add_mask

    th.manual_seed(seed)
    layer = th.nn.Linear(n_in, n_out)
    add_mask(layer, connections)
    return layer


def adam_with_state(layers: list[th.nn.Linear]) -> th.optim.Adam:
    optimizer = th.optim.Adam([layer.weight for layer in layers], lr=1e-3)
    for layer in layers:
        layer.weight.grad = th.randn_like(layer.weight) * getattr(layer, MASK_NAME)
    optimizer.step()
    return optimizer


class RecordingTarget:
    """Stands for the Algorithm 3 state of a target copy: records what a step tells it."""

    def __init__(self, k: int):
        self.k, self.changed = k, []

    def mark_changed(self, positions: th.Tensor) -> None:
        self.changed.append(positions.clone())


def test_evolve_schedule_is_every_e_steps_up_to_evolution_end_with_constant_or_cosine_eta() -> None:
    from sb3_dst.common.updaters import Evolve

    constant = Evolve(drop_fraction=0.2, evolution_interval=10, evolution_end=35)
    due = [t for t in range(1, 60) if constant.schedule(horizon=100).due(t)]
    assert due == [10, 20, 30]
    assert {constant.drop_fraction_at(t, planned=100) for t in (0, 10, 99, 500)} == {0.2}
    cosine = Evolve(drop_fraction=0.2, drop_fraction_schedule="cosine")
    for t in (0, 250, 500, 1000, 2000):  # T: the run's planned gradient steps
        expected = 0.2 * 0.5 * (1 + math.cos(math.pi * min(t, 1000) / 1000))
        assert cosine.drop_fraction_at(t, planned=1000) == pytest.approx(expected)
    ended = Evolve(drop_fraction=0.2, drop_fraction_schedule="cosine", evolution_end=500)  # T = evolution_end
    assert ended.drop_fraction_at(250, planned=1000) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="pass evolution_end"):
        cosine.check_horizon("DSTD3", None)
    assert ended.check_horizon("DSTD3", None) is None and constant.check_horizon("DSTD3", None) is None


def test_prune_schedule_is_its_window_with_defaults_from_the_run() -> None:
    from sb3_dst.common.updaters import Prune

    default = Prune(evolution_interval=10)
    assert default.window(1000) == (200, 800) and default.window(None) == (0, 1)
    assert [t for t in range(1, 260) if default.schedule(1000).due(t)][:3] == [200, 210, 220]
    given = Prune(evolution_interval=10, pruning_start=30, pruning_end=95)
    assert given.window(None) == (30, 95)
    assert given.check_horizon("PrunedTD3", 100) is None  # last pruning step 100 <= 100
    assert "ends at gradient step 99" in str(given.check_horizon("PrunedTD3", 99))
    with pytest.raises(ValueError, match="pass pruning_start and pruning_end"):
        default.check_horizon("PrunedTD3", None)


def test_static_never_changes_anything() -> None:
    from sb3_dst.common.updaters import Static

    layer = sparse_linear()
    optimizer = adam_with_state([layer])
    before = (layer.weight.detach().clone(), getattr(layer, MASK_NAME).clone())
    state = {k: v.clone() for k, v in optimizer.state[layer.weight].items()}
    static = Static()
    assert not any(static.schedule(1000).due(t) for t in range(0, 5000, 7))
    target = RecordingTarget(40)
    result = static.step("critic", [layer], [[target]], optimizer, t=1000, horizon=1000)
    assert (result.fraction, result.touched) == (0.0, False) and target.changed == []
    assert th.equal(layer.weight, before[0]) and th.equal(getattr(layer, MASK_NAME), before[1])
    assert all(th.equal(v, optimizer.state[layer.weight][k]) for k, v in state.items())
    assert static.keywords() == () and static.records(3, {"critic": 0.1}, 0.1) == []


def test_prune_follows_its_cubic_schedule_down_to_the_budget_and_never_grows() -> None:
    from sb3_dst.common.topology import pruning_connection_count
    from sb3_dst.common.updaters import Prune

    layer = sparse_linear(connections=120)  # dense 12x10
    layer.connection_budget = 30
    optimizer = adam_with_state([layer])
    target = RecordingTarget(120)
    prune = Prune(evolution_interval=10, pruning_start=20, pruning_end=80)
    counts = []
    for t in range(20, 121, 10):
        mask = getattr(layer, MASK_NAME)
        magnitudes = layer.weight.detach().abs().clone()
        kept_before = mask.clone()
        result = prune.step("critic", [layer], [[target]], optimizer, t=t, horizon=None)
        removed = (kept_before > 0) & (mask == 0)
        expected = pruning_connection_count(120, 30, t, 20, 80)
        assert int(mask.sum()) == expected == target.k
        assert result.fraction == pytest.approx(int(removed.sum()) / int(kept_before.sum()))
        assert result.touched == bool(removed.any())
        if removed.any():  # the smallest magnitudes go, their weight and optimizer state are zero
            assert magnitudes[removed].max() <= magnitudes[mask > 0].min()
            assert th.all(layer.weight[removed] == 0)
            assert all(th.all(v[removed] == 0) for k, v in optimizer.state[layer.weight].items() if k == "exp_avg")
        counts.append(int(mask.sum()))
    assert counts[0] == 120 > counts[1] and counts[-1] == 30 and counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("eta", [0.1, 0.3])
def test_evolve_with_gradient_growth_differs_from_random_growth_only_in_where_it_grows(eta: float) -> None:
    from sb3_dst.common.updaters import GROWTH, Evolve, gradient_magnitude

    assert GROWTH["random"].score is None and GROWTH["gradient"].score is gradient_magnitude
    results = {}
    for growth in ("random", "gradient"):
        layer = sparse_linear(seed=3)
        optimizer = adam_with_state([layer])
        scores = th.rand(layer.weight.shape, generator=th.Generator().manual_seed(1))
        mask_before, weight_before = getattr(layer, MASK_NAME).clone(), layer.weight.detach().clone()
        target = RecordingTarget(40)
        updater = Evolve(drop_fraction=eta, evolution_interval=10, growth=growth)
        assert updater.growth_criterion is GROWTH[growth]
        assert updater.needs_dense_gradient == (growth == "gradient")
        result = updater.step("critic", [layer], [[target]], optimizer, t=10, horizon=None, scores=[scores])
        mask = getattr(layer, MASK_NAME)
        dropped = (mask_before > 0) & (mask == 0)
        grown = (mask_before == 0) & (mask > 0)
        assert int(mask.sum()) == int(mask_before.sum())  # as many grown as dropped
        assert th.all(layer.weight[grown] == 0) and th.all(layer.weight[dropped] == 0)
        assert th.equal(target.changed[0], dropped | grown)
        assert result.drop_fraction == eta and result.touched
        results[growth] = (dropped, grown, scores, mask_before, weight_before)
    (drop_r, grown_r, _, mask_r, weight_r), (drop_g, grown_g, scores, mask_g, weight_g) = (
        results["random"],
        results["gradient"],
    )
    assert th.equal(mask_r, mask_g) and th.equal(weight_r, weight_g)  # the same layer twice
    assert th.equal(drop_r, drop_g)  # the same drop (Algorithm 2, lines 2-7)
    assert int(grown_r.sum()) == int(grown_g.sum()) > 0
    not_grown = (mask_g == 0) & ~grown_g
    assert scores[grown_g].min() >= scores[not_grown].max()  # gradient growth: the largest scores
    assert not th.equal(grown_r, grown_g)  # random growth: elsewhere


def test_gradient_growth_without_scores_is_an_error() -> None:
    from sb3_dst.common.updaters import Evolve

    layer = sparse_linear()
    with pytest.raises(RuntimeError, match="scores of the critic's last batch"):
        Evolve(growth="gradient").step("critic", [layer], [[]], adam_with_state([layer]), t=1, horizon=None)


def test_updaters_check_their_keywords_and_name_them() -> None:
    from sb3_dst.common.updaters import Evolve, Prune, Static

    assert Evolve.keywords() == (
        "drop_fraction",
        "evolution_interval",
        "growth",
        "drop_fraction_schedule",
        "evolution_end",
    )
    assert Prune.keywords() == ("evolution_interval", "pruning_start", "pruning_end")
    for bad, message in [
        (dict(drop_fraction=1.0), r"drop_fraction \(η\) must be in \(0, 1\)"),
        (dict(drop_fraction=True), r"drop_fraction \(η\)"),
        (dict(evolution_interval=0), r"evolution_interval \(e\) must be an integer >= 1"),
        (dict(growth="magnitude"), "growth must be one of 'random', 'gradient'"),
        (dict(drop_fraction_schedule="linear"), "drop_fraction_schedule must be one of"),
        (dict(evolution_end=0), "evolution_end must be an integer >= 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            Evolve(**bad)
    with pytest.raises(ValueError, match=r"pruning_end \(10\) must be after pruning_start \(10\)"):
        Prune(pruning_start=10, pruning_end=10)
    assert Evolve(drop_fraction=np.float32(0.5), evolution_interval=np.int64(7)).values()["evolution_interval"] == 7
    configured = Evolve(drop_fraction=0.1).configured("DSSAC", evolution_interval=10, drop_fraction=None)
    assert (configured.drop_fraction, configured.evolution_interval) == (0.1, 10)  # None keeps the default
    with pytest.raises(TypeError, match="StaticTD3 takes no 'growth': it has a fixed topology; use DSTD3"):
        Static().configured("StaticTD3", growth="random")
    with pytest.raises(TypeError, match="PrunedSAC takes no 'drop_fraction': it prunes by magnitude"):
        Prune().configured("PrunedSAC", drop_fraction=0.1)
    with pytest.raises(TypeError, match=r"DSTQC takes no 'pruning_end'.*\(PrunedTQC\)"):
        Evolve().configured("DSTQC", pruning_end=10)


# --- 3. the algorithms read their updater --------------------------------------------------------------------


def all_algorithms() -> list[type]:
    import sb3_dst

    return [getattr(sb3_dst, name) for name in sorted({name for name, _ in CASES.values()} | {"DSTD3"})]


@pytest.mark.parametrize("algo", all_algorithms(), ids=lambda algo: algo.__name__)
def test_algorithms_declare_their_keywords_through_their_updater(algo) -> None:
    from sb3_dst.common.dst import MODEL_DEFAULTS, TOPOLOGY_KEYS
    from sb3_dst.common.updaters import Evolve, Prune, Static

    updater = algo.default_updater
    kind = next(
        kind
        for prefix, kind in (("DS", Evolve), ("Static", Static), ("Pruned", Prune))
        if algo.__name__.startswith(prefix)
    )
    assert type(updater) is kind
    assert algo.dst_keywords() == (*TOPOLOGY_KEYS, *kind.keywords(), *MODEL_DEFAULTS)
    assert (algo.topology_mode, algo.dynamic) == (updater.mode, kind is Evolve)
    if kind is Evolve:  # the paper's η: 0.05 for TD3 and DDPG, 0.1 for the SAC family
        assert updater.drop_fraction == (0.05 if algo.__name__ in ("DSTD3", "DSDDPG") else 0.1)


@pytest.mark.parametrize("algo", all_algorithms(), ids=lambda algo: algo.__name__)
def test_help_shows_the_declared_keywords_with_their_defaults(algo) -> None:
    import inspect

    from sb3_dst.common.dst import _base_algorithm

    parameters = inspect.signature(algo).parameters
    base = inspect.signature(_base_algorithm(algo)).parameters
    names = list(parameters)
    assert names[:2] == ["policy", "env"]
    assert tuple(names[2 : 2 + len(algo.dst_keywords())]) == algo.dst_keywords()
    assert set(names[2 + len(algo.dst_keywords()) :]) == set(base) - {"policy", "env"}
    for key, value in algo.default_updater.values().items():
        assert parameters[key].default == value and parameters[key].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["target_pruning"].default == "magnitude" and parameters["sparsity"].default is None


def test_the_model_reads_and_sets_its_updaters_keywords(small_kwargs, tmp_path) -> None:
    from sb3_dst import DSTD3, StaticTD3
    from sb3_dst.common.topology import HyperparameterError
    from sb3_dst.common.updaters import Evolve

    model = DSTD3("MlpPolicy", "Pendulum-v1", evolution_interval=20, growth="gradient", **small_kwargs)
    assert model.updater == Evolve(drop_fraction=0.05, evolution_interval=20, growth="gradient")
    assert (model.drop_fraction, model.evolution_interval, model.growth, model.evolution_end) == (
        0.05,
        20,
        "gradient",
        None,
    )
    model.evolution_interval = 10
    assert model.updater.evolution_interval == 10 and model.topology_schedule.interval == 10
    with pytest.raises(HyperparameterError, match="evolution_interval"):
        model.evolution_interval = 0
    with pytest.raises(AttributeError, match="DSTD3 has no 'pruning_start'"):
        model.pruning_start  # noqa: B018
    static = StaticTD3("MlpPolicy", "Pendulum-v1", **small_kwargs)
    assert getattr(static, "evolution_interval", 0) == 0 and not hasattr(static, "drop_fraction")
    with pytest.raises(TypeError, match="StaticTD3 takes no 'drop_fraction'"):
        static.drop_fraction = 0.1
    with pytest.raises(TypeError, match="StaticTD3 takes no 'drop_fraction'"):
        StaticTD3("MlpPolicy", "Pendulum-v1", drop_fraction=0.1, **small_kwargs)
    with pytest.raises(HyperparameterError, match=r"drop_fraction \(η\)"):
        DSTD3("MlpPolicy", "Pendulum-v1", drop_fraction=2.0, **small_kwargs)
    with pytest.raises(TypeError, match="positional"):  # DST and SB3 keywords are keywords only
        DSTD3("MlpPolicy", "Pendulum-v1", 0.5)
    model.save(Path(tmp_path) / "model.zip")
    assert saved_data(Path(tmp_path) / "model.zip")["evolution_interval"] == 10  # what was set is saved


def saved_data(path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("data"))


def rewrite_data(path, data: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            content = json.dumps(data).encode() if item.filename == "data" else source.read(item.filename)
            target.writestr(item, content)
    path.write_bytes(buffer.getvalue())


def test_saved_files_hold_the_keywords_as_before_and_old_files_load(small_kwargs, tmp_path) -> None:
    from sb3_dst import DSTD3, PrunedTD3, StaticTD3

    model = DSTD3("MlpPolicy", "Pendulum-v1", evolution_interval=20, drop_fraction=0.2, **small_kwargs)
    model.save(tmp_path / "ds.zip")
    data = saved_data(tmp_path / "ds.zip")
    assert "updater" not in data and (data["drop_fraction"], data["evolution_interval"]) == (0.2, 20)
    loaded = DSTD3.load(tmp_path / "ds.zip", evolution_interval=30)
    assert loaded.updater == model.updater.configured("DSTD3", evolution_interval=30)
    # A file written before the updaters: every model held every keyword, the others' at neutral values.
    old_keys = dict(drop_fraction=0.0, evolution_interval=0, growth="random", drop_fraction_schedule="constant",
                    evolution_end=None, pruning_start=None, pruning_end=None)  # fmt: skip
    static = StaticTD3("MlpPolicy", "Pendulum-v1", **small_kwargs)
    static.save(tmp_path / "static.zip")
    rewrite_data(tmp_path / "static.zip", {**saved_data(tmp_path / "static.zip"), **old_keys})
    loaded_static = StaticTD3.load(tmp_path / "static.zip", env=gym.make("Pendulum-v1"))
    assert loaded_static.updater == static.updater and not hasattr(loaded_static, "drop_fraction")
    loaded_static.learn(60)
    pruned = PrunedTD3(
        "MlpPolicy", "Pendulum-v1", evolution_interval=10, pruning_start=5, pruning_end=50, **small_kwargs
    )
    pruned.save(tmp_path / "pruned.zip")
    old = {
        **saved_data(tmp_path / "pruned.zip"),
        **old_keys,
        "evolution_interval": 10,
        "pruning_start": 5,
        "pruning_end": 50,
    }
    rewrite_data(tmp_path / "pruned.zip", old)
    assert PrunedTD3.load(tmp_path / "pruned.zip").updater == pruned.updater


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        digests = {digest: run_digest(digest, tmp) for digest in (sys.argv[1:] or DIGESTS)}
    print(json.dumps(digests, indent=4))
