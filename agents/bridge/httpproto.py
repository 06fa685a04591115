"""The bridge's HTTP/1.1 server protocol: uvicorn's httptools protocol with bounded request heads.

A caller is authenticated from its request head, so the head itself must be bounded before any
check can run. llhttp (under httptools) sets no limit on a request line or header block and
uvicorn keeps them whole until the head is complete: 150 connections trickling 4 MiB header values
took a bridge from 84 to 724 MB. Here a head (request line and headers, up to the blank line) over
``max_head_bytes`` is answered 431 and its connection closed, and a head not complete within
``head_timeout_s`` of its first byte is answered 408 and closed; a slow sender holds a connection
for seconds and a few KiB. uvicorn's h11 protocol bounds heads itself
(``h11_max_incomplete_event_size``); ``protocol_for`` picks and configures either.

A connection closed while its client is still sending (a refusal before or while the body is read:
401, 413, 429, 503, 408, 431) is closed lingering: the answer is sent, the write side shut, and
what still arrives is dropped for up to ``LINGER_S`` / ``LINGER_BYTES`` before the socket closes.
Closed at once, the unread bytes make the kernel reset the connection, and a client still writing
its 4 MiB body lost its 429 to a "connection reset" (34 of 64 such refusals in one run).
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from aiaas.agents.bridge.errors import error_json
from aiaas.agents.bridge.middleware import has_body
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.schemas.errors import AiaasError, ErrorCode

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
LINGER_S = 2.0  # after a refusal, read and drop what the client still sends for this long ...
LINGER_BYTES = 1 << 20  # ... or this much, so it can read the answer (a close with unread data resets)


def _answer(status: int, message: str, **details: Any) -> bytes:
    code = ErrorCode.TIMEOUT if status == 408 else ErrorCode.TOO_LARGE
    body = error_json(AiaasError(message, code=code, **details))
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n" % (status, _REASONS[status])
    return head + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body


class BoundedHttpTools(HttpToolsProtocol):
    """httptools with a size and a time limit on each request head (class attributes set by
    ``protocol_for``)."""

    max_head_bytes = 64 * 1024
    head_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the next bytes belong to a request head
        self._head_bytes = 0
        self._tail = b""  # the last bytes of the head so far: the blank line may span two reads
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_t0 = 0.0
        self._proxy: _Lingering | None = None
        self._lingering = -1  # bytes dropped since a refusal (-1: none)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering >= 0:
            self._lingering += len(data)
            if self._lingering > LINGER_BYTES:
                self.transport.close()
            return
        if self._in_head and not self._head_seen(data):
            return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.cycle is not None and self._has_body():  # its close may find the body unread
            if self._proxy is None:
                self._proxy = _Lingering(self)
            self._proxy.cycle, self._proxy.wrote = self.cycle, False
            self.cycle.transport = self._proxy  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._tail = True, 0, b""  # a next request may follow

    def _has_body(self) -> bool:
        return has_body(self.headers)

    def linger(self, unread: bool = True) -> None:
        """Close; lingering when the client may still be sending (see the module docstring)."""
        if self._lingering >= 0 or self.transport.is_closing():
            return
        if not unread:  # the whole request was received: nothing to reset
            self.transport.close()
            return
        self._disarm()
        self._lingering = 0
        self.pipeline.clear()  # requests queued behind this one are not served on a closing connection
        self.flow.resume_reading()  # reading may be paused (a body the app did not read)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._head_timer = self.loop.call_later(LINGER_S, self.transport.close)

    def _head_seen(self, data: bytes) -> bool:
        """Count ``data`` into the head; False (and the connection answered) when it is too large."""
        if not self._head_bytes:
            data = data.lstrip(b"\r\n")  # empty lines before a request line are skipped (RFC 9112)
            if not data:
                return True
            self._head_t0 = self.loop.time()
            self._disarm()  # the idle timer of a new connection
        seen = self._tail + data
        end = seen.find(b"\r\n\r\n")
        self._head_bytes += len(data) if end < 0 else end + 4 - len(self._tail)
        if self._head_bytes > self.max_head_bytes:
            self._refuse(431, "request head too large", limit_bytes=self.max_head_bytes)
            return False
        if end < 0:
            self._tail = seen[-3:]
            if self._head_timer is None:  # only a head that spans reads needs a timer (most do not)
                left = self._head_t0 + self.head_timeout_s - self.loop.time()
                self._head_timer = self.loop.call_later(max(0.0, left), self._head_too_slow)
        else:
            self._in_head, self._tail = False, b""
            self._disarm()
        return True

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and self._head_bytes:
            self._refuse(408, "request head not received in time", timeout_s=self.head_timeout_s)
        elif self._in_head and self.cycle is None:
            self.transport.close()  # a connection that never sent a byte

    def _refuse(self, status: int, message: str, **details: Any) -> None:
        """Answer and end the connection: the write side at once, the read side after a linger."""
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:  # mid-answer: just go
            self.transport.close()
            return
        self.transport.write(_answer(status, message, **details))
        self.linger()


class _Lingering:
    """The transport a request cycle with a body sees: its ``close`` lingers (``linger``), and its
    response head waits for the body's first write (one socket write per answer, not two: the
    head's own write was a tenth of the bridge's CPU; a body not written in the same loop
    iteration releases the head alone)."""

    __slots__ = ("_held", "_proto", "_real", "cycle", "wrote")

    def __init__(self, proto: BoundedHttpTools) -> None:
        self._proto = proto
        self._real = proto.transport
        self.cycle: RequestResponseCycle | None = None
        self.wrote = False  # this cycle's head went (or is held)
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif not self.wrote and self.cycle is not None and self.cycle.response_started:
            self.wrote, self._held = True, data  # the head: sent with the body
            self._proto.loop.call_soon(self.release)
            return
        self._real.write(data)

    def release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._real.write(held)

    def close(self) -> None:
        self.release()
        self._proto.linger(unread=self.cycle is None or self.cycle.more_body)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def protocol_for(bs: BridgeSettings) -> tuple[type[asyncio.Protocol], dict[str, Any]]:
    """The protocol class for uvicorn's ``http`` and the extra ``uvicorn.Config`` arguments."""
    use_h11 = bs.http == "h11" or (bs.http == "auto" and importlib.util.find_spec("httptools") is None)
    if use_h11:
        return H11Protocol, {"h11_max_incomplete_event_size": bs.max_head_bytes}
    bounded = type("BridgeHttpTools", (BoundedHttpTools,),
                   {"max_head_bytes": bs.max_head_bytes, "head_timeout_s": bs.head_timeout_s})
    return bounded, {}
