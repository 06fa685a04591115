"""Open Inference Protocol v2 request/response bodies, with datatypes and shape checks.

These are the bodies of ``infer.<model>.requests`` and ``replies.<client>`` records and of the
bridge's HTTP API, so existing OIP clients work unchanged.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aiaas.schemas.envelope import Envelope


class Datatype(StrEnum):
    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


# numpy dtype names per OIP datatype (numpy itself is imported by the codecs, not here).
NUMPY_DTYPES: dict[Datatype, str] = {
    Datatype.BOOL: "bool",
    Datatype.UINT8: "uint8",
    Datatype.UINT16: "uint16",
    Datatype.UINT32: "uint32",
    Datatype.UINT64: "uint64",
    Datatype.INT8: "int8",
    Datatype.INT16: "int16",
    Datatype.INT32: "int32",
    Datatype.INT64: "int64",
    Datatype.FP16: "float16",
    Datatype.FP32: "float32",
    Datatype.FP64: "float64",
    Datatype.BYTES: "object",
}
DATATYPES_BY_NUMPY: dict[str, Datatype] = {v: k for k, v in NUMPY_DTYPES.items()}

_INT_RANGES: dict[Datatype, tuple[int, int]] = {
    Datatype.UINT8: (0, 2**8 - 1),
    Datatype.UINT16: (0, 2**16 - 1),
    Datatype.UINT32: (0, 2**32 - 1),
    Datatype.UINT64: (0, 2**64 - 1),
    Datatype.INT8: (-(2**7), 2**7 - 1),
    Datatype.INT16: (-(2**15), 2**15 - 1),
    Datatype.INT32: (-(2**31), 2**31 - 1),
    Datatype.INT64: (-(2**63), 2**63 - 1),
}

Parameters = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestOutput(_Strict):
    name: str
    parameters: Parameters | None = None


class Tensor(_Strict):
    """One named tensor: OIP ``data`` is flat (row-major) or nested; empty when sent as binary."""

    name: str = Field(min_length=1, max_length=256)
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Tensor:
        if any(d < 0 for d in self.shape):
            raise ValueError(f"tensor {self.name!r}: negative dimension in shape {self.shape}")
        if self.data is None:
            if (self.parameters or {}).get("binary_data_size") is None:
                raise ValueError(f"tensor {self.name!r}: no data and no binary_data_size")
            return self
        flat = flatten(self.data)
        expected = math.prod(self.shape)
        if len(flat) != expected:
            raise ValueError(
                f"tensor {self.name!r}: shape {self.shape} needs {expected} elements, got {len(flat)}"
            )
        _check_values(self.name, self.datatype, flat)
        self.data = flat
        return self

    @property
    def element_count(self) -> int:
        return math.prod(self.shape)


def flatten(data: list[Any]) -> list[Any]:
    """Flatten OIP nested data to a row-major list (nested and flat forms are both allowed)."""
    if not data or not isinstance(data[0], list):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _check_values(name: str, datatype: Datatype, flat: list[Any]) -> None:
    if datatype is Datatype.BOOL:
        if not all(isinstance(x, bool) for x in flat):
            raise ValueError(f"tensor {name!r}: BOOL data must be true/false")
    elif datatype is Datatype.BYTES:
        if not all(isinstance(x, str | bytes) for x in flat):
            raise ValueError(f"tensor {name!r}: BYTES data must be strings")
    elif datatype in _INT_RANGES:
        lo, hi = _INT_RANGES[datatype]
        for x in flat:
            if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
                raise ValueError(f"tensor {name!r}: {x!r} is not a valid {datatype.value}")
    else:
        for x in flat:
            if isinstance(x, bool) or not isinstance(x, int | float):
                raise ValueError(f"tensor {name!r}: {x!r} is not a number")


class InferenceRequest(Envelope):
    """OIP v2 inference request (also the value of a request record in JSON encoding)."""

    KIND: ClassVar[str] = "inference_request"

    id: str | None = Field(default=None, max_length=128)
    parameters: Parameters | None = None
    inputs: list[Tensor] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None

    @model_validator(mode="after")
    def _unique_inputs(self) -> InferenceRequest:
        names = [t.name for t in self.inputs]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate input names: {names}")
        return self


class InferenceResponse(Envelope):
    KIND: ClassVar[str] = "inference_response"

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[Tensor]


class ErrorReply(Envelope):
    """Error answer to a request: OIP's ``{"error": ...}`` plus a stable code and HTTP status."""

    KIND: ClassVar[str] = "error_reply"

    id: str | None = None
    model_name: str | None = None
    error: str
    code: str
    status_code: int
    retriable: bool = False
    details: dict[str, Any] | None = None
