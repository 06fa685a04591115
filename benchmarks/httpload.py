"""A lean keep-alive HTTP/1.1 load generator (like ``wrk``): the same one drives every server compared.

One connection per in-flight request, the request bytes prepared once, each connection sends its
next request as soon as the previous reply is read, until the round's deadline. The client's own
cost stays small and identical for every server, so rates and latencies compare the servers.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Round:
    """One timed round at one concurrency: completed requests, wall seconds, latencies (ms)."""

    concurrency: int
    requests: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def req_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def request_bytes(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """A complete POST request, built once and sent as is for every request of a round."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one reply (Content-Length or chunked transfer encoding)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked = -1, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        return status, await _read_chunked(reader)
    if length < 0:
        raise RuntimeError(f"reply without Content-Length: {head[:200]!r}")
    return status, await reader.readexactly(length)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        parts.append((await reader.readexactly(size + 2))[:size])  # each chunk ends with CRLF
        if size == 0:
            return b"".join(parts)


async def post_json(host: str, port: int, path: str, body: dict[str, Any],
                    headers: dict[str, str]) -> tuple[int, Any]:
    """One request on its own connection: status and decoded JSON body (for checking replies)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request_bytes(host, port, path, json.dumps(body).encode(), headers))
        status, raw = await read_response(reader)
        return status, json.loads(raw) if raw else None
    finally:
        writer.close()


async def run_round(host: str, port: int, payload: bytes, concurrency: int, seconds: float) -> Round:
    """``concurrency`` keep-alive connections sending ``payload`` back to back for ``seconds``.

    Any reply other than 200 fails the round: a rate of failures is not a rate of answers.
    """
    conns = [await asyncio.open_connection(host, port) for _ in range(concurrency)]
    result = Round(concurrency)
    start = time.perf_counter()
    deadline = start + seconds

    async def loop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= deadline:
                return
            writer.write(payload)
            status, body = await read_response(reader)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            result.requests += 1

    try:
        await asyncio.gather(*(loop(r, w) for r, w in conns))
        result.seconds = time.perf_counter() - start
    finally:
        for _, w in conns:
            w.close()
    return result
