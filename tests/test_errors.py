"""What a new user hits first: the defaults on small environments, and bad input named in the package's own words
rather than as SB3's, numpy's or zipfile's error."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch as th

from sb3_dst import DSSAC, DSTD3, DSTQC, DSCrossQ, PrunedTD3, StaticSAC
from sb3_dst.common.env_ids import MujocoPyRequiredError
from sb3_dst.common.masking import MASK_NAME, sparse_layers
from sb3_dst.common.policies import DEFAULT_ER_LAMBDA
from sb3_dst.common.topology import HyperparameterError
from sb3_dst.export import export
from sb3_dst.inference import SparsePolicy

# --- The default λ on small observation spaces ---------------------------------------------------------------


@pytest.mark.parametrize("algo", [DSTD3, DSSAC, DSTQC, DSCrossQ, PrunedTD3])
def test_defaults_build_on_pendulum_with_overfilled_layers_dense(algo, caplog) -> None:
    """SB3's first example, ``algo("MlpPolicy", "Pendulum-v1")``: the paper's λ1 = 7 would put 7·(3 + 256) = 1813
    connections in the actor's 3x256 first layer, which holds 768. That layer is dense, one line says so, and the
    layers λ fits keep exactly the paper's budget."""
    with caplog.at_level(logging.WARNING, logger="sb3_dst"):
        model = algo("MlpPolicy", "Pendulum-v1", buffer_size=1000)
    lines = [r.getMessage() for r in caplog.records if "default er_lambda" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "actor layer 0 (3x256)" in lines[0] and "critic qf0 layer 0 (4x" in lines[0] and "dense" in lines[0]
    layers = sparse_layers(model.actor)
    first, second = (layer for layer in layers if layer.weight.shape[1] == 3 or layer.weight.shape == (256, 256))
    assert first.connection_budget == first.weight.numel()
    lam2 = DEFAULT_ER_LAMBDA[1]
    assert second.connection_budget == round(lam2 * (256 + 256)) < second.weight.numel()
    if algo is not PrunedTD3:  # gradual pruning starts dense and reaches the budgets later
        assert int(getattr(first, MASK_NAME).sum()) == 768
        assert int(getattr(second, MASK_NAME).sum()) == round(lam2 * 512)


def test_defaults_learn_and_reload_on_pendulum(tmp_path: Path) -> None:
    model = DSTD3("MlpPolicy", "Pendulum-v1", learning_starts=50, batch_size=16, evolution_interval=20, seed=0)
    model.learn(120)
    assert model.num_evolutions >= 1
    model.save(tmp_path / "model")
    loaded = DSTD3.load(tmp_path / "model", device="cpu")
    for a, b in zip(sparse_layers(model.policy), sparse_layers(loaded.policy), strict=True):
        assert th.equal(getattr(a, MASK_NAME), getattr(b, MASK_NAME)) and th.equal(a.weight, b.weight)


def test_no_line_when_the_default_fits(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="sb3_dst"):
        DSTD3("MlpPolicy", "Pendulum-v1", er_lambda=[2, 64], buffer_size=1000)
        DSTD3("MlpPolicy", "Pendulum-v1", sparsity=0.9, buffer_size=1000)
    assert not [r for r in caplog.records if "default er_lambda" in r.getMessage()]


@pytest.mark.parametrize("er_lambda", [7, [7, 64]])
def test_an_explicit_lambda_keeps_the_precise_error(er_lambda) -> None:
    expected = r"er_lambda=7 gives actor layer 0 \(3x256\) 1813 connections, more than the 768 possible"
    with pytest.raises(HyperparameterError, match=expected):
        DSTD3("MlpPolicy", "Pendulum-v1", er_lambda=er_lambda)


# --- Environment ids and policy names ------------------------------------------------------------------------


@pytest.mark.parametrize("algo", [DSTD3, StaticSAC, DSCrossQ])
def test_a_v3_mujoco_id_from_python_names_the_ids_to_use(algo) -> None:
    with pytest.raises(
        MujocoPyRequiredError, match=r"Walker2d-v3 is a MuJoCo v3 environment.*Walker2d-v4 or Walker2d-v5"
    ):
        algo("MlpPolicy", "Walker2d-v3")


def test_crossq_names_the_policies_it_takes() -> None:
    message = r"DSCrossQ has no policy 'MultiInputPolicy': it takes 'MlpPolicy' only"
    with pytest.raises(ValueError, match=message):
        DSCrossQ("MultiInputPolicy", "Pendulum-v1")
    with pytest.raises(ValueError, match=r"DSTD3 has no policy 'MLPPolicy': it takes 'MlpPolicy', 'CnnPolicy'"):
        DSTD3("MLPPolicy", "Pendulum-v1")


# --- Files that are not what they should be ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["corrupt.zip", "corrupt"])
def test_a_corrupt_model_file_is_named(tmp_path: Path, name: str) -> None:
    (tmp_path / "corrupt.zip").write_bytes(b"not a zip file at all")
    message = r"corrupt\.zip is not a model saved by save\(\): it is not a zip archive"
    with pytest.raises(ValueError, match=message):
        DSTD3.load(tmp_path / name)
    model = DSTD3("MlpPolicy", "Pendulum-v1", er_lambda=[1, 8], policy_kwargs=dict(net_arch=[16, 16]))
    with pytest.raises(ValueError, match=message):
        model.set_parameters(str(tmp_path / name))


def test_a_garbage_sparse_policy_file_is_named(tmp_path: Path) -> None:
    garbage = tmp_path / "policy.npz"
    garbage.write_bytes(b"\x80\x04garbage that numpy would take for a pickle")
    with pytest.raises(ValueError, match=r"policy\.npz is not a sparse policy .* not an \.npz archive"):
        SparsePolicy.load(garbage)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.npz is not a sparse policy .* no 'meta' entry .*'weights'"):
        SparsePolicy.load(other)


def test_a_real_sparse_policy_file_still_loads(tmp_path: Path) -> None:
    model = DSTD3("MlpPolicy", "Pendulum-v1", er_lambda=[1, 8], policy_kwargs=dict(net_arch=[16, 16]))
    export(model, tmp_path / "policy.npz", format="sparse")
    obs = np.zeros((1, 3), dtype=np.float32)
    assert SparsePolicy.load(tmp_path / "policy.npz").predict(obs).shape == (1, 1)
