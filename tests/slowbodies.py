"""Raw-socket HTTP/1.1 clients that send a request's headers and only part of its body: the slow
upload a bridge must not pay for. Used by the bridge intake tests (and fit for a benchmark)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Partial:
    """One connection with a request whose body is not complete."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, timeout_s: float = 10.0) -> Answer | None:
        """The response, or None when the server closed the connection without one."""
        async with asyncio.timeout(timeout_s):
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            pairs = (ln.partition(":") for ln in lines[1:] if ln)
            headers = {k.strip().lower(): v.strip() for k, _, v in pairs}
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
            return Answer(status, headers, body)

    async def closed_by_server(self, timeout_s: float = 10.0) -> bool:
        """True once the server ends the connection (EOF or reset) within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                while await self.reader.read(65536):
                    pass
            return True
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


async def partial_request(
    port: int, path: str, *, length: int, body: bytes = b"", headers: dict[str, str] | None = None,
    method: str = "POST",
) -> Partial:
    """Open a connection and send the headers (``Content-Length: length``) and ``body``, the start."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    hdrs = {"host": "bridge", "content-type": "application/json", "content-length": str(length),
            **(headers or {})}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    conn = Partial(reader, writer)
    with contextlib.suppress(ConnectionError):  # the server may answer and close before all is sent
        await conn.send(head.encode() + body)
    return conn
