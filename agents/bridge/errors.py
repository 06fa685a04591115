"""The bridge's error answers: the one HTTP error body (``error_body``) and the handlers that turn
every failure into it.

OIP clients expect ``{"error": "<message>"}``; we add a stable ``code`` and details. Every error
body the bridge answers or keeps (a failed request's stored ``error``) is built by ``error_body``
from an AiaasError (the error types are in schemas/errors.py). Validation errors are 400 (not
FastAPI's 422) and anything unexpected is logged and answered as a 500 rather than crashing the
connection.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aiaas.schemas.errors import AiaasError, BadRequest, ErrorCode

log = logging.getLogger(__name__)


_CODES_BY_STATUS = {
    400: ErrorCode.BAD_REQUEST, 401: ErrorCode.UNAUTHORIZED, 403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND, 409: ErrorCode.CONFLICT, 413: ErrorCode.TOO_LARGE,
    429: ErrorCode.RATE_LIMITED, 503: ErrorCode.UNAVAILABLE, 504: ErrorCode.TIMEOUT,
}


def error_body(exc: AiaasError) -> dict[str, Any]:
    """The HTTP API's one error body: ``{"error": reason, "code": code, **details}``."""
    return exc.to_dict()


def error_json(exc: AiaasError) -> bytes:
    """``error_body`` as JSON (a detail JSON cannot hold is written as its str)."""
    return json.dumps(error_body(exc), default=str).encode()


def internal_error(exc: BaseException) -> AiaasError:
    """What an unexpected failure is answered with: 500 naming the exception's type, no more."""
    return AiaasError("internal error", code=ErrorCode.INTERNAL, type=type(exc).__name__)


def error_response(exc: AiaasError, close: bool = False) -> JSONResponse:
    """The HTTP answer for an AiaasError, with Retry-After / WWW-Authenticate where they apply;
    ``close``: end the connection after it (a request body was left unread)."""
    headers: dict[str, str] = {"Connection": "close"} if close else {}
    retry_after = exc.details.get("retry_after_s")
    if isinstance(retry_after, int | float):
        headers["Retry-After"] = str(max(1, round(retry_after + 0.5)))
    if exc.code is ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error_body(exc), status_code=exc.status_code, headers=headers)


async def _aiaas(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AiaasError)
    return error_response(exc)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    return error_response(BadRequest("invalid request", errors=errors))


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES_BY_STATUS.get(exc.status_code, ErrorCode.BAD_REQUEST)
    return JSONResponse(error_body(AiaasError(str(exc.detail), code=code)), exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(internal_error(exc))


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(AiaasError, _aiaas)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)


__all__ = ["error_body", "error_json", "error_response", "install", "internal_error"]
