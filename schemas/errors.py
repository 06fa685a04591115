"""The one root exception of aiaas.

Errors are built from data (a code and details), carry an HTTP status so the bridge and the
inference error replies agree, and say whether retrying the same call may succeed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Stable machine-readable error codes; they appear in error replies and DLQ records."""

    BAD_REQUEST = "bad_request"
    INVALID_MESSAGE = "invalid_message"
    DECODE_ERROR = "decode_error"
    CHUNK_ERROR = "chunk_error"
    TOO_LARGE = "too_large"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.INVALID_MESSAGE: 400,
    ErrorCode.DECODE_ERROR: 400,
    ErrorCode.CHUNK_ERROR: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}

_RETRIABLE = {ErrorCode.RATE_LIMITED, ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE}


class AiaasError(Exception):
    """Root of every error aiaas raises on purpose.

    Subclasses pick a default ``code``; callers pass data (``details``), not formatted strings.
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(
        self, reason: str, *, code: ErrorCode | None = None, **details: Any
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code
        self.details = details

    @property
    def status_code(self) -> int:
        return _STATUS[self.code]

    @property
    def retriable(self) -> bool:
        return self.code in _RETRIABLE

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.reason, "code": self.code.value, **self.details}


class InvalidMessage(AiaasError):
    """A record that does not decode or does not match its schema."""

    code = ErrorCode.INVALID_MESSAGE


class TooLarge(AiaasError):
    code = ErrorCode.TOO_LARGE


class NotFound(AiaasError):
    code = ErrorCode.NOT_FOUND


class DeadlineExceeded(AiaasError):
    code = ErrorCode.DEADLINE_EXCEEDED


class Unavailable(AiaasError):
    code = ErrorCode.UNAVAILABLE
