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


class KafkaUnavailable(Unavailable):
    """Kafka cannot be reached: retries ran to their deadline (``aiaas.streams.retry``; the reason is one
    line naming what was being done, the address and what to run), or the bridge's last probe of
    the broker failed (503, Retry-After)."""


class StoreUnavailable(Unavailable):
    """Redis (the bridge's request state, keys, rate limits) cannot be reached: retry after a moment."""


class InferenceError(AiaasError):
    """An error reply from a worker (or no reply in time), with the code and HTTP status it carried
    (``aiaas.streams.replywire`` reads it from the reply)."""


class ChunkError(AiaasError):
    """A chunked record whose parts do not reassemble (missing, duplicate or corrupt parts)."""

    code = ErrorCode.CHUNK_ERROR


class IntegrityError(AiaasError):
    """Artifact bytes that do not match their recorded sha256 (or are missing)."""

    code = ErrorCode.CONFLICT


class SignatureError(AiaasError):
    """A webhook whose signature is missing, malformed, wrong or outside the time window."""

    code = ErrorCode.UNAUTHORIZED


class BadInput(AiaasError):
    """A request that does not fit the model's signature (HTTP 400)."""

    code = ErrorCode.BAD_REQUEST


class EnvelopeError(AiaasError):
    """A sealed record value (``aiaas.streams.envelope``) that cannot be opened: its data key is
    unknown here (403), or the key is wrong or the bytes were altered (400). Details name the key
    id, never the key."""

    code = ErrorCode.BAD_REQUEST


# The HTTP bridge's refusals (agents/bridge/errors.py turns each into its HTTP answer).


class BadRequest(AiaasError):
    code = ErrorCode.BAD_REQUEST


class Unauthorized(AiaasError):
    code = ErrorCode.UNAUTHORIZED


class Forbidden(AiaasError):
    code = ErrorCode.FORBIDDEN


class Conflict(AiaasError):
    code = ErrorCode.CONFLICT


class RateLimited(AiaasError):
    code = ErrorCode.RATE_LIMITED


class Timeout(AiaasError):
    code = ErrorCode.TIMEOUT


class BodyTimeout(AiaasError):
    """The request body did not arrive in full in time (a slow or stalled upload): 408."""

    code = ErrorCode.TIMEOUT

    @property
    def status_code(self) -> int:
        return 408


class CallbackRefused(AiaasError):
    """A callback URL the SSRF policy refuses (private, loopback, link-local, bad scheme...)."""

    code = ErrorCode.BAD_REQUEST


class UnresolvedHost(CallbackRefused):
    """The callback host does not resolve (now): a delivery retries it, a submission is refused."""


class InsecureConfig(AiaasError):
    """A bridge set to run without authentication on a public address, not explicitly allowed."""

    code = ErrorCode.BAD_REQUEST
