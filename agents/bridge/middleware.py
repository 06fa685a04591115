"""Pure ASGI middleware: the body size limit and per-route request metrics.

The limit is enforced before any route runs: a ``Content-Length`` over it is refused at once, and
a body streamed without one is counted as it arrives and refused as soon as it passes the limit
(nothing past the limit is kept; a little more is drained so the client can read the 413). The
buffered body is then replayed to the app.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from streams import metrics as shared

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
DISCARD_BYTES = 1 << 20  # past the limit, drain at most this much before answering 413 and closing


async def _reject(send: Send, limit: int) -> None:
    body = json.dumps({"error": "request body too large", "code": "too_large", "limit": limit}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _discard(receive: Receive, budget: int) -> None:
    """Read and drop the rest of an oversized body (up to ``budget``) so the client can read the 413."""
    while budget > 0:
        msg = await receive()
        if msg["type"] != "http.request":
            return
        budget -= len(msg.get("body", b""))
        if not msg.get("more_body", False):
            return


class BodyTooLarge(Exception):
    """Raised by ``read_body``; the 413 has been sent already."""


async def read_body(scope: Scope, receive: Receive, send: Send, max_bytes: int) -> bytes:
    """The whole request body, or BodyTooLarge after answering 413 (Content-Length or counted)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and (not value.isdigit() or len(value) > 18 or int(value) > max_bytes):
            await _reject(send, max_bytes)
            raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            break  # client went away: let the app see the disconnect
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            if msg.get("more_body", False):
                await _discard(receive, max(max_bytes, DISCARD_BYTES))
            await _reject(send, max_bytes)
            raise BodyTooLarge
        chunks.append(chunk)
        if not msg.get("more_body", False):
            break
    return b"".join(chunks)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, send, self.max_bytes)
        except BodyTooLarge:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


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
