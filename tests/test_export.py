"""sb3_dst.export and sb3_dst.inference: every format computes model.predict(obs, deterministic=True).

Tiny models on Pendulum-v1, trained for a few dozen gradient steps (with evolutions) so that weights and
topologies are not the initial ones. The C export is compiled with the system compiler (skipped without one),
the ONNX export is run with onnxruntime (skipped without it).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from torch import nn

from sb3_dst import DSDDPG, DSSAC, DSTD3, DSTQC, DSCrossQ, PrunedTD3, StaticTD3
from sb3_dst import inference as inference_module
from sb3_dst.export import export, policy_spec
from sb3_dst.inference import SparsePolicy

TOLERANCE = 1e-5
NET = dict(net_arch=[32, 32])

#: name -> (class, extra kwargs); sparse ones at 90 % so that the 32-32 hidden layer is really sparse (CSR)
MODELS = {
    "DSTD3": (DSTD3, dict(sparsity=0.9, evolution_interval=10)),
    "DSSAC": (DSSAC, dict(sparsity=0.9, evolution_interval=10)),
    "DSSAC-sparse-output": (DSSAC, dict(sparsity=0.8, sparse_output_layer=True, evolution_interval=10)),
    "StaticTD3": (StaticTD3, dict(er_lambda=[1.0, 8.0])),
    "TD3": (TD3, {}),
    "SAC": (SAC, {}),
    # the other DST algorithms: DDPG (TD3's actor), TQC (SAC's), CrossQ (SAC's with batch renormalisation, folded
    # into the next linear layer), gradual pruning mid-way (part of the connections pruned)
    "DSDDPG": (DSDDPG, dict(sparsity=0.9, evolution_interval=10)),
    "DSTQC": (DSTQC, dict(sparsity=0.9, evolution_interval=10)),
    "DSCrossQ": (DSCrossQ, dict(sparsity=0.9, evolution_interval=10)),
    "PrunedTD3": (PrunedTD3, dict(sparsity=0.9, evolution_interval=10, pruning_start=0, pruning_end=100)),
}

COMPILER = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

_trained: dict[str, object] = {}


def trained(name: str):
    """A model trained for 100 steps (50 gradient steps), built once per test session."""
    if name not in _trained:
        cls, kwargs = MODELS[name]
        model = cls(
            "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(NET), learning_starts=50, batch_size=32, seed=1, **kwargs
        )
        model.learn(100)
        _trained[name] = model
    return _trained[name]


def observations(n: int = 64, seed: int = 0) -> np.ndarray:
    """Random observations, some well outside Pendulum's bounds (the actions saturate there)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 3)) * rng.choice([0.5, 2.0, 20.0], size=(n, 1))).astype(np.float32)


def expected(model, obs: np.ndarray) -> np.ndarray:
    return model.predict(obs, deterministic=True)[0]


def compile_c(c_path: Path, tmp_path: Path):
    """Compile the exported C as a shared library (strict C99, warnings as errors) and return the function."""
    lib_path = tmp_path / "libpolicy.so"
    command = [COMPILER, "-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror", "-shared", "-fPIC"]
    result = subprocess.run([*command, "-o", str(lib_path), str(c_path), "-lm"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    function = ctypes.CDLL(str(lib_path)).sb3_dst_policy
    function.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
    function.restype = None

    def predict(obs: np.ndarray, action_dim: int) -> np.ndarray:
        actions = np.zeros((len(obs), action_dim), dtype=np.float32)
        for row, out in zip(np.ascontiguousarray(obs, dtype=np.float32), actions, strict=True):
            function(
                row.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            )
        return actions

    return predict


# --- the three formats agree with model.predict ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_sparse_matches_predict(name: str, backend: str, tmp_path: Path) -> None:
    if backend == "numba":
        pytest.importorskip("numba")
    model = trained(name)
    path = tmp_path / "policy.npz"
    assert export(model, path, format="sparse") == [path]
    policy = SparsePolicy.load(path, backend=backend)
    assert policy.backend == backend
    obs = observations()
    want = expected(model, obs)
    batched = policy.predict(obs)
    assert batched.shape == want.shape and batched.dtype == np.float32
    np.testing.assert_allclose(batched, want, rtol=0, atol=TOLERANCE)
    one_by_one = np.stack([policy.predict(o) for o in obs])  # batch 1: the fused kernel with Numba
    np.testing.assert_allclose(one_by_one, want, rtol=0, atol=TOLERANCE)
    assert policy.predict(obs[:1]).shape == (1, 1)
    np.testing.assert_allclose(policy.predict(obs[:1]), want[:1], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(policy.predict(obs.astype(np.float64)), want, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("dense_above", [0.0, 1.0])
@pytest.mark.parametrize("narrow_below", [0, 1000])
def test_sparse_kernel_layouts(dense_above: float, narrow_below: int, tmp_path: Path, monkeypatch) -> None:
    """Every layer layout of the compiled kernel (CSC scatter, dense columns, dense dot products) is exact."""
    pytest.importorskip("numba")
    monkeypatch.setattr(inference_module, "DENSE_ABOVE", dense_above)
    monkeypatch.setattr(inference_module, "NARROW_BELOW", narrow_below)
    model = trained("DSTD3")
    export(model, tmp_path / "policy.npz", format="sparse")
    policy = SparsePolicy.load(tmp_path / "policy.npz", backend="numba")
    obs = observations(32, seed=3)
    want = expected(model, obs)
    np.testing.assert_allclose(np.stack([policy.predict(o) for o in obs]), want, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(policy.predict(obs), want, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_matches_predict(name: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = trained(name)
    path = tmp_path / "policy.onnx"
    export(model, path, format="onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    obs = observations()
    (actions,) = session.run(None, {"obs": obs})
    np.testing.assert_allclose(actions, expected(model, obs), rtol=0, atol=TOLERANCE)


@pytest.mark.skipif(COMPILER is None, reason="no C compiler (cc, gcc or clang) on PATH")
@pytest.mark.parametrize("name", list(MODELS))
def test_c_matches_predict(name: str, tmp_path: Path) -> None:
    model = trained(name)
    written = export(model, tmp_path / "policy.c", format="c")
    assert sorted(p.name for p in written) == ["policy.c", "policy.h"]
    source = (tmp_path / "policy.c").read_text()
    assert "malloc" not in source and "static const float" in source
    assert "void sb3_dst_policy(const float *obs, float *action);" in (tmp_path / "policy.h").read_text()
    predict = compile_c(tmp_path / "policy.c", tmp_path)
    obs = observations()
    np.testing.assert_allclose(predict(obs, 1), expected(model, obs), rtol=0, atol=TOLERANCE)


# --- VecNormalize -----------------------------------------------------------------------------------------------


def test_vec_normalize_is_part_of_every_format(tmp_path: Path) -> None:
    """Raw observations in: each format normalises and clips them as VecNormalize does, then acts."""
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), clip_obs=1.5)
    rng = np.random.default_rng(5)
    venv.obs_rms.mean = rng.normal(size=3)
    venv.obs_rms.var = rng.uniform(0.1, 4.0, size=3)
    model = DSTD3("MlpPolicy", venv, policy_kwargs=dict(NET), sparsity=0.9, learning_starts=50, batch_size=32, seed=2)
    obs = observations(seed=7)
    normalized = venv.normalize_obs(obs)
    assert np.any(np.abs(normalized) == 1.5)  # clipping is exercised
    want = expected(model, normalized)

    export(model, tmp_path / "policy.npz", format="sparse", vec_normalize=venv)
    for backend in ("auto", "numpy"):
        policy = SparsePolicy.load(tmp_path / "policy.npz", backend=backend)
        np.testing.assert_allclose(policy.predict(obs), want, rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(np.stack([policy.predict(o) for o in obs]), want, rtol=0, atol=TOLERANCE)
    # without the statistics the export differs: the normalisation really is in the file
    export(model, tmp_path / "plain.npz", format="sparse")
    assert np.abs(SparsePolicy.load(tmp_path / "plain.npz").predict(obs) - want).max() > 1e-3

    if COMPILER is not None:
        export(model, tmp_path / "policy.c", format="c", vec_normalize=venv)
        predict = compile_c(tmp_path / "policy.c", tmp_path)
        np.testing.assert_allclose(predict(obs, 1), want, rtol=0, atol=TOLERANCE)

    ort = pytest.importorskip("onnxruntime")
    export(model, tmp_path / "policy.onnx", format="onnx", vec_normalize=venv)
    session = ort.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"obs": obs})[0], want, rtol=0, atol=TOLERANCE)


# --- what the files hold ------------------------------------------------------------------------------------------


def test_sparse_layers_are_csr_and_dense_models_dense(tmp_path: Path) -> None:
    sparse_model, dense_model = trained("DSTD3"), trained("TD3")
    export(sparse_model, tmp_path / "sparse.npz", format="sparse")
    export(dense_model, tmp_path / "dense.npz", format="sparse")
    with np.load(tmp_path / "sparse.npz") as npz:
        hidden = sparse_model.actor.mu[2]  # the 32x32 layer
        mask = hidden.weight_mask.numpy() != 0
        # the file holds the model's connections: those grown by the evolution at weight zero included
        indptr, indices = npz["layer1.indptr"], npz["layer1.indices"]
        stored = np.zeros(mask.shape, dtype=bool)
        stored[np.repeat(np.arange(mask.shape[0]), np.diff(indptr)), indices] = True
        np.testing.assert_array_equal(stored, mask)
        assert mask.sum() < 0.2 * mask.size
        assert "layer2.weight" in npz.files  # the dense output layer stays a matrix
    with np.load(tmp_path / "dense.npz") as npz:
        assert {"layer0.weight", "layer1.weight", "layer2.weight"} <= set(npz.files)
        assert not any(name.endswith(".indices") for name in npz.files)
    assert (tmp_path / "sparse.npz").stat().st_size < (tmp_path / "dense.npz").stat().st_size
    export(sparse_model, tmp_path / "sparse.c", format="c")
    export(dense_model, tmp_path / "dense.c", format="c")
    assert "L1_INDICES" in (tmp_path / "sparse.c").read_text()
    assert "L1_WEIGHT" in (tmp_path / "dense.c").read_text() and "INDICES" not in (tmp_path / "dense.c").read_text()


def test_spec_reads_sac_mean_action_head() -> None:
    spec = policy_spec(trained("DSSAC"))
    assert spec.algorithm == "sac"
    assert [layer.activation for layer in spec.layers] == ["relu", "relu", "tanh"]
    assert [layer.weight.shape for layer in spec.layers] == [(32, 3), (32, 32), (1, 32)]


# --- errors ----------------------------------------------------------------------------------------------------


class DictEnv(gym.Env):
    observation_space = spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Box(-1, 1, (3,))})
    action_space = spaces.Box(-1, 1, (1,))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


class ImageEnv(DictEnv):
    observation_space = spaces.Box(0, 255, (36, 36, 1), dtype=np.uint8)


@pytest.mark.parametrize("format", ["onnx", "sparse", "c"])
def test_dict_and_image_observations_are_not_supported_yet(format: str, tmp_path: Path) -> None:
    dict_model = TD3("MultiInputPolicy", DictEnv(), buffer_size=100)
    with pytest.raises(NotImplementedError, match="Dict observation spaces are not supported yet"):
        export(dict_model, tmp_path / "policy", format=format)
    image_model = SAC("CnnPolicy", ImageEnv(), buffer_size=100)
    with pytest.raises(NotImplementedError, match="image observations are not supported yet"):
        export(image_model, tmp_path / "policy", format=format)
    assert list(tmp_path.iterdir()) == []


def test_tanh_activation_is_exported(tmp_path: Path) -> None:
    model = DSSAC(
        "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32], activation_fn=nn.Tanh), sparsity=0.9, seed=3
    )
    assert [layer.activation for layer in policy_spec(model).layers] == ["tanh", "tanh", "tanh"]
    export(model, tmp_path / "policy.npz", format="sparse")
    obs = observations(seed=4)
    policy = SparsePolicy.load(tmp_path / "policy.npz")
    np.testing.assert_allclose(np.stack([policy.predict(o) for o in obs]), expected(model, obs), atol=TOLERANCE)
    if COMPILER is not None:
        export(model, tmp_path / "policy.c", format="c")
        np.testing.assert_allclose(
            compile_c(tmp_path / "policy.c", tmp_path)(obs, 1), expected(model, obs), atol=TOLERANCE
        )


@pytest.mark.parametrize(
    "make",
    [
        lambda: SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8]), use_sde=True),
        lambda: TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8], activation_fn=nn.ELU)),
    ],
    ids=["gSDE", "ELU"],
)
def test_unsupported_networks_are_clear_errors(make, tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError, match="not supported yet"):
        export(make(), tmp_path / "policy.npz", format="sparse")
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format 'tflite'"):
        export(trained("DSTD3"), tmp_path / "policy.tflite", format="tflite")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("format", ["onnx", "sparse", "c"])
def test_unwritable_path_is_a_clear_error(format: str, tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot write"):
        export(trained("DSTD3"), tmp_path / "missing" / "policy.out", format=format)
    (tmp_path / "taken.out").mkdir()
    with pytest.raises(OSError, match="cannot write"):
        export(trained("DSTD3"), tmp_path / "taken.out", format="sparse" if format == "c" else format)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.out"]


def test_failed_c_export_leaves_no_half_pair_and_keeps_old_files(tmp_path: Path) -> None:
    """The .c target is a directory: the .h must not be written either, and an existing .h is untouched."""
    (tmp_path / "policy.h").write_text("old header")
    (tmp_path / "policy.c").mkdir()
    with pytest.raises(OSError, match="cannot write"):
        export(trained("DSTD3"), tmp_path / "policy.c", format="c")
    assert (tmp_path / "policy.h").read_text() == "old header"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.c", "policy.h"]


def test_failed_export_keeps_existing_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "policy.npz"
    export(trained("DSTD3"), path, format="sparse")
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", fail)
    with pytest.raises(OSError, match="disk full"):
        export(trained("TD3"), path, format="sparse")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.npz"]


def test_sparse_policy_rejects_bad_input(tmp_path: Path) -> None:
    export(trained("DSTD3"), tmp_path / "policy.npz", format="sparse")
    policy = SparsePolicy.load(tmp_path / "policy.npz")
    with pytest.raises(ValueError, match="expected observations of shape"):
        policy.predict(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="expected observations of shape"):
        policy.predict(np.zeros((2, 2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="backend"):
        SparsePolicy.load(tmp_path / "policy.npz", backend="cuda")
    np.savez(tmp_path / "other.npz", meta=np.array("{}"))
    with pytest.raises(ValueError, match="not an sb3_dst sparse policy file"):
        SparsePolicy.load(tmp_path / "other.npz")
