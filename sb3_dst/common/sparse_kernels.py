"""The compiled kernels of the ``"sparse"`` backend (``_sparse_kernels.c``), built on first use and cached.

The C source is compiled once per machine with the system C compiler (``$CC``, else ``cc``) at ``-O3
-march=native``, into ``$SB3_DST_KERNEL_CACHE`` (default ``~/.cache/sb3-dst/kernels``), under a name that
digests the source, the compiler and the CPU's features; it is loaded with :mod:`ctypes`. Without a C compiler
:func:`load_kernels` returns None and the layers stay on the masked path (:mod:`sb3_dst.common.sparse_backend`
says so once in the log).

The functions here take torch tensors, check what the C code relies on (dtype, contiguity, shapes) and pass
their pointers. All tensors are CPU float32 (values) or int32 (indices).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch as th

__all__ = ["KernelsUnavailable", "adam", "load_kernels", "row_affine", "row_moments", "row_sums", "sddmm", "spmm"]

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("_sparse_kernels.c")
_FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-fno-math-errno", "-fPIC", "-shared", "-std=c11"]


class KernelsUnavailable(RuntimeError):
    """The sparse kernels cannot be built here (no C compiler, or it failed)."""


def _cache_dir() -> Path:
    return Path(os.environ.get("SB3_DST_KERNEL_CACHE", Path.home() / ".cache" / "sb3-dst" / "kernels"))


def _cpu_features() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((line for line in cpuinfo if line.startswith(("flags", "Features"))), "")
    except OSError:
        return ""


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")


@functools.cache
def _library_path() -> Path:
    compiler = _compiler()
    if compiler is None:
        raise KernelsUnavailable("no C compiler found (set $CC, or install gcc or clang)")
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise KernelsUnavailable(f"the C compiler {compiler} does not run: {error}") from error
    digest = hashlib.sha1("\0".join([SOURCE.read_text(), version, " ".join(_FLAGS), _cpu_features()]).encode())
    path = _cache_dir() / f"sb3dst_sparse_{digest.hexdigest()[:16]}.so"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:  # build aside, then rename: concurrent builds are safe
        built = Path(tmp) / path.name
        result = subprocess.run(
            [compiler, *_FLAGS, str(SOURCE), "-o", str(built), "-lm"], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise KernelsUnavailable(f"compiling {SOURCE.name} failed:\n{result.stderr.strip()}")
        os.replace(built, path)
    return path


_P = ctypes.c_void_p
_I = ctypes.c_int64
_F = ctypes.c_float


@functools.cache
def _library() -> Any:
    library = ctypes.CDLL(str(_library_path()))
    library.sb3dst_spmm.argtypes = [_I, _I, _P, _P, _P, _P, _P, _P, _P, ctypes.c_int32]
    library.sb3dst_sddmm.argtypes = [_I, _I, _P, _P, _P, _P, _P, _P]
    library.sb3dst_adam.argtypes = [_I, _P, _P, _P, _P, _P, *([_F] * 8)]
    library.sb3dst_row_moments.argtypes = [_I, _I, _P, _P, _P]
    library.sb3dst_row_sums.argtypes = [_I, _I, _P, _P, _P, _P, _P]
    library.sb3dst_row_affine.argtypes = [_I, _I, _P, _P, _P, _P, _P, _P]
    for name in ("spmm", "sddmm", "adam", "row_moments", "row_sums", "row_affine"):
        getattr(library, f"sb3dst_{name}").restype = None
    return library


def load_kernels() -> Any | None:
    """The loaded kernel library, building it if needed; None (logged once) if it cannot be built here."""
    try:
        return _library()
    except (KernelsUnavailable, OSError) as error:
        _warn_once(str(error))
        return None


@functools.cache
def _warn_once(message: str) -> None:
    logger.warning("sb3-dst: sparse kernels unavailable, sparse layers use the masked path: %s", message)


def _check(tensor: th.Tensor, dtype: th.dtype, name: str) -> int:
    if tensor.dtype != dtype or not tensor.is_contiguous() or tensor.device.type != "cpu":
        raise ValueError(f"{name} must be a contiguous CPU {dtype} tensor, got {tensor.dtype} {tuple(tensor.shape)}")
    return int(tensor.data_ptr())


def spmm(
    ptr: th.Tensor,
    src: th.Tensor,
    pos: th.Tensor,
    weight: th.Tensor,
    bias: th.Tensor | None,
    source: th.Tensor,
    out: th.Tensor,
    relu: bool = False,
) -> th.Tensor:
    """``out[r] = bias[r] + Σ_k weight.flat[pos[k]] · source[src[k]]`` over the connections ``k`` of row ``r``
    (``ptr[r]`` to ``ptr[r + 1]``), then ReLU if ``relu``. ``source`` is n_src × B, ``out`` n_rows × B."""
    n_rows, batch = out.shape
    if ptr.numel() != n_rows + 1 or source.shape[1] != batch:
        raise ValueError(f"spmm shapes: ptr {tuple(ptr.shape)}, source {tuple(source.shape)}, out {tuple(out.shape)}")
    if bias is not None and bias.numel() != n_rows:
        raise ValueError(f"bias has {bias.numel()} entries for {n_rows} rows")
    _library().sb3dst_spmm(
        n_rows, batch, _check(ptr, th.int32, "ptr"), _check(src, th.int32, "src"), _check(pos, th.int32, "pos"),
        _check(weight, th.float32, "weight"), None if bias is None else _check(bias, th.float32, "bias"),
        _check(source, th.float32, "source"), _check(out, th.float32, "out"), int(relu),
    )  # fmt: skip
    return out


def sddmm(
    ptr: th.Tensor, src: th.Tensor, pos: th.Tensor, grad_rows: th.Tensor, source: th.Tensor, out: th.Tensor
) -> th.Tensor:
    """``out.flat[pos[k]] = grad_rows[r] · source[src[k]]`` (dot product over the batch) for every connection
    ``k`` of every row ``r``; ``out`` is not touched elsewhere."""
    n_rows, batch = grad_rows.shape
    if ptr.numel() != n_rows + 1 or source.shape[1] != batch:
        raise ValueError(f"sddmm shapes: ptr {tuple(ptr.shape)}, rows {tuple(grad_rows.shape)}, {tuple(source.shape)}")
    _library().sb3dst_sddmm(
        n_rows, batch, _check(ptr, th.int32, "ptr"), _check(src, th.int32, "src"), _check(pos, th.int32, "pos"),
        _check(grad_rows, th.float32, "grad_rows"), _check(source, th.float32, "source"),
        _check(out, th.float32, "out"),
    )  # fmt: skip
    return out


def adam(
    pos: th.Tensor,
    param: th.Tensor,
    grad: th.Tensor,
    exp_avg: th.Tensor,
    exp_avg_sq: th.Tensor,
    scalars: tuple[float, ...],
) -> None:
    """One Adam/AdamW step at the flat positions ``pos`` only (``scalars``: decay, L2, 1 − β1, β2, 1 − β2,
    √(1 − β2^t), ε, −lr / (1 − β1^t))."""
    for tensor in (grad, exp_avg, exp_avg_sq):
        if tensor.shape != param.shape:
            raise ValueError(f"adam: {tuple(tensor.shape)} does not match the parameter's {tuple(param.shape)}")
    _library().sb3dst_adam(
        pos.numel(), _check(pos, th.int32, "pos"), _check(param, th.float32, "param"),
        _check(grad, th.float32, "grad"), _check(exp_avg, th.float32, "exp_avg"),
        _check(exp_avg_sq, th.float32, "exp_avg_sq"), *scalars,
    )  # fmt: skip


def _check_rows(name: str, rows: th.Tensor, *vectors: th.Tensor) -> tuple[int, int]:
    n_rows, batch = rows.shape
    for vector in vectors:
        if vector.numel() != n_rows:
            raise ValueError(f"{name}: a per-row vector has {vector.numel()} entries for {n_rows} rows")
    return n_rows, batch


def row_moments(x: th.Tensor, mean: th.Tensor, var: th.Tensor) -> None:
    """``mean[r]`` and unbiased ``var[r]`` of each row of the feature-major n × B matrix ``x`` (B ≥ 2)."""
    n_rows, batch = _check_rows("row_moments", x, mean, var)
    if batch < 2:
        raise ValueError(f"row_moments needs at least 2 columns, got {batch}")
    _library().sb3dst_row_moments(
        n_rows, batch, _check(x, th.float32, "x"), _check(mean, th.float32, "mean"), _check(var, th.float32, "var")
    )


def row_sums(g: th.Tensor, x: th.Tensor, centre: th.Tensor, s1: th.Tensor, s2: th.Tensor) -> None:
    """``s1[r] = Σ_b g[r, b]`` and ``s2[r] = Σ_b g[r, b] (x[r, b] − centre[r])`` over n × B matrices."""
    n_rows, batch = _check_rows("row_sums", g, centre, s1, s2)
    if x.shape != g.shape:
        raise ValueError(f"row_sums: x {tuple(x.shape)} does not match g {tuple(g.shape)}")
    _library().sb3dst_row_sums(
        n_rows, batch, _check(g, th.float32, "g"), _check(x, th.float32, "x"), _check(centre, th.float32, "centre"),
        _check(s1, th.float32, "s1"), _check(s2, th.float32, "s2"),
    )  # fmt: skip


def row_affine(
    a: th.Tensor, x: th.Tensor, k: th.Tensor, out: th.Tensor, c: th.Tensor | None = None, g: th.Tensor | None = None
) -> th.Tensor:
    """``out[r, b] = a[r] x[r, b] + k[r]``, plus ``c[r] g[r, b]`` when ``g`` is given, over n × B matrices."""
    n_rows, batch = _check_rows("row_affine", x, a, k)
    if out.shape != x.shape or (g is not None and g.shape != x.shape):
        raise ValueError(f"row_affine: shapes x {tuple(x.shape)}, out {tuple(out.shape)}")
    if (c is None) != (g is None) or (c is not None and c.numel() != n_rows):
        raise ValueError("row_affine: give c and g together, c with one entry per row")
    _library().sb3dst_row_affine(
        n_rows, batch, _check(a, th.float32, "a"), _check(x, th.float32, "x"),
        None if c is None else _check(c, th.float32, "c"), None if g is None else _check(g, th.float32, "g"),
        _check(k, th.float32, "k"), _check(out, th.float32, "out"),
    )  # fmt: skip
    return out
