"""``POST /v2/models/{m}[/versions/{v}]/infer``: the hot path.

``InferFastPath`` (pure ASGI, in front of the app) answers these requests itself; the FastAPI route
below documents the operation in OpenAPI (parameters listed by hand: FastAPI's per-parameter
validation cost more than the rest of the route) and serves the same way if ever reached.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, QueryParams

from aiaas.agents.bridge.admission import Ticket
from aiaas.agents.bridge.core import Bridge
from aiaas.agents.bridge.errors import error_response, internal_error
from aiaas.agents.bridge.keys import Principal
from aiaas.agents.bridge.middleware import ASGIApp, ClientGone, Gate, Receive, Scope, Send, refusal
from aiaas.agents.bridge.oip import parse_timeout_query
from aiaas.agents.bridge.routes_v2 import bridge_of
from aiaas.agents.bridge.service import Accepted, Call, InferService
from aiaas.schemas.errors import AiaasError

log = logging.getLogger(__name__)

router = APIRouter()


def _param(name: str, where: str, schema: dict[str, Any], doc: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema, "description": doc}


_PARAMS = [
    _param("model", "path", {"type": "string"}, "model name", True),
    _param("callback", "query", {"type": "string", "maxLength": 2048}, "webhook URL: answer 202, POST later"),
    _param("timeout", "query", {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}, "seconds"),
    _param("Prefer", "header", {"type": "string"}, "respond-async: answer 202 and poll"),
    _param("Idempotency-Key", "header", {"type": "string", "maxLength": 255}, "same key + body: same result"),
    _param("Inference-Header-Content-Length", "header", {"type": "integer"}, "binary extension: JSON size"),
    _param("traceparent", "header", {"type": "string"}, "W3C trace context"),
]


def _doc(versioned: bool) -> dict[str, Any]:
    params = list(_PARAMS)
    if versioned:
        params.insert(1, _param("version", "path", {"type": "string"}, "model version", True))
    return {
        "parameters": params,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }},
        "responses": {
            "200": {"description": "the OIP response", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/InferenceResponse"}}}},
            "202": {"description": "accepted for async processing; poll Location"},
        },
    }


async def infer(request: Request) -> Response:
    """The FastAPI route (documented); normally ``InferFastPath`` answers before routing."""
    params = request.path_params
    bridge = bridge_of(request)
    model = params["model"]
    t0 = time.perf_counter()
    try:
        who = await admit_call(bridge, request.headers)
    except AiaasError as exc:
        return _observed(bridge, model, error_response(exc), t0)
    return await serve_infer(bridge, who, model, params.get("version"), request.url.path, request.headers,
                             request.query_params, await request.body(), t0)


async def admit_call(bridge: Bridge, headers: Headers) -> Principal:
    """Everything decided from the headers, before a body byte is read: the caller (401/403), Kafka
    reachable (503 at once, not a 30 s wait), the tenant's rate (429)."""
    who = await bridge.auth.principal(headers.get("authorization"), headers.get("x-api-key"))
    who.require("infer")
    bridge.health.require_kafka()
    await bridge.limiter.take(who.tenant)
    return who


async def serve_infer(
    bridge: Bridge, who: Principal, model: str, version: str | None, path: str, headers: Headers,
    query: QueryParams, body: bytes, t0: float, ticket: Ticket | None = None,
) -> Response:
    """One admitted infer call, errors included, as a response (shared by the route and the fast path)."""
    try:
        call = Call(
            who=who, model=model, version=version, path=path, body=body,
            header_length=headers.get("inference-header-content-length"), callback=query.get("callback"),
            prefer_async="respond-async" in headers.get("prefer", "").lower(),
            idempotency_key=headers.get("idempotency-key"),
            timeout_s=parse_timeout_query(query.get("timeout")), traceparent=headers.get("traceparent"),
            ticket=ticket,
        )
        out = await InferService(bridge).handle(call)
        if isinstance(out, Accepted):
            location = f"/v2/requests/{out.request_id}"
            resp: Response = JSONResponse(
                {"id": out.request_id, "status": out.state.status, "location": location},
                status_code=202, headers={"Location": location, "Preference-Applied": "respond-async"},
            )
        else:
            resp = Response(out.content, status_code=out.status, headers=out.headers,
                            media_type=out.media_type)
    except AiaasError as exc:
        resp = error_response(exc)
    return _observed(bridge, model, resp, t0)


def _observed(bridge: Bridge, model: str, resp: Response, t0: float) -> Response:
    # label only models seen registered: junk names must not grow the label set
    label = model if model in bridge.known_models else "_unknown"
    bridge.metrics.observe(label, resp.status_code, time.perf_counter() - t0)
    return resp


def _internal(exc: Exception, close: bool = False) -> Response:
    log.exception("unhandled error on infer")
    return error_response(internal_error(exc), close=close)


class _RouteInfo:
    path = "/v2/models/{model}/infer"


class InferFastPath:
    """Answers ``POST .../infer`` straight from ASGI, before FastAPI's routing and parameter layers
    (about a third of the bridge's CPU per request); everything else goes to the app.

    The caller is authenticated and admitted (``admit_call``, then a ticket for the body's cost and
    a call slot) before the body is read; the ticket is held until the answer is sent."""

    PATTERN = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")

    def __init__(self, app: ASGIApp, bridge: Bridge, gate: Gate) -> None:
        self.app = app
        self.bridge = bridge
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = self.PATTERN.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = _RouteInfo
        t0 = time.perf_counter()
        model = unquote(match.group(1))
        headers = Headers(scope=scope)
        try:
            who = await admit_call(self.bridge, headers)
            ticket, per_byte = self.gate.admit(scope, who.tenant.name, call=True)
        except AiaasError as exc:
            await _observed(self.bridge, model, refusal(scope, exc), t0)(scope, receive, send)
            return
        except Exception as exc:  # a bug, not the caller's fault: the app's 500 body, body unread
            await _internal(exc, close=True)(scope, receive, send)
            return
        version = unquote(match.group(2)) if match.group(2) else None
        try:
            await self._serve(scope, receive, send, (model, version), who, ticket, per_byte, t0)
        finally:
            ticket.release()

    async def _serve(self, scope: Scope, receive: Receive, send: Send, target: tuple[str, str | None],
                     who: Principal, ticket: Ticket, per_byte: float, t0: float) -> None:
        model, version = target
        try:
            body = await self.gate.body(receive, ticket, per_byte)
        except ClientGone:
            return
        except AiaasError as exc:
            resp = _observed(self.bridge, model, error_response(exc, close=True), t0)
            await resp(scope, receive, send)
            return
        try:
            resp = await serve_infer(self.bridge, who, model, version, scope["path"], Headers(scope=scope),
                                     QueryParams(scope["query_string"]), body, t0, ticket)
        except Exception as exc:  # the same 500 body the app's handler gives
            resp = _internal(exc)
        del body  # the answer may take a while to send: do not keep the request too
        await resp(scope, receive, send)


_PATHS = (("/v2/models/{model}/infer", False), ("/v2/models/{model}/versions/{version}/infer", True))
for _path, _versioned in _PATHS:
    router.add_api_route(_path, infer, methods=["POST"], tags=["oip"], openapi_extra=_doc(_versioned),
                         response_class=Response, summary="Infer (sync, or async with a callback)")
