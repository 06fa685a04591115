"""The transport limit of the inference benchmark: a bare aiokafka request -> reply echo.

The server consumes requests and produces the same bytes to each one's ``reply-to``, committing after
the acks; the client keeps a window of requests in flight, one record each way per request, like a
plain aiokafka application. Both producers send uncompressed records, as the inference client and
workers do. ``benchmarks.inference`` and ``benchmarks.inference_faust`` measure against it.

    python -m benchmarks.inference_echo TOPIC      # the server (what EchoProcess runs)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

from aiaas.streams.admin import ensure
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics


async def echo_server(settings: Settings, topic: str) -> None:
    """Bare aiokafka: consume requests, produce the same bytes to their reply-to, commit after acks."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    cons = AIOKafkaConsumer(topic, **settings.consumer_kwargs("echo"))
    prod = AIOKafkaProducer(**settings.producer_kwargs(linger_ms=1, compression_type=None))
    await cons.start()
    await prod.start()
    print("assigned 8 partitions", file=sys.stderr, flush=True)  # readiness line, like a worker
    try:
        while True:
            batch = await cons.getmany(timeout_ms=100, max_records=500)
            futs = []
            for recs in batch.values():
                for r in recs:
                    hd = dict(r.headers)
                    futs.append(await prod.send(hd["reply-to"].decode(), r.value, key=r.key,
                                                headers=[("correlation-id", hd["correlation-id"])]))
            if futs:
                await asyncio.gather(*futs)
                await cons.commit()
    finally:
        await cons.stop()
        await prod.stop()


async def echo_client(settings: Settings, topic: str, payload: bytes, n: int, window: int) -> float:
    """Requests/s through the echo with the same window as our client: bare aiokafka both ways."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    reply = Topics(settings).replies(f"echo-{uuid.uuid4().hex[:6]}")
    await ensure(settings, [reply])
    prod = AIOKafkaProducer(**settings.producer_kwargs(linger_ms=1, compression_type=None))
    cons = AIOKafkaConsumer(**settings.consumer_kwargs(None, auto_offset_reset="latest"))  # like the client's
    await prod.start()
    await cons.start()
    tp = TopicPartition(reply.name, 0)
    cons.assign([tp])
    await cons.seek_to_end(tp)
    await cons.position(tp)
    room = asyncio.Semaphore(window)
    pending: set[bytes] = set()
    done = asyncio.Event()

    async def read() -> None:
        got = 0
        while got < n:
            for recs in (await cons.getmany(timeout_ms=100, max_records=5000)).values():
                for r in recs:
                    cid = dict(r.headers)["correlation-id"]
                    if cid in pending:
                        pending.discard(cid)
                        room.release()
                        got += 1
        done.set()

    reader = asyncio.create_task(read())
    start = time.perf_counter()
    for i in range(n):
        await room.acquire()
        cid = f"e{i}".encode()
        pending.add(cid)
        await prod.send(topic, payload, key=cid, headers=[("correlation-id", cid),
                                                          ("reply-to", reply.name.encode())])
    await done.wait()
    rate = n / (time.perf_counter() - start)
    await reader
    await prod.stop()
    await cons.stop()
    return rate


class EchoProcess:
    """The bare echo server in its own process (like the workers)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self.args: tuple[str, ...] = ("-m", "benchmarks.inference_echo", topic)

    async def __aenter__(self) -> None:
        env = {**os.environ, "AIAAS_TOPIC_PREFIX": self.settings.topic_prefix}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *self.args,
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        async with asyncio.timeout(120):
            async for line in self.proc.stderr:
                if b"assigned" in line:
                    break

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


if __name__ == "__main__":
    run(echo_server(Settings(), sys.argv[1]))
