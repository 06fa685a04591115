"""Helpers to run a bridge and a webhook receiver locally: tests, benchmarks, ``aiaas serve``.

``BridgeProcess`` starts ``python -m agents.bridge.main`` as a subprocess with the given
environment and waits until ``/v2/health/ready`` answers; ``Receiver`` is a tiny HTTP server on
loopback that records webhook POSTs and answers with scripted statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h11
import httpx

from streams.lifecycle import Service

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


async def wait_http_ready(
    url: str, timeout_s: float, proc: asyncio.subprocess.Process | None = None
) -> None:
    """Poll ``url`` until it answers 200 (fails early when ``proc`` exits)."""
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client, asyncio.timeout(timeout_s):
        while True:
            if proc is not None and proc.returncode is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)


class BridgeProcess(Service):
    """One bridge as a child process; ``stop()`` sends SIGTERM (then SIGKILL after a grace)."""

    def __init__(self, env: Mapping[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = child_env({**env, "AIAAS_BRIDGE_PORT": str(self.port)})
        self.proc: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 60.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agents.bridge.main", env=self.env, cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read_log())
        try:
            await wait_http_ready(f"{self.url}/v2/health/ready", timeout_s, self.proc)
        except BaseException:
            await self.kill()
            raise

    async def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.log = [*self.log[-200:], raw.decode(errors="replace")]

    async def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM and wait (SIGKILL after ``grace_s``); the exit code is then ``proc.returncode``."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace_s)
            except TimeoutError:
                await self.kill()
        await self._finish()

    async def kill(self) -> None:
        """SIGKILL: the crash a fault test wants."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._finish()

    async def _finish(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 5)
            self._reader = None



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
