"""Inference of a policy exported with ``sb3_dst.export.export(model, path, format="sparse")``, NumPy only.

:class:`SparsePolicy` loads the ``.npz`` file and computes ``model.predict(obs, deterministic=True)`` without
torch or Stable-Baselines3. With Numba installed (a dependency of sb3-dst) the forward pass is compiled:

- one observation: a single fused call runs every layer. Layers are walked column by column (CSC), skipping
  inputs that are zero, which after a ReLU is about half of them; sparse layers scatter their few connections,
  layers denser than :data:`DENSE_ABOVE` use a dense transposed matrix whose column updates are vectorised.
- a batch: activations are kept feature-major (``features × batch``), so each connection of a sparse layer is one
  vectorised update of a whole row of the batch; dense layers use NumPy's matrix product.

Without Numba (or with ``backend="numpy"``) every layer is a dense NumPy matrix product.
The first call of a process compiles the kernels (a few seconds), cached on disk afterwards.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DENSE_ABOVE", "SparsePolicy"]

#: A layer whose fraction of non-zero weights is above this is computed densely by the compiled kernels: a dense
#: column update is vectorised (16 floats per instruction), a sparse one is not.
DENSE_ABOVE = 0.3

#: Dense layers with fewer outputs than this compute one dot product per output (vectorised over the inputs) in
#: the single-observation kernel; wider ones add the columns of their non-zero inputs (vectorised over outputs).
NARROW_BELOW = 32

_ACTIVATION_CODES = {"identity": 0, "relu": 1, "tanh": 2}
_HEADER = 10  # int64 values before the per-layer records of the fused kernel's metadata
_RECORD = 8  # int64 values per layer

_kernels: Any = None

#: LLVM's fast-math flags for the kernels: sums may be reordered (vectorised dot products) and fused into FMAs,
#: but NaN and infinity keep their meaning (no ``nnan``/``ninf``), so a NaN or infinite observation propagates
#: or is clipped as in torch.
_FASTMATH = {"contract", "reassoc", "nsz", "arcp"}


def _compile() -> Any:
    import math

    import numba

    @numba.njit(cache=True, nogil=True, fastmath=_FASTMATH)
    def forward_one(obs, fdata, ints, out):  # type: ignore[no-untyped-def]
        """All layers for one observation; ``fdata`` (float32) and ``ints`` (uint32) as packed by ``_pack``.

        Each layer first lists its non-zero inputs (branch-free), then adds their columns: a scatter of the
        column's connections for sparse layers (CSC), a vectorised update of the whole output for wide dense
        ones; narrow dense layers (the output layer) take one vectorised dot product per output.
        """
        i64 = np.int64  # uint32 values are widened first: NumPy's rules would mix uint64 and int64 into floats
        n_layers, width, obs_dim, act_dim, normalize = i64(ints[0]), i64(ints[1]), i64(ints[2]), i64(ints[3]), ints[4]
        mean_off, inv_off, clip_off, low_off, half_off = (
            i64(ints[5]),
            i64(ints[6]),
            i64(ints[7]),
            i64(ints[8]),
            i64(ints[9]),
        )
        cur = np.empty(width, np.float32)
        nxt = np.empty(width, np.float32)
        active = np.empty(width, np.uint32)
        if normalize:
            clip = fdata[clip_off]
            mean = fdata[mean_off : mean_off + obs_dim]
            inv_std = fdata[inv_off : inv_off + obs_dim]
            for j in range(obs_dim):
                v = (obs[j] - mean[j]) * inv_std[j]
                cur[j] = min(max(v, -clip), clip)
        else:
            for j in range(obs_dim):
                cur[j] = obs[j]
        for layer in range(n_layers):
            r = _HEADER + _RECORD * layer
            kind, n_in, n_out, act = ints[r], i64(ints[r + 1]), i64(ints[r + 2]), ints[r + 3]
            ptr_off, idx_off, w_off, b_off = i64(ints[r + 4]), i64(ints[r + 5]), i64(ints[r + 6]), i64(ints[r + 7])
            bias = fdata[b_off : b_off + n_out]
            for i in range(n_out):
                nxt[i] = bias[i]
            n_active = 0
            for j in range(n_in):
                active[n_active] = j
                n_active += cur[j] != 0.0
            if kind == 0:  # CSC: column pointers and row indices in ints, values in fdata
                colptr = ints[ptr_off : ptr_off + n_in + 1]
                nnz = i64(colptr[n_in])
                rows = ints[idx_off : idx_off + nnz]
                vals = fdata[w_off : w_off + nnz]
                for q in range(n_active):
                    j = active[q]
                    xj = cur[j]
                    for k in range(colptr[j], colptr[j + 1]):
                        nxt[rows[k]] += vals[k] * xj
            elif kind == 2:  # dense, row-major: one vectorised dot product per output (narrow layers)
                for i in range(n_out):
                    w = fdata[w_off + i * n_in : w_off + (i + 1) * n_in]
                    s = nxt[i]
                    for j in range(n_in):
                        s += w[j] * cur[j]
                    nxt[i] = s
            else:  # dense, transposed: n_in rows of n_out values
                for q in range(n_active):
                    j = active[q]
                    xj = cur[j]
                    row = w_off + j * n_out
                    w = fdata[row : row + n_out]
                    for i in range(n_out):
                        nxt[i] += w[i] * xj
            if act == 1:
                for i in range(n_out):
                    nxt[i] = max(nxt[i], np.float32(0.0))
            elif act == 2:
                for i in range(n_out):
                    nxt[i] = math.tanh(nxt[i])
            cur, nxt = nxt, cur
        low = fdata[low_off : low_off + act_dim]
        half = fdata[half_off : half_off + act_dim]
        for i in range(act_dim):
            out[i] = low[i] + (cur[i] + np.float32(1.0)) * half[i]

    @numba.njit(cache=True, nogil=True, fastmath=_FASTMATH)
    def spmm_t(indptr, indices, data, bias, xt, yt):  # type: ignore[no-untyped-def]
        """``yt = W @ xt + bias[:, None]`` for a CSR ``W`` and feature-major ``xt`` (features × batch)."""
        n_batch = xt.shape[1]
        for i in range(yt.shape[0]):
            row = yt[i]
            b = bias[i]
            for n in range(n_batch):
                row[n] = b
            for k in range(indptr[i], indptr[i + 1]):
                w = data[k]
                src = xt[indices[k]]
                for n in range(n_batch):
                    row[n] += w * src[n]

    return forward_one, spmm_t


def _get_kernels() -> Any:
    global _kernels
    if _kernels is None:
        try:
            _kernels = _compile()
        except ImportError:
            _kernels = False
    return _kernels or None


class SparsePolicy:
    """A deterministic policy exported in the ``"sparse"`` format; :meth:`predict` needs NumPy only.

    :param arrays: the arrays of the file (see :func:`sb3_dst.export.sparse_arrays`).
    :param backend: ``"auto"`` (compiled kernels when Numba is importable), ``"numba"`` or ``"numpy"``.
    """

    def __init__(self, arrays: dict[str, np.ndarray], backend: str = "auto"):
        if backend not in ("auto", "numba", "numpy"):
            raise ValueError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}")
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != "sb3_dst.sparse" or meta.get("version") != 1:
            raise ValueError(
                "not an sb3_dst sparse policy file (or one of a newer version): its 'meta' entry says "
                f"format={meta.get('format')!r}, version={meta.get('version')!r}"
            )
        self.meta: dict[str, Any] = meta
        self.algorithm: str = meta["algorithm"]
        self.obs_shape: tuple[int, ...] = tuple(meta["obs_shape"])
        self.action_shape: tuple[int, ...] = tuple(meta["action_shape"])
        self.obs_dim = int(np.prod(self.obs_shape))
        self.action_dim = int(np.prod(self.action_shape))
        self.activations: list[str] = list(meta["activations"])
        self._flat = len(self.obs_shape) == 1 and len(self.action_shape) == 1
        self.action_low = np.asarray(arrays["action_low"], dtype=np.float32)
        self.action_half_range = (np.float32(0.5) * (arrays["action_high"] - self.action_low)).astype(np.float32)
        self.normalize = bool(meta["normalize"])
        self.obs_mean = np.asarray(arrays["obs_mean"], np.float32) if self.normalize else None
        self.obs_inv_std = np.asarray(arrays["obs_inv_std"], np.float32) if self.normalize else None
        self.clip_obs = np.float32(meta["clip_obs"]) if self.normalize else None
        #: per layer: (indptr, indices, data, n_out, n_in) or None for dense layers; dense weights; biases
        self.csr: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        for i in range(len(self.activations)):
            self.biases.append(np.ascontiguousarray(arrays[f"layer{i}.bias"], dtype=np.float32))
            if f"layer{i}.weight" in arrays:
                weight = np.ascontiguousarray(arrays[f"layer{i}.weight"], dtype=np.float32)
                self.csr.append(None)
            else:
                indptr = np.asarray(arrays[f"layer{i}.indptr"], dtype=np.int32)
                indices = np.asarray(arrays[f"layer{i}.indices"], dtype=np.int32)
                data = np.asarray(arrays[f"layer{i}.data"], dtype=np.float32)
                shape = tuple(int(n) for n in arrays[f"layer{i}.shape"])
                weight = np.zeros(shape, dtype=np.float32)
                rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
                weight[rows, indices] = data
                self.csr.append((indptr, indices, data))
            self.weights.append(weight)
        #: stored connections per layer (CSR entries, or non-zero weights of dense layers)
        self.connections = [
            int(np.count_nonzero(w)) if csr is None else csr[2].size
            for w, csr in zip(self.weights, self.csr, strict=True)
        ]
        self.densities = [n / max(w.size, 1) for n, w in zip(self.connections, self.weights, strict=True)]
        kernels = None if backend == "numpy" else _get_kernels()
        if backend == "numba" and kernels is None:
            raise ImportError("backend='numba' needs Numba installed")
        self.backend = "numba" if kernels is not None else "numpy"
        self._kernels = kernels
        # the NumPy path computes x @ W.T with W.T contiguous; the compiled one has its own layouts
        self._weights_t = [np.ascontiguousarray(w.T) for w in self.weights] if kernels is None else []
        if kernels is not None:
            self._fdata, self._ints = self._pack()

    @classmethod
    def load(cls, path: str | os.PathLike[str], backend: str = "auto") -> SparsePolicy:
        """Load a file written by ``export(model, path, format="sparse")``.

        :raises ValueError: if the file is not such a file (not an ``.npz`` archive, or one without the sparse
            policy's arrays), naming it.
        """
        path = Path(path)
        what = f'{path} is not a sparse policy written by export(model, path, format="sparse")'
        if path.is_file() and not zipfile.is_zipfile(path):
            raise ValueError(f"{what}: it is not an .npz archive (a damaged, truncated or other file); export it again")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        if "meta" not in arrays:
            raise ValueError(f"{what}: the archive has no 'meta' entry (it holds {sorted(arrays) or 'nothing'})")
        try:
            return cls(arrays, backend=backend)
        except KeyError as error:
            raise ValueError(f"{what}: the array {error} is missing (an incomplete file); export it again") from None

    def _pack(self) -> tuple[np.ndarray, np.ndarray]:
        """The fused kernel's arrays: every float (float32), and every index and offset (uint32).

        ``ints`` starts with a header (layer count, widest layer, dimensions, offsets of the normalisation and
        action rescaling in ``fdata``) and one record per layer (kind, ``n_in``, ``n_out``, activation, offsets
        of its column pointers and row indices in ``ints``, of its weights and bias in ``fdata``).
        """
        floats: list[np.ndarray] = []
        n_floats = 0

        def put_f(values: np.ndarray) -> int:
            nonlocal n_floats
            floats.append(np.asarray(values, dtype=np.float32).reshape(-1))
            n_floats += floats[-1].size
            return n_floats - floats[-1].size

        n_layers = len(self.weights)
        index_lists: list[np.ndarray] = []
        n_ints = _HEADER + _RECORD * n_layers

        def put_i(values: np.ndarray) -> int:
            nonlocal n_ints
            index_lists.append(np.asarray(values, dtype=np.uint32).reshape(-1))
            n_ints += index_lists[-1].size
            return n_ints - index_lists[-1].size

        widths = [self.obs_dim] + [w.shape[0] for w in self.weights]
        header = [n_layers, max(widths), self.obs_dim, self.action_dim, int(self.normalize)]
        if self.normalize:
            assert self.obs_mean is not None and self.obs_inv_std is not None and self.clip_obs is not None
            header += [put_f(self.obs_mean), put_f(self.obs_inv_std), put_f(np.array([self.clip_obs]))]
        else:
            header += [0, 0, 0]
        header += [put_f(self.action_low), put_f(self.action_half_range)]
        records: list[int] = []
        for weight, bias, activation, density in zip(
            self.weights, self.biases, self.activations, self.densities, strict=True
        ):
            n_out, n_in = weight.shape
            code = _ACTIVATION_CODES[activation]
            b_off = put_f(bias)
            if density > DENSE_ABOVE and n_out < NARROW_BELOW:
                records += [2, n_in, n_out, code, 0, 0, put_f(weight), b_off]
            elif density > DENSE_ABOVE:
                records += [1, n_in, n_out, code, 0, 0, put_f(weight.T), b_off]
            else:
                cols, rows = np.nonzero(weight.T)  # column-major order: CSC
                colptr = np.zeros(n_in + 1, dtype=np.int64)
                np.cumsum(np.bincount(cols, minlength=n_in), out=colptr[1:])
                ptr_off, idx_off = put_i(colptr), put_i(rows)
                records += [0, n_in, n_out, code, ptr_off, idx_off, put_f(weight[rows, cols]), b_off]
        if n_ints >= 2**32 or n_floats >= 2**32:
            raise ValueError("the policy is too large for the single-observation kernel")
        fdata = np.concatenate(floats)
        ints = np.concatenate([np.array(header + records, dtype=np.uint32), *index_lists])
        return fdata, ints

    def predict(self, obs: Any) -> np.ndarray:
        """The deterministic action(s) for one observation (shape ``obs_shape``) or a batch (``(n, *obs_shape)``).

        :return: float32 action ``action_shape`` for one observation, ``(n, *action_shape)`` for a batch, like
            ``model.predict(obs, deterministic=True)[0]``.
        """
        x = np.asarray(obs, dtype=np.float32)
        if x.shape == self.obs_shape and self._kernels is not None:  # the fast path: one observation
            out = np.empty(self.action_shape, dtype=np.float32)
            if self._flat:
                self._kernels[0](x, self._fdata, self._ints, out)
            else:
                self._kernels[0](x.reshape(-1), self._fdata, self._ints, out.reshape(-1))
            return out
        single = x.ndim == len(self.obs_shape)
        if x.shape[x.ndim - len(self.obs_shape) :] != self.obs_shape or x.ndim > len(self.obs_shape) + 1:
            raise ValueError(
                f"expected observations of shape {self.obs_shape} or (n, *{self.obs_shape}), got {x.shape}"
            )
        if self._kernels is not None and x.shape[0] == 1:
            out = np.empty((1, *self.action_shape), dtype=np.float32)
            self._kernels[0](x.reshape(-1), self._fdata, self._ints, out.reshape(-1))
            return out
        actions = self._forward_batch(x.reshape(-1, self.obs_dim))
        return actions.reshape(self.action_shape if single else (-1, *self.action_shape))

    def _normalized(self, x: np.ndarray) -> np.ndarray:
        if self.obs_mean is None or self.obs_inv_std is None or self.clip_obs is None:
            return x
        return np.clip((x - self.obs_mean) * self.obs_inv_std, -self.clip_obs, self.clip_obs).astype(np.float32)

    def _forward_batch(self, x: np.ndarray) -> np.ndarray:
        """``(n, obs_dim)`` float32 to ``(n, action_dim)``."""
        x = self._normalized(x)
        if self._kernels is None:
            for weight_t, bias, activation in zip(self._weights_t, self.biases, self.activations, strict=True):
                x = _activate(x @ weight_t + bias, activation)
            return self.action_low + (x + np.float32(1.0)) * self.action_half_range
        spmm_t = self._kernels[1]
        xt = np.ascontiguousarray(x.T)
        for weight, bias, csr, activation, density in zip(
            self.weights, self.biases, self.csr, self.activations, self.densities, strict=True
        ):
            if csr is None or density > DENSE_ABOVE:
                yt = weight @ xt
                yt += bias[:, None]
            else:
                yt = np.empty((weight.shape[0], xt.shape[1]), dtype=np.float32)
                spmm_t(csr[0], csr[1], csr[2], bias, xt, yt)
            xt = _activate(yt, activation)
        return (self.action_low + (xt.T + np.float32(1.0)) * self.action_half_range).astype(np.float32)

    @property
    def n_parameters(self) -> int:
        """Stored connections plus biases."""
        return sum(self.connections) + sum(b.size for b in self.biases)


def _activate(x: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(x, np.float32(0.0), out=x)
    if activation == "tanh":
        return np.tanh(x, out=x)
    return x
