"""Pure ASGI middleware: the gate in front of every request body, and per-route request metrics.

No byte of a request body is read before the caller is known. ``BodyGate`` (every route but the
infer hot path, which does the same in ``routes_infer``) authenticates a request that carries a
body from its headers alone, refuses a ``Content-Length`` over the limit, reserves the body's cost
in the bridge's ``Admission`` and only then reads it: within ``body_timeout_s`` (else 408) and no
more than ``max_body_bytes`` (else 413; a body streamed without a length is counted as it arrives).
A request refused before its body was read is answered at once; when more than a little of the
body is still to come the connection is closed, so a slow sender holds nothing. The buffered body
is then replayed to the app. Requests without a body (GET, health) pass untouched.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from aiaas.agents.bridge.admission import Admission, Ticket
from aiaas.agents.bridge.auth import Authenticator
from aiaas.agents.bridge.deadlines import Deadlines
from aiaas.agents.bridge.errors import error_response
from aiaas.agents.bridge.keys import Principal
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.schemas.errors import AiaasError, BodyTimeout, TooLarge
from aiaas.streams import metrics as shared

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
DISCARD_BYTES = 1 << 20  # past the limit, drain at most this much before answering 413 and closing
KEEP_ALIVE_UNREAD = 64 * 1024  # an unread body up to this is skipped by the server; more: close


class ClientGone(Exception):
    """The client disconnected before its body was complete: there is no one to answer."""


def body_length(scope: Scope, max_bytes: int) -> int | None:
    """The declared ``Content-Length`` (None when the body is streamed); 413 when over the limit."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit() or len(value) > 18 or int(value) > max_bytes:
                raise TooLarge("request body too large", limit=max_bytes)
            return int(value)
    return None


def has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request with these (lower-case) headers carries a body (a non-zero length, or a
    streamed one)."""
    for name, value in headers:
        if name == b"content-length":
            return bool(value != b"0")
        if name == b"transfer-encoding":
            return True
    return False


def unread_is_small(scope: Scope) -> bool:
    """Whether the server may skip this request's unread body and keep the connection."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.isdigit() and len(value) < 10 and int(value) <= KEEP_ALIVE_UNREAD
    return not has_body(scope["headers"])


def refusal(scope: Scope, exc: AiaasError) -> JSONResponse:
    """The answer to ``exc`` before (or instead of) reading the body."""
    return error_response(exc, close=not unread_is_small(scope))


async def _discard(receive: Receive, budget: int) -> None:
    """Read and drop the rest of an oversized body (up to ``budget``) so the client can read the 413."""
    while budget > 0:
        msg = await receive()
        if msg["type"] != "http.request":
            return
        budget -= len(msg.get("body", b""))
        if not msg.get("more_body", False):
            return


async def read_body(
    receive: Receive, bs: BridgeSettings, deadlines: Deadlines, ticket: Ticket | None,
    streamed_cost: float = 0.0,
) -> bytes:
    """The whole body within ``body_timeout_s`` (BodyTimeout), at most ``max_body_bytes`` (TooLarge);
    a body without a length grows ``ticket`` by ``streamed_cost`` per byte as it arrives.
    Raises ClientGone when the client left."""
    chunks: list[bytes] = []
    size = 0
    try:
        with deadlines.watch(bs.body_timeout_s):
            while True:
                msg = await receive()
                if msg["type"] != "http.request":
                    raise ClientGone
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > bs.max_body_bytes:
                    if msg.get("more_body", False):
                        await _discard(receive, max(bs.max_body_bytes, DISCARD_BYTES))
                    raise TooLarge("request body too large", limit=bs.max_body_bytes)
                if streamed_cost and ticket is not None and chunk:
                    ticket.grow(int(len(chunk) * streamed_cost) + 1)
                chunks.append(chunk)
                if not msg.get("more_body", False):
                    break
    except TimeoutError:
        raise BodyTimeout("request body not received in time", timeout_s=bs.body_timeout_s,
                          received_bytes=size) from None
    return b"".join(chunks)


def is_json(scope: Scope) -> bool:
    """A body without the binary extension's header is JSON: it costs its decoded size."""
    return not any(name == b"inference-header-content-length" for name, _ in scope["headers"])


class Gate:
    """The checks before a body is read: who calls (from headers), whether there is room for it."""

    def __init__(self, auth: Authenticator, admission: Admission, deadlines: Deadlines,
                 bs: BridgeSettings) -> None:
        self.auth = auth
        self.admission = admission
        self.deadlines = deadlines
        self.bs = bs

    async def body(self, receive: Receive, ticket: Ticket, streamed_cost: float) -> bytes:
        return await read_body(receive, self.bs, self.deadlines, ticket, streamed_cost)

    async def principal(self, headers: Headers) -> Principal:
        return await self.auth.principal(headers.get("authorization"), headers.get("x-api-key"))

    def admit(self, scope: Scope, tenant: str, call: bool) -> tuple[Ticket, float]:
        """A ticket for the body's cost, and the cost per byte to add as an unsized body streams."""
        length = body_length(scope, self.bs.max_body_bytes)
        as_json = is_json(scope)
        cost = self.admission.cost(length or 0, as_json)
        ticket = self.admission.enter(tenant, cost, call)
        per_byte = 0.0 if length is not None else (
            self.admission.json_factor if as_json else self.admission.binary_factor)
        return ticket, per_byte


class BodyGate:
    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not has_body(scope["headers"]):
            await self.app(scope, receive, send)
            return
        try:
            who = await self.gate.principal(Headers(scope=scope))
            ticket, per_byte = self.gate.admit(scope, who.tenant.name, call=False)
        except AiaasError as exc:
            await refusal(scope, exc)(scope, receive, send)
            return
        try:
            try:
                body = await self.gate.body(receive, ticket, per_byte)
            except AiaasError as exc:
                await error_response(exc, close=True)(scope, receive, send)
                return
            except ClientGone:
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
        finally:
            ticket.release()


class RouteMetrics:
    """Counts every HTTP request by route template, method and status (shared catalogue)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self._observe(template, scope.get("method", ""), status, time.perf_counter() - t0)

    def _observe(self, template: str, method: str, status: int, seconds: float) -> None:
        key = (template, method, status)
        pair = self._children.get(key)
        if pair is None:  # label children cached: labels() costs more than the update
            if len(self._children) > 10_000:
                self._children.clear()
            pair = (shared.BRIDGE_REQUESTS.labels(route=template, method=method, status=str(status)),
                    shared.BRIDGE_LATENCY.labels(route=template, method=method))
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)
