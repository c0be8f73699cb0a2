"""Compact storage of sparse layers in saved models: the file shrinks with density, and loads back bit for bit.

A sparse layer's tensors (its weight, its ``weight_mask`` and the optimizer state of its weight) hold one value
per position of the weight, but only the positions of the layer's connections carry information: elsewhere the
weight is zero, the mask is zero and Adam's moments are held at constants (:func:`~sb3_dst.common.masking.
settle_absent_state`). A compacted tensor is stored as a small dictionary (format version, shape, dtype and
the kinds below) with one ``uint8`` tensor of data, in this order:

- the positions of the connections (the mask's non-zeros), bit-packed (one bit per entry);
- its values at those positions, then its values elsewhere, each part either one value repeated
  (``"constant"``), two values chosen by packed bits (``"two"``: absent weights are ``+0.0`` or ``-0.0``, since
  masking a negative weight gives ``-0.0``), or every value (``"raw"``), in the machine's byte order (as
  ``torch.save`` writes tensors).

Values are compared by their bits, so every tensor is restored exactly, signs of zeros included. A tensor whose
compact form would not be smaller (a dense layer, a still-dense layer of gradual pruning) is stored as it is.

The entries are plain dictionaries of a tensor, integers and strings, which torch's ``weights_only`` loading (the
one SB3 uses) accepts. Everything here is a pure function of state dictionaries; the algorithms call
:func:`compact_parameters` when saving and :func:`expand_parameters` when loading (which leaves dense tensors,
hence files in the earlier format, as they are).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch as th

#: Key that marks a compacted tensor, with the format version as its value.
FORMAT_KEY = "sb3_dst_compact"
FORMAT_VERSION = 1
MASK_SUFFIX = "weight_mask"
#: Approximate bytes that a compacted entry adds to a file written by ``torch.save`` beyond its data (the
#: dictionary's keys and the tensor's record: about 250 bytes per tensor), to keep small tensors as they are.
ENTRY_OVERHEAD = 320

_BITS_DTYPE = {1: th.uint8, 2: th.int16, 4: th.int32, 8: th.int64}

__all__ = [
    "FORMAT_KEY",
    "FORMAT_VERSION",
    "compact_module_state",
    "compact_optimizer_state",
    "compact_parameters",
    "compact_tensor",
    "expand_parameters",
    "expand_tensor",
    "is_compact",
    "optimizer_patterns",
    "pack_bits",
    "unpack_bits",
]


class CompactFormatError(RuntimeError):
    """A compacted entry that this version cannot read."""


def pack_bits(flags: th.Tensor) -> th.Tensor:
    """Boolean tensor → ``uint8`` tensor of its flattened bits, eight per byte (most significant bit first)."""
    return th.from_numpy(np.packbits(flags.detach().reshape(-1).cpu().numpy().astype(np.bool_)))


def unpack_bits(packed: th.Tensor, count: int) -> th.Tensor:
    """Inverse of :func:`pack_bits`: the first ``count`` bits, as a flat boolean tensor (on the CPU)."""
    return th.from_numpy(np.unpackbits(packed.cpu().numpy(), count=count).astype(np.bool_))


def _bits(values: th.Tensor) -> th.Tensor:
    """The values as integers of the same width, so that equality compares bits (``-0.0 != 0.0``, NaN == NaN)."""
    return values.view(_BITS_DTYPE[values.element_size()])


def _as_bytes(values: th.Tensor) -> th.Tensor:
    return values.detach().contiguous().cpu().reshape(-1).view(th.uint8)


def _encode_values(values: th.Tensor) -> tuple[str, list[th.Tensor]]:
    """A flat tensor as one repeated value, two values chosen by packed bits, or all its values (kind and bytes)."""
    if values.numel() > 0:
        distinct, inverse = th.unique(_bits(values), return_inverse=True)
        if len(distinct) == 1:
            return "constant", [_as_bytes(values[:1])]
        if len(distinct) == 2:
            second = inverse != inverse[0]
            pair = th.cat([values[:1], values[second.nonzero()[0]]])
            return "two", [_as_bytes(pair), pack_bits(second)]
    return "raw", [_as_bytes(values)]


def _decode_values(kind: str, data: th.Tensor, count: int, dtype: th.dtype) -> tuple[th.Tensor, th.Tensor]:
    """The ``count`` values that :func:`_encode_values` encoded at the start of ``data``, and the bytes after."""
    size = th.empty((), dtype=dtype).element_size()
    if kind == "raw":
        return data[: count * size].clone().view(dtype), data[count * size :]
    if kind == "constant":
        return data[:size].clone().view(dtype).expand(count), data[size:]
    if kind == "two":
        pair = data[: 2 * size].clone().view(dtype)
        n_select = (count + 7) // 8
        select = unpack_bits(data[2 * size : 2 * size + n_select], count)
        return th.where(select, pair[1], pair[0]), data[2 * size + n_select :]
    raise CompactFormatError(f"unknown kind of compacted values {kind!r}")


def is_compact(entry: Any) -> bool:
    """Whether ``entry`` is a compacted tensor (as written by :func:`compact_tensor`)."""
    return isinstance(entry, Mapping) and FORMAT_KEY in entry


def compact_tensor(tensor: th.Tensor, present: th.Tensor) -> th.Tensor | dict[str, Any]:
    """``tensor`` in compact form given the positions ``present`` (boolean, same shape), or ``tensor`` itself when
    the compact form would not be smaller. :func:`expand_tensor` restores it bit for bit.

    The compact form is a small dictionary: the format version, the shape, the dtype, the kinds of the values at
    present and absent positions, and one ``uint8`` tensor holding the packed positions and the values' bytes.
    """
    if not tensor.is_floating_point() or tensor.shape != present.shape or tensor.numel() == 0:
        return tensor
    flat, where = tensor.detach().reshape(-1), present.detach().reshape(-1).to(device=tensor.device, dtype=th.bool)
    present_kind, present_bytes = _encode_values(flat[where])
    absent_kind, absent_bytes = _encode_values(flat[~where])
    data = th.cat([pack_bits(where), *present_bytes, *absent_bytes])
    if data.numel() + ENTRY_OVERHEAD >= tensor.numel() * tensor.element_size():
        return tensor
    return {
        FORMAT_KEY: FORMAT_VERSION,
        "shape": list(tensor.shape),
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "present": present_kind,
        "absent": absent_kind,
        "data": data.to(tensor.device),
    }


def expand_tensor(entry: Mapping[str, Any]) -> th.Tensor:
    """The tensor that :func:`compact_tensor` compacted (same bits, dtype and shape; on the device of its data)."""
    version = entry[FORMAT_KEY]
    if version != FORMAT_VERSION:
        raise CompactFormatError(
            f"this file holds compacted tensors of format {version}; this version of sb3-dst reads format "
            f"{FORMAT_VERSION} (and dense files): upgrade sb3-dst to load it"
        )
    dtype = getattr(th, str(entry["dtype"]), None)
    if not isinstance(dtype, th.dtype):
        raise CompactFormatError(f"unknown dtype {entry['dtype']!r} in a compacted tensor")
    shape = [int(n) for n in entry["shape"]]
    count = int(np.prod(shape, dtype=np.int64))
    data = entry["data"]
    n_pattern = (count + 7) // 8
    where = unpack_bits(data[:n_pattern], count)
    n_present = int(where.sum())
    present, rest = _decode_values(str(entry["present"]), data[n_pattern:].cpu(), n_present, dtype)
    absent, rest = _decode_values(str(entry["absent"]), rest, count - n_present, dtype)
    if rest.numel():
        raise CompactFormatError(f"a compacted tensor has {rest.numel()} bytes more than its values")
    out = th.empty(count, dtype=dtype)
    out[where] = present
    out[~where] = absent
    return out.reshape(shape).to(data.device)


def _like(source: Mapping[Any, Any], items: dict[Any, Any]) -> dict[Any, Any]:
    """``items`` in a mapping of the type of ``source`` (an ``OrderedDict`` state dict keeps its ``_metadata``)."""
    result = type(source)(items) if isinstance(source, dict) else dict(items)
    metadata = getattr(source, "_metadata", None)
    if metadata is not None:
        result._metadata = metadata  # type: ignore[attr-defined]
    return result


def compact_module_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A module's state dict with each sparse layer's weight and mask compacted by the mask's non-zeros.

    A sparse layer is recognised by its ``<prefix>weight_mask`` entry beside ``<prefix>weight`` of the same shape
    (target layers included: their mask holds their non-zero pattern when the state dict is taken).
    """
    items = dict(state.items())
    for key, mask in state.items():
        if not key.endswith(MASK_SUFFIX) or not isinstance(mask, th.Tensor):
            continue
        weight_key = key[: -len(MASK_SUFFIX)] + "weight"
        weight = state.get(weight_key)
        if isinstance(weight, th.Tensor) and weight.shape == mask.shape:
            present = mask != 0
            items[key] = compact_tensor(mask, present)
            items[weight_key] = compact_tensor(weight, present)
    return _like(state, items)


def compact_optimizer_state(state: Mapping[str, Any], patterns: Mapping[int, th.Tensor]) -> dict[str, Any]:
    """An optimizer's state dict with the per-entry state of some parameters compacted.

    :param patterns: positions of the connections (boolean, the parameter's shape) by the parameter's index in
        the state dict (torch numbers parameters in the order of ``param_groups``).
    """
    per_param = dict(state.get("state", {}))
    for index, pattern in patterns.items():
        if index in per_param:
            per_param[index] = {key: compact_tensor(value, pattern) for key, value in per_param[index].items()}
    return _like(state, {**state, "state": per_param})


def optimizer_patterns(optimizer: th.optim.Optimizer, masks: Mapping[int, th.Tensor]) -> dict[int, th.Tensor]:
    """The state-dict index of each parameter of ``optimizer`` found in ``masks`` (by ``id``), with its pattern."""
    patterns: dict[int, th.Tensor] = {}
    index = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            mask = masks.get(id(param))
            if mask is not None:
                patterns[index] = mask != 0
            index += 1
    return patterns


def compact_parameters(
    params: Mapping[str, Any], optimizer_pattern: Mapping[str, Mapping[int, th.Tensor]]
) -> dict[str, Any]:
    """SB3's parameters (``get_parameters()``: state dicts by object name) with the sparse layers compacted.

    :param optimizer_pattern: for each optimizer's name, the patterns of its sparse parameters by index
        (:func:`optimizer_patterns`); every other state dict is treated as a module's.
    """
    compacted: dict[str, Any] = {}
    for name, state in params.items():
        if name in optimizer_pattern:
            compacted[name] = compact_optimizer_state(state, optimizer_pattern[name])
        else:
            compacted[name] = compact_module_state(state)
    return compacted


def _expand(value: Any) -> Any:
    if is_compact(value):
        return expand_tensor(value)
    if isinstance(value, Mapping):
        return _like(value, {key: _expand(item) for key, item in value.items()})
    if isinstance(value, list):
        return [_expand(item) for item in value]
    return value


def expand_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as :func:`compact_parameters` wrote them (or dense ones, unchanged) → ordinary state dicts."""
    return {name: _expand(state) for name, state in params.items()}
