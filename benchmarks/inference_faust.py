"""faust or plain aiokafka for the inference agent? The same request -> reply echo three ways.

    python -m benchmarks.inference_faust [--quick]

``aiokafka_echo_per_s``: getmany + send, commit after the acks (what agents/inference builds on);
``faust_event_echo_per_s``: a faust agent, one event at a time; ``faust_batch_echo_per_s``: a
faust agent with ``stream.take_events(500, within=2 ms)``. Same client (bare aiokafka, 512 in
flight), same payload (a binary digits request), rounds alternate and the best of each counts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any

import numpy as np

from aiaas.streams import frame
from aiaas.streams.admin import ensure, wait_for_broker
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from benchmarks.common import emit, fresh_prefix, machine
from benchmarks.inference_echo import EchoProcess, echo_client


def faust_echo_server(mode: str, topic: str) -> None:
    """A faust worker echoing each request to its reply-to (``mode``: event or batch)."""
    import faust

    from aiaas.streams.faust_app import app_config

    app = faust.App(f"echo-{mode}-{os.getpid()}", **app_config(Settings(), producer_linger_ms=0),
                    datadir=f"/tmp/aiaas-faust-echo-{os.getpid()}")
    requests = app.topic(topic, value_serializer="raw", key_serializer="raw")

    async def reply(event: Any) -> None:
        hd = dict(event.headers)
        await app.producer.send(hd["reply-to"].decode(), event.key, event.value, None, None,
                                [("correlation-id", hd["correlation-id"])])

    async def per_event(stream: Any) -> None:
        async for event in stream.events():
            await reply(event)

    async def batched(stream: Any) -> None:
        async for events in stream.take_events(500, within=0.002):
            for event in events:
                await reply(event)

    app.agent(requests, name="echo")(per_event if mode == "event" else batched)

    async def announce() -> None:
        print("assigned 8 partitions", file=sys.stderr, flush=True)  # readiness line

    app.task(announce)  # not as a decorator: faust's task() returns an untyped union

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


class FaustProcess(EchoProcess):
    """The faust echo worker in its own process; its data directory is removed afterwards."""

    def __init__(self, settings: Settings, topic: str, mode: str) -> None:
        super().__init__(settings, topic)
        self.args = ("-m", "benchmarks.inference_faust", "--faust-echo-server", mode, topic)

    async def __aexit__(self, *exc: object) -> None:
        await super().__aexit__(*exc)
        shutil.rmtree(f"/tmp/aiaas-faust-echo-{self.proc.pid}", ignore_errors=True)


async def main(quick: bool) -> dict[str, Any]:
    s = Settings(topic_prefix=fresh_prefix("faust"), client_id="bench-faust")
    await wait_for_broker(s)
    payload = frame.encode([frame.Entry(["x"], {"input": np.ones((1, 64), np.float32)})])[0]  # one request
    n, rounds = (3000, 2) if quick else (10_000, 3)
    rates: dict[str, list[float]] = {"aiokafka": [], "faust_event": [], "faust_batch": []}
    for r in range(rounds):
        for kind in rates:
            topic = Topics(s).infer_requests(f"echo-{kind.replace('_', '-')}-{r}", 8)
            await ensure(s, [topic])
            server = EchoProcess(s, topic.name) if kind == "aiokafka" else \
                FaustProcess(s, topic.name, kind.split("_")[1])
            async with server:
                await echo_client(s, topic.name, payload, 500, 512)
                rates[kind].append(await echo_client(s, topic.name, payload, n, 512))
            print(kind, round(rates[kind][-1]), file=sys.stderr, flush=True)
    out: dict[str, Any] = {f"{k}_echo_per_s": round(max(v), 1) for k, v in rates.items()}
    out["rounds"] = {k: [round(x) for x in v] for k, v in rates.items()}
    out["aiokafka_vs_faust_batch"] = round(out["aiokafka_echo_per_s"] / out["faust_batch_echo_per_s"], 1)
    return {"benchmark": "inference_faust", "quick": quick, "machine": machine(), **out}


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--faust-echo-server", nargs=2, metavar=("MODE", "TOPIC"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.faust_echo_server:
        faust_echo_server(*args.faust_echo_server)
        return
    emit(run(main(args.quick)))


if __name__ == "__main__":
    cli()
