"""Codecs at the edges: JSON for control messages, safetensors for tensors. No pickle anywhere.

A tensor-carrying record is ``[u32 header length][JSON header][safetensors bytes]`` so that the
header can be validated (and rejected) before any tensor memory is touched.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import TypeVar

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from aiaas.schemas.envelope import Envelope
from aiaas.schemas.errors import InvalidMessage

E = TypeVar("E", bound=Envelope)
_LEN = struct.Struct(">I")
MAGIC = b"AIT1"  # aiaas tensor record, version 1


def encode_tensors(tensors: Mapping[str, np.ndarray]) -> bytes:
    """safetensors bytes of named numpy arrays (made contiguous as needed)."""
    # not np.ascontiguousarray: it turns 0-d arrays into 1-d ones
    return st_save({k: v if v.flags.c_contiguous else v.copy(order="C") for k, v in tensors.items()})


def decode_tensors(data: bytes) -> dict[str, np.ndarray]:
    try:
        return st_load(data)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise InvalidMessage("tensor payload is not valid safetensors", detail=str(exc)) from exc


def pack(header: Envelope, tensors: Mapping[str, np.ndarray]) -> bytes:
    """One record value: a JSON header followed by the tensors as safetensors."""
    head = header.to_record()
    return MAGIC + _LEN.pack(len(head)) + head + encode_tensors(tensors)


def unpack(value: bytes | None, header_cls: type[E]) -> tuple[E, dict[str, np.ndarray]]:
    """Inverse of ``pack``; raises InvalidMessage (never a bare error) on junk input."""
    header, body = split_header(value, header_cls)
    return header, decode_tensors(body)


def split_header(value: bytes | None, header_cls: type[E]) -> tuple[E, bytes]:
    """Validate and return the header and the still-encoded tensor bytes."""
    if value is None or len(value) < 8 or value[:4] != MAGIC:
        raise InvalidMessage("not a tensor record (bad magic or too short)", schema=header_cls.KIND)
    (n,) = _LEN.unpack_from(value, 4)
    if 8 + n > len(value):
        raise InvalidMessage("tensor record header is truncated", schema=header_cls.KIND)
    return header_cls.from_record(value[8 : 8 + n]), value[8 + n :]


def decode_json(value: bytes | None, model: type[E]) -> E:
    """Decode a JSON control message (alias of ``Envelope.from_record`` for symmetry)."""
    return model.from_record(value)
