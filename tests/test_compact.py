"""Compact model files: sparse layers saved as their connections' values and bit-packed positions."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file

import sb3_dst
from sb3_dst import DSTD3, StaticTD3
from sb3_dst.common.compact import (
    FORMAT_KEY,
    CompactFormatError,
    compact_tensor,
    expand_parameters,
    expand_tensor,
    is_compact,
)
from sb3_dst.common.masking import MASK_NAME, sparse_linears

ENV = "Pendulum-v1"


def same_bits(a: Any, b: Any) -> bool:
    """Equal structure, dtypes, shapes and bits (``-0.0`` differs from ``0.0``)."""
    if isinstance(a, th.Tensor):
        if not isinstance(b, th.Tensor) or a.dtype != b.dtype or a.shape != b.shape:
            return False
        return bool(th.equal(a.reshape(-1).view(th.uint8), b.reshape(-1).view(th.uint8)))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_bits(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_bits(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def count_compact(value: Any, shape: list[int] | None = None) -> int:
    """Compacted entries in ``value`` (of that shape only, if given)."""
    if is_compact(value):
        return int(shape is None or value["shape"] == shape)
    if isinstance(value, dict):
        return sum(count_compact(v, shape) for v in value.values())
    if isinstance(value, list):
        return sum(count_compact(v, shape) for v in value)
    return 0


COUNTERS = ("_n_updates", "num_timesteps", "num_evolutions", "_episode_num", "flops_checkpoint")


# --- the pure functions -------------------------------------------------------------------------------------


def test_compact_tensor_round_trips_signed_zeros_nan_and_every_kind_of_values():
    gen = th.Generator().manual_seed(0)
    present = th.rand(40, 30, generator=gen) < 0.1
    weight = th.randn(40, 30, generator=gen) * present
    assert th.signbit(weight[~present]).any() and not th.signbit(weight[~present]).all()  # +0.0 and -0.0
    weight[0, 0], present[0, 0] = float("nan"), True
    moment = th.where(present, th.rand(40, 30, generator=gen), th.tensor(0.99))
    noisy = th.rand(40, 30, generator=gen)  # nothing to gain: kept as it is
    assert compact_tensor(noisy, present) is noisy
    ones = th.where(~present, 1.0, th.rand(40, 30, generator=gen))  # constant at most positions, raw elsewhere
    kinds = {}
    tensors = {"weight": weight, "mask": present.float(), "moment": moment, "ones": ones}
    for name, tensor in tensors.items():
        entry = compact_tensor(tensor, ~present if name == "ones" else present)
        assert is_compact(entry), name
        kinds[name] = (entry["present"], entry["absent"])
        assert same_bits(expand_tensor(entry), tensor), name
    assert kinds == {
        "weight": ("raw", "two"),
        "mask": ("constant", "constant"),
        "moment": ("raw", "constant"),
        "ones": ("constant", "raw"),
    }


def test_compact_tensor_keeps_tensors_it_cannot_shrink():
    dense = th.randn(64, 64)
    assert compact_tensor(dense, th.ones(64, 64, dtype=th.bool)) is dense  # every position a connection
    assert compact_tensor(th.randn(2, 2), th.tensor([[True, False], [False, False]])).shape == (2, 2)  # tiny
    counts = th.arange(4096).reshape(64, 64)
    assert compact_tensor(counts, counts < 10) is counts  # not floating point
    step = th.tensor(3.0)
    assert compact_tensor(step, th.ones(64, 64, dtype=th.bool)) is step  # not the layer's shape


def test_a_newer_format_is_refused_with_a_clear_error():
    present = th.rand(64, 64) < 0.1
    entry = compact_tensor(th.randn(64, 64) * present, present)
    assert isinstance(entry, dict)
    with pytest.raises(CompactFormatError, match="upgrade sb3-dst"):
        expand_tensor({**entry, FORMAT_KEY: 99})


# --- models ------------------------------------------------------------------------------------------------

#: Class name in sb3_dst -> its keywords here.
CASES: dict[str, dict[str, Any]] = {
    "DSTD3": dict(sparsity=0.8, evolution_interval=40),
    "DSSAC": dict(sparsity=0.8, evolution_interval=40),
    "StaticTD3": dict(sparsity=0.8),
    # mid-pruning: 150 gradient steps of a window 50-450, pruned every 25 (and on after saving)
    "PrunedTD3": dict(sparsity=0.8, pruning_start=50, pruning_end=450, evolution_interval=25),
    "StaticSAC": dict(sparsity=0.8),
    "PrunedSAC": dict(sparsity=0.8, pruning_start=50, pruning_end=450, evolution_interval=25),
    # sb3-contrib's TQC and CrossQ (no targets) and SB3's DDPG go through the same save path
    "DSTQC": dict(sparsity=0.8, evolution_interval=40),
    "DSCrossQ": dict(sparsity=0.8, evolution_interval=40),
    "DSDDPG": dict(sparsity=0.8, evolution_interval=40),
    "StaticTQC": dict(sparsity=0.8),
    "PrunedTQC": dict(sparsity=0.8, pruning_start=50, pruning_end=450, evolution_interval=25),
    "PrunedCrossQ": dict(sparsity=0.8, pruning_start=50, pruning_end=450, evolution_interval=25),
    "PrunedDDPG": dict(sparsity=0.8, pruning_start=50, pruning_end=450, evolution_interval=25),
}


def make(name: str, seed: int = 5) -> Any:
    algo, extra = getattr(sb3_dst, name), CASES[name]
    kwargs = dict(policy_kwargs=dict(net_arch=[32, 32]), learning_starts=50, batch_size=32, seed=seed)
    return algo("MlpPolicy", ENV, **kwargs, **extra)


def resume(model: Any, steps: int = 120) -> Any:
    """Continue training from a fresh episode with fixed seeds, so that models in the same state train alike."""
    model._last_obs = None  # loaded models start a new episode (SB3's force_reset): so does the original
    model.set_random_seed(99)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PrunedTD3: this run ends before the pruning window does
        return model.learn(steps, reset_num_timesteps=False)


@pytest.mark.parametrize("name", list(CASES))
def test_save_load_is_bit_for_bit_and_training_resumes_as_with_the_dense_format(name, tmp_path: Path):
    algo = getattr(sb3_dst, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = make(name).learn(200)
    if name.startswith("Pruned"):
        fractions = [float(getattr(layer, MASK_NAME).mean()) for layer in sparse_linears(model.actor)]
        assert all(0.2 < f < 1.0 for f in fractions), fractions  # pruned some, not yet all
    model.save(tmp_path / "compact.zip")
    BaseAlgorithm.save(model, tmp_path / "dense.zip")  # SB3's own save: the earlier (dense) format
    model.save_replay_buffer(tmp_path / "buffer.pkl")

    _, stored, _ = load_from_zip_file(tmp_path / "compact.zip", load_data=False)
    assert stored is not None
    # every 32x32 layer is compacted: weight and mask, targets too, and Adam's two moments of the online ones
    n_layers = sum(layer.weight.numel() == 32 * 32 for layer in sparse_linears(model.policy))
    assert count_compact(stored["policy"], [32, 32]) == 2 * n_layers > 0
    n_online = sum(
        layer.weight.numel() == 32 * 32 for net in (model.actor, model.critic) for layer in sparse_linears(net)
    )
    optimizers = [stored["actor.optimizer"], stored["critic.optimizer"]]
    assert count_compact(optimizers, [32, 32]) == 2 * n_online > 0
    _, old, _ = load_from_zip_file(tmp_path / "dense.zip", load_data=False)
    assert old is not None and count_compact(old) == 0
    assert (tmp_path / "compact.zip").stat().st_size < (tmp_path / "dense.zip").stat().st_size

    compact = algo.load(tmp_path / "compact.zip", env=gym.make(ENV))
    dense = algo.load(tmp_path / "dense.zip", env=gym.make(ENV))
    expected = model.get_parameters()
    for loaded in (compact, dense):
        assert same_bits(loaded.get_parameters(), expected)  # weights, masks, targets, optimizer state, steps
        assert all(same_bits(getattr(loaded, c), getattr(model, c)) for c in COUNTERS)
        if getattr(model, "log_ent_coef", None) is not None:  # SAC, TQC, CrossQ with a tuned α
            assert same_bits(loaded.log_ent_coef, model.log_ent_coef)
        loaded.load_replay_buffer(tmp_path / "buffer.pkl")
        resume(loaded)
    # the same training after either file: every tensor equal, the optimizer's included
    assert same_bits(compact.get_parameters(), dense.get_parameters())
    # and as if never saved: the weights (the loaded models settle Adam's absent entries earlier, which moves
    # no weight)
    resume(model)
    assert same_bits(compact.policy.state_dict(), model.policy.state_dict())
    assert compact._n_updates == model._n_updates > 200


def test_file_size_at_90_percent_sparsity_is_at_most_035_of_dense_td3(tmp_path: Path):
    kwargs = dict(policy_kwargs=dict(net_arch=[128, 128]), learning_starts=50, batch_size=32, seed=0)
    sparse = DSTD3("MlpPolicy", ENV, sparsity=0.9, **kwargs).learn(80)
    reference = TD3("MlpPolicy", ENV, **kwargs).learn(80)
    sparse.save(tmp_path / "sparse.zip")
    BaseAlgorithm.save(sparse, tmp_path / "sparse_dense_format.zip")
    reference.save(tmp_path / "td3.zip")
    size = {p.stem: p.stat().st_size for p in tmp_path.iterdir()}
    assert size["sparse"] <= 0.35 * size["td3"], size
    assert size["sparse_dense_format"] > size["td3"], size  # masks on top: what the compact format saves


def test_get_parameters_stays_dense_and_set_parameters_takes_dense_dicts_and_compact_files(tmp_path: Path):
    model = make("DSTD3").learn(100)
    model.save(tmp_path / "model.zip")
    params = model.get_parameters()  # after a save, still ordinary state dicts
    assert count_compact(params) == 0
    assert all(isinstance(v, th.Tensor) for v in params["policy"].values())
    assert all(isinstance(v, th.Tensor) for s in params["actor.optimizer"]["state"].values() for v in s.values())

    other = make("DSTD3", seed=6)
    assert not same_bits(other.get_parameters(), params)
    other.set_parameters(params)  # a dense dict, as SB3 documents
    assert same_bits(other.get_parameters(), params)
    assert [int(getattr(layer, MASK_NAME).sum()) for layer in other._sparse_layers["actor"]] == [
        int(getattr(layer, MASK_NAME).sum()) for layer in model._sparse_layers["actor"]
    ]

    third = make("DSTD3", seed=7)
    third.set_parameters(tmp_path / "model.zip")  # in-place load from a compact file
    assert same_bits(third.get_parameters(), params)

    _, stored, _ = load_from_zip_file(tmp_path / "model.zip", load_data=False)
    assert stored is not None and count_compact(stored) > 0
    assert same_bits(expand_parameters(stored), params)


def test_compact_saves_false_writes_the_dense_format(tmp_path: Path):
    model = make("StaticTD3").learn(60)
    model.compact_saves = False
    model.save(tmp_path / "model.zip")
    _, stored, _ = load_from_zip_file(tmp_path / "model.zip", load_data=False)
    assert stored is not None and count_compact(stored) == 0
    assert same_bits(StaticTD3.load(tmp_path / "model.zip").get_parameters(), model.get_parameters())
