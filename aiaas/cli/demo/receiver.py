"""The demo's webhook receiver: a tiny HTTP server on loopback that records the callbacks
(``POST``) the bridge makes and answers with scripted statuses (tests script failures with them).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import h11

from aiaas.streams.lifecycle import Service


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver(Service):
    """A loopback webhook receiver; ``statuses`` are answered in order, then ``default``."""

    statuses: list[int] = field(default_factory=list)
    default: int = 200
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_for(self, count: int, timeout_s: float = 30.0) -> list[Received]:
        """Wait until at least ``count`` POSTs arrived."""
        async with asyncio.timeout(timeout_s):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.received

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                req, body = await _read_request(conn, reader)
                if req is None:
                    return
                self.received.append(Received(
                    req.target.decode(), {k.decode().lower(): v.decode() for k, v in req.headers}, body))
                status = self.statuses.pop(0) if self.statuses else self.default
                writer.write(conn.send(h11.Response(status_code=status, headers=[("content-length", "0")])))
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                self._arrived.set()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, ConnectionError):
            return
        finally:
            writer.close()


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request | None, bytes]:
    req: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            if not data and req is None:
                return None, b""
            continue
        if isinstance(event, h11.Request):
            req = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return req, body
        elif isinstance(event, h11.ConnectionClosed):
            return None, b""
