"""Export the deterministic policy of a trained TD3/SAC model (sparse or dense) for inference without torch.

:func:`export` writes the actor of a model, together with what ``model.predict(obs, deterministic=True)`` does
around it, in one of three formats:

- ``"onnx"``: a standard ONNX graph with dense weights (needs the ``onnx`` package: ``pip install sb3-dst[export]``).
- ``"sparse"``: an ``.npz`` file of CSR arrays, loaded by :meth:`sb3_dst.inference.SparsePolicy.load` (NumPy only,
  a compiled Numba kernel when Numba is installed).
- ``"c"``: a self-contained C99 ``.c``/``.h`` pair, weights as ``static const`` arrays and one function
  ``void sb3_dst_policy(const float *obs, float *action)``: no allocation, no library beyond ``<math.h>``.

The exported computation is, for an observation ``obs`` (Box space, flattened):

1. ``x = float32(obs)`` (SB3's ``preprocess_obs`` for Box observations);
2. with ``vec_normalize``: ``x = clip((x - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` (``VecNormalize``);
3. the actor's layers: TD3 ``tanh(mu(x))``; SAC (mean action) ``tanh(mu(latent_pi(x)))``;
4. ``action = low + (a + 1) · (high - low) / 2`` (SB3's ``unscale_action``).

Layers whose weights are mostly zero (sparse layers of DS-TD3/DS-SAC) are stored as CSR (compressed sparse rows:
``indptr``, ``indices``, ``data``), the others as dense matrices. Files are written to a temporary file in the
target directory and renamed into place, so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from torch import nn

from sb3_dst.common.masking import MASK_NAME

__all__ = ["CSR_BELOW", "C_CSR_BELOW", "FORMATS", "LayerSpec", "PolicySpec", "export", "policy_spec"]

#: Export formats.
FORMATS = ("onnx", "sparse", "c")

#: A layer is stored as CSR when fewer than this fraction of its weights are non-zero (CSR costs a 4-byte index
#: per weight on top of the value, so it is smaller below one half; the Numba kernels choose their own layout).
CSR_BELOW = 0.5

#: The C export stores a layer as CSR when fewer than this fraction of its weights are connections. A CSR row is a
#: chain of scalar gathers, while the dense (input-major) update is vectorised and skips zero inputs: measured on
#: 1024-wide layers, dense costs about a fifth of CSR per stored weight, so CSR is faster only below about 20 %.
C_CSR_BELOW = 0.2

#: Activations the exported networks may use, by the names the formats store.
ACTIVATIONS: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Identity: "identity"}

#: Version of the ``"sparse"`` file format.
SPARSE_FORMAT_VERSION = 1


@dataclass
class LayerSpec:
    """One affine layer followed by an activation: ``activation(weight @ x + bias)``.

    :param weight: ``(n_out, n_in)`` float32 matrix, absent connections exactly zero.
    :param bias: ``(n_out,)`` float32 vector.
    :param activation: ``"relu"``, ``"tanh"`` or ``"identity"``.
    :param mask: the layer's ``weight_mask`` (sparse layers), or ``None``.
    """

    weight: np.ndarray
    bias: np.ndarray
    activation: str
    mask: np.ndarray | None = None

    @property
    def connections(self) -> np.ndarray:
        """Boolean ``(n_out, n_in)`` pattern of the connections: the layer's mask (a connection grown by the
        evolution starts at weight zero) and every non-zero weight."""
        pattern = self.weight != 0
        return pattern if self.mask is None else pattern | (self.mask != 0)

    @property
    def density(self) -> float:
        """Fraction of connections (see :attr:`connections`)."""
        return float(np.count_nonzero(self.connections)) / max(self.weight.size, 1)

    @property
    def is_csr(self) -> bool:
        """Whether the layer is stored as CSR (sparse enough, see :data:`CSR_BELOW`)."""
        return self.density < CSR_BELOW

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The weight as CSR arrays ``(indptr, indices, data)`` (int32, int32, float32), column indices sorted."""
        rows, cols = np.nonzero(self.connections)
        indptr = np.zeros(self.weight.shape[0] + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=self.weight.shape[0]), out=indptr[1:])
        return indptr, cols.astype(np.int32), self.weight[rows, cols].astype(np.float32)


@dataclass
class PolicySpec:
    """What the exported function computes (see the module docstring), independent of the format.

    :param algorithm: ``"td3"`` or ``"sac"``.
    :param obs_shape: shape of one observation (flattened to ``obs_dim`` values).
    :param action_shape: shape of one action.
    :param layers: the actor's layers, the last one's activation being the ``tanh`` squashing.
    :param action_low: lower action bounds, float32, flattened.
    :param action_high: upper action bounds, float32, flattened.
    :param obs_mean: VecNormalize's running mean (float32), or ``None`` without normalisation.
    :param obs_inv_std: ``1 / sqrt(var + epsilon)`` (float32), or ``None``.
    :param clip_obs: VecNormalize's ``clip_obs``, or ``None``.
    """

    algorithm: str
    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...]
    layers: list[LayerSpec]
    action_low: np.ndarray
    action_high: np.ndarray
    obs_mean: np.ndarray | None = None
    obs_inv_std: np.ndarray | None = None
    clip_obs: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def obs_dim(self) -> int:
        """Number of values in one observation."""
        return int(np.prod(self.obs_shape))

    @property
    def action_dim(self) -> int:
        """Number of values in one action."""
        return int(np.prod(self.action_shape))

    def forward(self, obs: np.ndarray) -> np.ndarray:
        """Reference NumPy forward pass on a batch ``(n, obs_dim)`` (dense float32 matrices)."""
        x = np.asarray(obs, dtype=np.float32).reshape(-1, self.obs_dim)
        if self.obs_mean is not None and self.obs_inv_std is not None and self.clip_obs is not None:
            x = np.clip((x - self.obs_mean) * self.obs_inv_std, -self.clip_obs, self.clip_obs).astype(np.float32)
        for layer in self.layers:
            x = apply_activation(x @ layer.weight.T + layer.bias, layer.activation)
        return (self.action_low + (x + np.float32(1.0)) * half_range(self)).astype(np.float32)


def half_range(spec: PolicySpec) -> np.ndarray:
    """``(high - low) / 2`` in float32 (times 0.5 is exact, so this matches SB3's ``unscale_action`` bit for bit)."""
    return (np.float32(0.5) * (spec.action_high - spec.action_low)).astype(np.float32)


def apply_activation(x: np.ndarray, activation: str) -> np.ndarray:
    """Apply an activation by name, in place when possible."""
    if activation == "relu":
        return np.maximum(x, np.float32(0.0), out=x)
    if activation == "tanh":
        return np.tanh(x, out=x)
    return x


def _check_observation_space(space: spaces.Space) -> tuple[int, ...]:
    """The observation shape, or a ``NotImplementedError`` for what the exporter does not support yet."""
    from stable_baselines3.common.preprocessing import is_image_space

    if isinstance(space, spaces.Dict):
        raise NotImplementedError("export: Dict observation spaces are not supported yet (only flat Box observations)")
    if not isinstance(space, spaces.Box):
        raise NotImplementedError(
            f"export: {type(space).__name__} observation spaces are not supported yet (only Box observations)"
        )
    if is_image_space(space, check_channels=False):
        raise NotImplementedError("export: image observations are not supported yet (only flat Box observations)")
    return tuple(int(n) for n in space.shape)


def _normalization_affine(module: nn.Module) -> tuple[np.ndarray, np.ndarray] | None:
    """``(s, t)`` with ``module(x) == s * x + t`` in evaluation mode, for batch (re)normalisation layers.

    Covers torch's ``BatchNorm1d`` and sb3-contrib's ``BatchRenorm`` (CrossQ), both with running statistics: at
    inference they are a fixed per-feature affine map, folded into the next linear layer by :func:`_sequential`.
    """
    mean: Any
    var: Any
    scale: Any
    shift: Any
    if isinstance(module, nn.BatchNorm1d) and module.running_mean is not None and module.running_var is not None:
        mean, var, eps = module.running_mean, module.running_var, module.eps
        scale, shift = module.weight, module.bias
    elif hasattr(module, "ra_mean") and hasattr(module, "ra_var") and hasattr(module, "eps"):  # BatchRenorm
        mean, var, eps = module.ra_mean, module.ra_var, float(module.eps)  # type: ignore[arg-type]
        scale, shift = (module.scale, module.bias) if getattr(module, "affine", False) else (None, None)
    else:
        return None
    inv_std = 1.0 / np.sqrt(var.detach().cpu().double().numpy() + float(eps))
    s = inv_std if scale is None else scale.detach().cpu().double().numpy() * inv_std
    t = -mean.detach().cpu().double().numpy() * s
    if shift is not None:
        t = t + shift.detach().cpu().double().numpy()
    return s, t


def _sequential(modules: Sequence[nn.Module], where: str) -> list[LayerSpec]:
    """Linear layers each followed by at most one supported activation.

    Batch (re)normalisation layers (CrossQ's actor) are folded into the next linear layer, ``W (s x + t) + b =
    (W diag(s)) x + (W t + b)``, which scales columns and keeps the layer's sparsity pattern.
    """
    layers: list[LayerSpec] = []
    pending: tuple[np.ndarray, np.ndarray] | None = None  # a normalisation waiting for the next linear layer
    for module in modules:
        affine = _normalization_affine(module)
        if affine is not None:
            if pending is not None:  # two in a row compose: s2 (s1 x + t1) + t2
                affine = (affine[0] * pending[0], affine[0] * pending[1] + affine[1])
            pending = affine
            continue
        if isinstance(module, nn.Linear):
            weight = module.weight.detach().cpu().numpy().astype(np.float32)
            bias = (
                module.bias.detach().cpu().numpy().astype(np.float32)
                if module.bias is not None
                else np.zeros(module.out_features, dtype=np.float32)
            )
            if pending is not None:
                s, t = pending
                bias = (bias.astype(np.float64) + weight.astype(np.float64) @ t).astype(np.float32)
                weight = (weight.astype(np.float64) * s[None, :]).astype(np.float32)
                pending = None
            mask = getattr(module, MASK_NAME, None)
            mask_array = None if mask is None else mask.detach().cpu().numpy() != 0
            layers.append(LayerSpec(weight.copy(), bias.copy(), "identity", mask_array))
        elif type(module) in ACTIVATIONS:
            if not layers or layers[-1].activation != "identity":
                raise NotImplementedError(f"export: {where} has an activation not preceded by a linear layer")
            layers[-1].activation = ACTIVATIONS[type(module)]
        else:
            raise NotImplementedError(
                f"export: module {type(module).__name__} in {where} is not supported yet "
                f"(linear layers with ReLU/Tanh activations only)"
            )
    if pending is not None:
        raise NotImplementedError(f"export: {where} ends with a normalisation layer (not supported yet)")
    return layers


def _flatten(module: nn.Module) -> list[nn.Module]:
    """The leaf modules of nested ``nn.Sequential`` containers, in order."""
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _flatten(child)]
    return [module]


def policy_spec(model: Any, vec_normalize: Any = None) -> PolicySpec:
    """Extract what :func:`export` writes from a TD3/SAC model (SB3's or this package's) or its policy.

    :param model: a trained TD3/SAC-family model (SB3's ``TD3``, ``DDPG``, ``SAC``, sb3-contrib's ``TQC`` and
        ``CrossQ``, or this package's sparse versions of them) or its ``policy``.
    :param vec_normalize: the ``VecNormalize`` wrapper the model was trained with, if any: its observation
        normalisation (``obs_rms``, ``epsilon``, ``clip_obs``) is applied first. Reward normalisation is ignored.
    :raises NotImplementedError: for Dict, image or non-Box observations, gSDE, custom feature extractors or
        activations other than ReLU/Tanh ("not supported yet").
    :raises TypeError: for a model outside the TD3/SAC families.
    """
    from stable_baselines3.common.torch_layers import FlattenExtractor
    from stable_baselines3.sac.policies import Actor as SACActor
    from stable_baselines3.td3.policies import Actor as TD3Actor

    policy = getattr(model, "policy", model)
    actor: Any = getattr(policy, "actor", None)
    obs_shape = _check_observation_space(policy.observation_space)
    # TQC's and CrossQ's actors (sb3-contrib) are SAC's squashed Gaussian: the mean action is tanh(mu(latent_pi(x)))
    gaussian = isinstance(actor, SACActor) or all(hasattr(actor, a) for a in ("latent_pi", "mu", "log_std", "use_sde"))
    if not (isinstance(actor, TD3Actor) or gaussian):
        raise TypeError(
            f"export: expected a TD3, DDPG, SAC, TQC or CrossQ model (or policy), got {type(model).__name__}"
        )
    if not isinstance(actor.features_extractor, FlattenExtractor):
        raise NotImplementedError(
            f"export: feature extractor {type(actor.features_extractor).__name__} is not supported yet "
            "(only SB3's FlattenExtractor)"
        )
    action_space = policy.action_space
    if not isinstance(action_space, spaces.Box):
        raise NotImplementedError("export: only Box action spaces are supported")
    low = np.asarray(action_space.low, dtype=np.float32).reshape(-1)
    high = np.asarray(action_space.high, dtype=np.float32).reshape(-1)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError("export: the action space must have finite bounds (SB3 rescales actions to them)")
    if isinstance(actor, TD3Actor):
        algorithm = "td3"
        layers = _sequential(_flatten(actor.mu), "the TD3 actor's mu")
        if not layers or layers[-1].activation != "tanh":
            raise NotImplementedError("export: the TD3 actor must end with Tanh (squash_output)")
    else:
        algorithm = "sac"
        if actor.use_sde:
            raise NotImplementedError("export: SAC with gSDE (use_sde=True) is not supported yet")
        head = _flatten(actor.mu)
        if len(head) != 1 or not isinstance(head[0], nn.Linear):
            raise NotImplementedError("export: the SAC actor's mu must be one linear layer")
        # one pass over latent_pi and mu, so that a normalisation ending latent_pi (CrossQ) folds into mu
        layers = _sequential(_flatten(actor.latent_pi) + head, "the SAC actor's latent_pi and mu")
        layers[-1].activation = "tanh"  # the squashed Gaussian's mode: tanh(mean)
    spec = PolicySpec(
        algorithm=algorithm,
        obs_shape=obs_shape,
        action_shape=tuple(int(n) for n in action_space.shape),
        layers=layers,
        action_low=low,
        action_high=high,
    )
    dim = spec.obs_dim
    for i, layer in enumerate(layers):
        if layer.weight.shape[1] != dim:
            raise ValueError(f"export: layer {i} takes {layer.weight.shape[1]} inputs, expected {dim}")
        dim = layer.weight.shape[0]
    if dim != spec.action_dim:
        raise ValueError(f"export: the actor outputs {dim} values, the action space has {spec.action_dim}")
    for i, layer in enumerate(layers):
        if not (np.all(np.isfinite(layer.weight)) and np.all(np.isfinite(layer.bias))):
            raise ValueError(f"export: layer {i} has non-finite weights or biases")
    if vec_normalize is not None and getattr(vec_normalize, "norm_obs", True):
        obs_rms = getattr(vec_normalize, "obs_rms", None)
        if isinstance(obs_rms, dict) or obs_rms is None:
            raise NotImplementedError("export: VecNormalize with Dict observations is not supported yet")
        mean = np.asarray(obs_rms.mean, dtype=np.float64).reshape(-1)
        var = np.asarray(obs_rms.var, dtype=np.float64).reshape(-1)
        if mean.size != spec.obs_dim or var.size != spec.obs_dim:
            raise ValueError(f"export: VecNormalize statistics have {mean.size} values, observations {spec.obs_dim}")
        spec.obs_mean = mean.astype(np.float32)
        spec.obs_inv_std = (1.0 / np.sqrt(var + float(vec_normalize.epsilon))).astype(np.float32)
        spec.clip_obs = float(vec_normalize.clip_obs)
    return spec


def export(model: Any, path: str | os.PathLike[str], format: str = "sparse", vec_normalize: Any = None) -> list[Path]:
    """Export the deterministic policy of ``model`` to ``path`` (see the module docstring for the formats).

    :param model: a trained TD3/SAC model (dense SB3 or sparse from this package) or its policy.
    :param path: the file to write. ``"onnx"`` and ``"sparse"`` write exactly this file (suggested suffixes
        ``.onnx`` and ``.npz``); ``"c"`` writes ``<stem>.c`` and ``<stem>.h`` (``path`` with or without ``.c``).
    :param format: ``"onnx"``, ``"sparse"`` or ``"c"``.
    :param vec_normalize: the ``VecNormalize`` the model was trained with, to include its observation
        normalisation (the exported policy then takes raw observations).
    :return: the paths written.
    :raises ValueError: for an unknown format.
    :raises NotImplementedError: for observation spaces or networks not supported yet (Dict, images, gSDE, ...).
    :raises OSError: when the destination cannot be written; nothing is left behind then.
    """
    if format not in FORMATS:
        raise ValueError(f"export: unknown format {format!r}, expected one of {', '.join(map(repr, FORMATS))}")
    spec = policy_spec(model, vec_normalize)
    target = Path(path)
    if format == "onnx":
        data = onnx_bytes(spec)
        return _write_files([(target, data)])
    if format == "sparse":
        return _write_files([(target, sparse_bytes(spec))])
    stem = target.with_suffix("") if target.suffix in (".c", ".h") else target
    c_path, h_path = stem.with_name(stem.name + ".c"), stem.with_name(stem.name + ".h")
    source, header = c_source(spec, h_path.name)
    return _write_files([(h_path, header.encode()), (c_path, source.encode())])


def _write_files(files: Sequence[tuple[Path, bytes | Callable[[Any], None]]]) -> list[Path]:
    """Write every file to a temporary file beside it, then rename them all into place.

    :raises OSError: naming the destination; every temporary file is removed and nothing is renamed (should a
        rename itself fail, the files already renamed are removed too).
    """
    temps: list[tuple[str, Path]] = []
    try:
        for target, content in files:
            if target.is_dir():
                raise IsADirectoryError(f"{target} is a directory")
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            temps.append((temp, target))
            with os.fdopen(fd, "wb") as handle:
                if isinstance(content, bytes):
                    handle.write(content)
                else:
                    content(handle)
    except OSError as error:
        for temp, _ in temps:
            Path(temp).unlink(missing_ok=True)
        raise OSError(f"export: cannot write {target}: {error}") from error
    except BaseException:
        for temp, _ in temps:
            Path(temp).unlink(missing_ok=True)
        raise
    written = []
    try:
        for temp, target in temps:
            os.chmod(temp, 0o644)
            os.replace(temp, target)
            written.append(target)
    except OSError as error:
        for temp, _ in temps:
            Path(temp).unlink(missing_ok=True)
        for done in written:
            done.unlink(missing_ok=True)
        raise OSError(f"export: cannot write {target}: {error}") from error
    return written


# ----------------------------------------------------------------------------------------------------------- ONNX


def onnx_bytes(spec: PolicySpec, opset: int = 17) -> bytes:
    """The policy as a serialised ONNX model: input ``obs`` ``(batch, obs_dim)`` float32, output ``action``.

    Dense weights (``Gemm`` nodes); the observation normalisation and action rescaling are ``Sub``/``Mul``/
    ``Clip``/``Add`` nodes around them.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("export(format='onnx') needs the onnx package: pip install 'sb3-dst[export]'") from error

    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    x = "obs"
    if spec.obs_mean is not None and spec.obs_inv_std is not None and spec.clip_obs is not None:
        nodes.append(helper.make_node("Sub", [x, const("obs_mean", spec.obs_mean)], ["obs_centred"]))
        nodes.append(helper.make_node("Mul", ["obs_centred", const("obs_inv_std", spec.obs_inv_std)], ["obs_scaled"]))
        clip = np.float32(spec.clip_obs)
        low, high = const("clip_low", np.array(-clip)), const("clip_high", np.array(clip))
        nodes.append(helper.make_node("Clip", ["obs_scaled", low, high], ["obs_normalized"]))
        x = "obs_normalized"
    for i, layer in enumerate(spec.layers):
        out = f"h{i}"
        w, b = const(f"layer{i}.weight", layer.weight), const(f"layer{i}.bias", layer.bias)
        nodes.append(helper.make_node("Gemm", [x, w, b], [out], transB=1))
        if layer.activation != "identity":
            op = {"relu": "Relu", "tanh": "Tanh"}[layer.activation]
            nodes.append(helper.make_node(op, [out], [f"{out}_{layer.activation}"]))
            out = f"{out}_{layer.activation}"
        x = out
    nodes.append(helper.make_node("Add", [x, const("one", np.array(1.0))], ["squashed_plus_one"]))
    nodes.append(helper.make_node("Mul", ["squashed_plus_one", const("half_range", half_range(spec))], ["scaled"]))
    nodes.append(helper.make_node("Add", ["scaled", const("action_low", spec.action_low)], ["action"]))
    graph = helper.make_graph(
        nodes,
        f"sb3_dst_{spec.algorithm}_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", spec.obs_dim])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", spec.action_dim])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="sb3_dst", ir_version=8
    )
    model.metadata_props.add(key="sb3_dst", value=json.dumps(_metadata(spec, "sb3_dst.onnx")))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _metadata(spec: PolicySpec, format: str = "sb3_dst.sparse") -> dict[str, Any]:
    """What the files record besides the arrays: algorithm, shapes, activations, layouts, normalisation."""
    return {
        "format": format,
        "version": SPARSE_FORMAT_VERSION,
        "algorithm": spec.algorithm,
        "obs_shape": list(spec.obs_shape),
        "action_shape": list(spec.action_shape),
        "activations": [layer.activation for layer in spec.layers],
        "layouts": ["csr" if layer.is_csr else "dense" for layer in spec.layers],
        "normalize": spec.obs_mean is not None,
        "clip_obs": spec.clip_obs,
    }


# ------------------------------------------------------------------------------------------------- sparse (.npz)


def sparse_arrays(spec: PolicySpec) -> dict[str, np.ndarray]:
    """The arrays of the ``"sparse"`` format (names as in the ``.npz`` file).

    ``meta`` (JSON: algorithm, shapes, activations, per-layer layout ``"csr"``/``"dense"``, normalisation),
    ``action_low``, ``action_high``, optionally ``obs_mean``, ``obs_inv_std``; per layer ``i`` its bias
    ``layer{i}.bias`` and either ``layer{i}.indptr``/``.indices``/``.data``/``.shape`` (CSR) or ``layer{i}.weight``.
    """
    arrays: dict[str, np.ndarray] = {
        "meta": np.array(json.dumps(_metadata(spec))),
        "action_low": spec.action_low,
        "action_high": spec.action_high,
    }
    if spec.obs_mean is not None and spec.obs_inv_std is not None:
        arrays["obs_mean"] = spec.obs_mean
        arrays["obs_inv_std"] = spec.obs_inv_std
    for i, layer in enumerate(spec.layers):
        arrays[f"layer{i}.bias"] = layer.bias
        if layer.is_csr:
            indptr, indices, data = layer.csr()
            index_type = np.uint16 if layer.weight.shape[1] <= np.iinfo(np.uint16).max + 1 else np.int32
            arrays[f"layer{i}.indptr"] = indptr
            arrays[f"layer{i}.indices"] = indices.astype(index_type)
            arrays[f"layer{i}.data"] = data
            arrays[f"layer{i}.shape"] = np.array(layer.weight.shape, dtype=np.int64)
        else:
            arrays[f"layer{i}.weight"] = layer.weight
    return arrays


def sparse_bytes(spec: PolicySpec) -> Callable[[Any], None]:
    """A writer of the ``"sparse"`` file (compressed ``.npz``) to an open binary file."""
    arrays = sparse_arrays(spec)
    # no object arrays, so nothing is pickled (the stubs read ``**arrays`` as possibly ``allow_pickle``)
    return lambda handle: np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------ C


def _float_literal(value: np.floating | float) -> str:
    """A C float literal that reads back as exactly ``value`` (NumPy's shortest float32 repr, then ``f``)."""
    text = str(np.float32(value))
    if not any(c in text for c in ".en"):
        text += ".0"
    return text + "f"


def _c_array(ctype: str, name: str, values: np.ndarray, literal: Callable[[Any], str]) -> str:
    """``static const ctype name[n] = {...};`` with 8 values a line (a dummy element for empty arrays)."""
    items = [literal(v) for v in values.reshape(-1)] or ["0"]
    lines = [", ".join(items[i : i + 8]) for i in range(0, len(items), 8)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(items)}] = {{\n    {body}\n}};\n"


_C_CSR = """
/* y = W x + b for a CSR W (four partial sums per row: independent chains of additions) */
static void csr_layer(int n_out, const int32_t *indptr, const INDEX_T *indices, const float *data,
                      const float *bias, const float *x, float *y)
{
    int i, k;
    for (i = 0; i < n_out; ++i) {
        int end = indptr[i + 1];
        float s0 = bias[i], s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        for (k = indptr[i]; k + 3 < end; k += 4) {
            s0 += data[k] * x[indices[k]];
            s1 += data[k + 1] * x[indices[k + 1]];
            s2 += data[k + 2] * x[indices[k + 2]];
            s3 += data[k + 3] * x[indices[k + 3]];
        }
        for (; k < end; ++k) s0 += data[k] * x[indices[k]];
        y[i] = (s0 + s1) + (s2 + s3);
    }
}
"""

_C_DENSE = """
/* y = W x + b for a dense W stored transposed (row j: the weights of input j), skipping zero inputs;
   the inner loop has no reduction, so compilers vectorise it */
static void dense_layer(int n_in, int n_out, const float *weight_t, const float *bias, const float *x, float *y)
{
    int i, j;
    for (i = 0; i < n_out; ++i) y[i] = bias[i];
    for (j = 0; j < n_in; ++j) {
        const float xj = x[j];
        const float *w = weight_t + (long)j * n_out;
        if (xj == 0.0f) continue;
        for (i = 0; i < n_out; ++i) y[i] += w[i] * xj;
    }
}
"""


def c_source(spec: PolicySpec, header_name: str) -> tuple[str, str]:
    """The C99 source and header of the policy: ``void sb3_dst_policy(const float *obs, float *action)``.

    Sparse layers (fewer than :data:`C_CSR_BELOW` of their weights present) are CSR (``static const`` row
    pointers, column indices and values); the others are ``static const`` matrices stored transposed
    (input-major), which lets compilers vectorise them without reordering any sum. Two stack buffers of the
    widest layer hold the activations; nothing is allocated and only ``tanhf`` of ``<math.h>`` is called.
    """
    csr = [layer.density < C_CSR_BELOW for layer in spec.layers]
    guard = "SB3_DST_POLICY_" + "".join(c if c.isalnum() else "_" for c in header_name.upper())
    widths = [spec.obs_dim] + [layer.weight.shape[0] for layer in spec.layers]
    header = (
        f"/* Deterministic {spec.algorithm.upper()} policy exported by sb3_dst (do not edit). */\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"#define SB3_DST_OBS_DIM {spec.obs_dim}\n#define SB3_DST_ACTION_DIM {spec.action_dim}\n\n"
        '#ifdef __cplusplus\nextern "C" {\n#endif\n\n'
        "/* action[SB3_DST_ACTION_DIM] = policy(obs[SB3_DST_OBS_DIM]):\n"
        "   raw observations in, actions in the environment's bounds out */\n"
        "void sb3_dst_policy(const float *obs, float *action);\n\n"
        "#ifdef __cplusplus\n}\n#endif\n\n"
        f"#endif /* {guard} */\n"
    )
    small_indices = all(layer.weight.shape[1] <= 65536 for layer in spec.layers)
    index_type = "uint16_t" if small_indices else "int32_t"
    parts = [
        f"/* Deterministic {spec.algorithm.upper()} policy exported by sb3_dst (do not edit).\n"
        f" * Layers: {' -> '.join(map(str, widths))}; "
        f"{', '.join('CSR' if is_csr else 'dense' for is_csr in csr)}. C99, no allocation. */\n"
        f'#include "{header_name}"\n#include <math.h>\n#include <stdint.h>\n\n'
        f"#define SB3_DST_MAX_WIDTH {max(widths)}\n#define INDEX_T {index_type}\n"
    ]
    if any(csr):
        parts.append(_C_CSR)
    if not all(csr):
        parts.append(_C_DENSE)
    parts.append("\n")

    def int_literal(v: Any) -> str:
        return str(int(v))

    if spec.obs_mean is not None and spec.obs_inv_std is not None:
        parts.append(_c_array("float", "OBS_MEAN", spec.obs_mean, _float_literal))
        parts.append(_c_array("float", "OBS_INV_STD", spec.obs_inv_std, _float_literal))
    parts.append(_c_array("float", "ACTION_LOW", spec.action_low, _float_literal))
    parts.append(_c_array("float", "ACTION_HALF_RANGE", half_range(spec), _float_literal))
    for i, layer in enumerate(spec.layers):
        parts.append(_c_array("float", f"L{i}_BIAS", layer.bias, _float_literal))
        if csr[i]:
            indptr, indices, data = layer.csr()
            parts.append(_c_array("int32_t", f"L{i}_INDPTR", indptr, int_literal))
            parts.append(_c_array("INDEX_T", f"L{i}_INDICES", indices, int_literal))
            parts.append(_c_array("float", f"L{i}_DATA", data, _float_literal))
        else:
            parts.append(_c_array("float", f"L{i}_WEIGHT_T", layer.weight.T, _float_literal))
    body = [
        "\nvoid sb3_dst_policy(const float *obs, float *action)\n{\n",
        "    float a[SB3_DST_MAX_WIDTH], b[SB3_DST_MAX_WIDTH];\n    int i;\n\n",
    ]
    if spec.obs_mean is not None:
        clip = _float_literal(spec.clip_obs if spec.clip_obs is not None else np.inf)
        body.append(
            f"    for (i = 0; i < {spec.obs_dim}; ++i) {{\n"
            "        float v = (obs[i] - OBS_MEAN[i]) * OBS_INV_STD[i];\n"
            f"        a[i] = v < -{clip} ? -{clip} : (v > {clip} ? {clip} : v);\n    }}\n"
        )
    else:
        body.append(f"    for (i = 0; i < {spec.obs_dim}; ++i) a[i] = obs[i];\n")
    src, dst = "a", "b"
    for i, layer in enumerate(spec.layers):
        n_out, n_in = layer.weight.shape
        if csr[i]:
            body.append(f"    csr_layer({n_out}, L{i}_INDPTR, L{i}_INDICES, L{i}_DATA, L{i}_BIAS, {src}, {dst});\n")
        else:
            body.append(f"    dense_layer({n_in}, {n_out}, L{i}_WEIGHT_T, L{i}_BIAS, {src}, {dst});\n")
        if layer.activation == "relu":
            body.append(f"    for (i = 0; i < {n_out}; ++i) {dst}[i] = {dst}[i] > 0.0f ? {dst}[i] : 0.0f;\n")
        elif layer.activation == "tanh":
            body.append(f"    for (i = 0; i < {n_out}; ++i) {dst}[i] = tanhf({dst}[i]);\n")
        src, dst = dst, src
    body.append(
        f"    for (i = 0; i < {spec.action_dim}; ++i)\n"
        f"        action[i] = ACTION_LOW[i] + ({src}[i] + 1.0f) * ACTION_HALF_RANGE[i];\n"
    )
    body.append("}\n")
    return "".join(parts) + "".join(body), header
