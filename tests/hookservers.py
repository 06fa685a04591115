"""A webhook receiver that holds every POST open until released: a tenant's slow callback server.

It reads each request (headers and body), counts it, and answers 200 only once ``release()`` is
called, so a test can fill a bridge's delivery slots with slow deliveries and watch the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class HeldReceiver:
    def __init__(self) -> None:
        self.arrived = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._released = asyncio.Event()
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slow"

    async def __aenter__(self) -> HeldReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def release(self) -> None:
        self._released.set()

    async def wait_for(self, count: int, timeout_s: float = 30.0) -> None:
        """Wait until ``count`` POSTs are being held."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: self.arrived >= count)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                async with self._changed:
                    self.arrived += 1
                    self._changed.notify_all()
                await self._released.wait()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        finally:
            writer.close()
