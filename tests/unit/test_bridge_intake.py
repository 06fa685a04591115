"""The bridge's intake without a broker: admission counters, body reading limits, ragged data."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from aiaas.agents.bridge.admission import Admission
from aiaas.agents.bridge.deadlines import Deadlines
from aiaas.agents.bridge.health import REST_AFTER_S, REST_PROBE_S, Health
from aiaas.agents.bridge.httpproto import protocol_for
from aiaas.agents.bridge.middleware import ClientGone, body_length, has_body, read_body, unread_is_small
from aiaas.agents.bridge.oipcheck import check_request, nested_shape
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.schemas.errors import (
    BodyTimeout,
    InvalidMessage,
    KafkaUnavailable,
    RateLimited,
    TooLarge,
    Unavailable,
)


def settings(**kw: Any) -> BridgeSettings:
    return BridgeSettings(**kw)


# --------------------------------------------------------------------------- admission


def test_bytes_are_capped_per_tenant_then_per_bridge_and_given_back() -> None:
    adm = Admission(settings(max_body_bytes_per_tenant=100_000, max_body_bytes_in_flight=150_000))
    a = adm.enter("a", 80_000, call=False)
    with pytest.raises(RateLimited) as info:
        adm.enter("a", 30_000, call=False)
    assert info.value.status_code == 429 and info.value.details["retry_after_s"] >= 1
    b = adm.enter("b", 60_000, call=False)
    with pytest.raises(Unavailable) as full:
        adm.enter("c", 20_000, call=False)
    assert full.value.status_code == 503
    a.release()
    a.release()  # twice is harmless
    assert adm.bytes == 60_000 and dict(adm.tenant_bytes) == {"b": 60_000}
    b.release()
    assert adm.bytes == 0 and not adm.tenant_bytes


def test_a_request_over_a_cap_is_let_in_alone_and_a_stream_grows_until_refused() -> None:
    adm = Admission(settings(max_body_bytes_per_tenant=10_000, max_body_bytes_in_flight=10_000))
    big = adm.enter("a", 50_000, call=True)  # alone: bounded by max_body_bytes anyway
    with pytest.raises(RateLimited):
        adm.enter("a", 1, call=False)
    big.release()
    alone = adm.enter("a", 0, call=False)
    alone.grow(6_000)
    alone.grow(6_000)  # still alone: may pass the cap
    alone.release()
    stream = adm.enter("a", 0, call=False)
    stream.grow(6_000)
    other = adm.enter("b", 0, call=False)
    with pytest.raises(Unavailable):
        other.grow(5_000)
    stream.release()
    other.grow(9_000)
    assert adm.bytes == 9_000


def test_infer_calls_are_capped_per_tenant_then_per_bridge() -> None:
    adm = Admission(settings(max_sync_per_tenant=2, max_sync_in_flight=3))
    refused: list[str] = []
    adm.on_refuse = refused.append
    held = [adm.enter("a", 0, call=True), adm.enter("a", 0, call=True)]
    with pytest.raises(RateLimited):
        adm.enter("a", 0, call=True)
    adm.enter("a", 0, call=False)  # a body that is not an infer call takes no call slot
    held.append(adm.enter("b", 0, call=True))
    with pytest.raises(Unavailable):
        adm.enter("c", 0, call=True)
    assert refused == ["tenant_calls", "bridge_calls"]
    for t in held:
        t.release()
    assert adm.calls == 0 and not adm.tenant_calls


def test_bodies_cost_their_factor() -> None:
    adm = Admission(settings(json_cost_factor=4.0, binary_cost_factor=2.5))
    assert adm.cost(1000, is_json=True) == 4000 and adm.cost(1000, is_json=False) == 2500


# --------------------------------------------------------------------------- reading bodies


def scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "headers": list(headers)}


def test_header_checks() -> None:
    assert body_length(scope((b"content-length", b"10")), 100) == 10
    assert body_length(scope((b"transfer-encoding", b"chunked")), 100) is None
    for bad in (b"101", b"-1", b"1" * 40, b"x"):
        with pytest.raises(TooLarge):
            body_length(scope((b"content-length", bad)), 100)
    assert not has_body([]) and not has_body([(b"content-length", b"0")])
    assert has_body([(b"content-length", b"1")]) and has_body([(b"transfer-encoding", b"chunked")])
    assert unread_is_small(scope((b"content-length", b"65536")))
    assert not unread_is_small(scope((b"content-length", b"65537")))
    assert not unread_is_small(scope((b"transfer-encoding", b"chunked")))


def feeder(*chunks: bytes, then_wait: bool = False) -> Callable[[], Awaitable[dict[str, Any]]]:
    queue = list(chunks)

    async def receive() -> dict[str, Any]:
        if queue:
            chunk = queue.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(queue) or then_wait}
        if then_wait:
            await asyncio.Event().wait()  # a client that stopped sending
        return {"type": "http.disconnect"}

    return receive


async def test_read_body_joins_and_grows_a_streamed_ticket() -> None:
    bs = settings()
    adm = Admission(bs)
    ticket = adm.enter("a", 0, call=False)
    async with Deadlines() as deadlines:
        body = await read_body(feeder(b"ab", b"cd"), bs, deadlines, ticket, streamed_cost=4.0)
    assert body == b"abcd" and adm.bytes == ticket.cost >= 16


async def test_deadlines_sweeper_rests_while_nothing_is_watched_and_wakes_for_the_next() -> None:
    """No deadline registered: the sweeper waits on its event (no wake-ups at rest); the next
    ``watch`` wakes it and the deadline still fires."""
    async with Deadlines(every_s=0.01) as deadlines:
        for _ in range(2):
            while deadlines._pending.is_set() or deadlines._due:  # noqa: ASYNC110 (yields, no timing)
                await asyncio.sleep(0)
            with pytest.raises(TimeoutError), deadlines.watch(0.02):
                await asyncio.Event().wait()


async def test_read_body_times_out_refuses_oversize_and_notices_a_gone_client() -> None:
    bs = settings(body_timeout_s=0.05, max_body_bytes=1024)
    async with Deadlines(every_s=0.02) as deadlines:
        with pytest.raises(BodyTimeout) as info:
            await read_body(feeder(b"x" * 10, then_wait=True), bs, deadlines, None)
        assert info.value.status_code == 408 and info.value.details["received_bytes"] == 10
        with pytest.raises(TooLarge):
            await read_body(feeder(b"x" * 1000, b"x" * 1000, b"x"), bs, deadlines, None)
        receive = feeder(b"x")

        async def gone() -> dict[str, Any]:
            msg = await receive()
            return {**msg, "more_body": True} if msg["type"] == "http.request" else msg

        with pytest.raises(ClientGone):
            await read_body(gone, bs, deadlines, None)
        # a cancel from elsewhere stays a cancel, and a deadline that passed does not leak out
        reader = asyncio.create_task(read_body(feeder(b"x", then_wait=True), bs, deadlines, None))
        await asyncio.sleep(0)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert not deadlines._due and not deadlines._expired


# --------------------------------------------------------------------------- ragged data


def test_nested_shape_of_regular_data() -> None:
    assert nested_shape([1, 2, 3], "d") == [3]
    assert nested_shape([[1, 2], [3, 4], [5, 6]], "d") == [3, 2]
    assert nested_shape([[[1], [2]], [[3], [4]]], "d") == [2, 2, 1]
    assert nested_shape([[], []], "d") == [2, 0]
    assert nested_shape([], "d") == [0]


@pytest.mark.parametrize("data", [
    [[1, 2], [3]], [[1, 2], 3, 4], [1, [2, 3]], [[[1, 2], [3, 4]], [[5, 6, 7, 8]]], [[1], [[2]]],
])
def test_ragged_data_is_refused(data: list[Any]) -> None:
    with pytest.raises(InvalidMessage) as info:
        nested_shape(data, "inputs.0.data")
    assert "ragged" in info.value.reason and info.value.details["field"] == "inputs.0.data"


def test_check_request_refuses_ragged_rows_that_count_right() -> None:
    tensor = {"name": "x", "shape": [4], "datatype": "FP32", "data": [[1.0, 2.0, 3.0], [4.0]]}
    with pytest.raises(InvalidMessage) as info:
        check_request({"inputs": [tensor]})
    assert info.value.details["field"] == "inputs.0.data"
    deep: list[Any] = [1.0]
    for _ in range(40):
        deep = [deep]
    with pytest.raises(InvalidMessage):
        check_request({"inputs": [{**tensor, "shape": [1], "data": deep}]})


# --------------------------------------------------------------------------- cut short when Kafka goes


async def test_health_probes_rarely_at_rest_and_at_once_when_a_request_asks() -> None:
    probed = asyncio.Event()

    class Probed(Health):
        async def probe(self) -> None:
            self.kafka_ok = self.redis_ok = True
            probed.set()

    health = Probed(None, None, "t", every_s=0.01, timeout_s=1.0)  # type: ignore[arg-type]
    await health.start()
    try:
        health._last_asked -= REST_AFTER_S  # nobody asked for a while: at rest
        assert health._period() == REST_PROBE_S
        while not health._resting:  # noqa: ASYNC110 (yields, no timing)
            await asyncio.sleep(0)
        probed.clear()
        health.require_kafka()  # a request: full pace again, and a probe now, not in REST_PROBE_S
        assert health._period() == 0.01
        await asyncio.wait_for(probed.wait(), REST_PROBE_S / 2)
    finally:
        await health.stop()


async def test_a_waiting_sync_call_is_cut_with_a_503_when_kafka_goes_and_others_are_not() -> None:
    health = Health(None, None, "t", every_s=1.0, timeout_s=1.0)  # type: ignore[arg-type]  # no probing here
    started = asyncio.Event()

    async def call(cut: bool) -> str:
        if not cut:
            started.set()
            await asyncio.Event().wait()
        with health.cut_when_down():
            started.set()
            await asyncio.Event().wait()  # a reply that never comes
        return "answered"

    waiting = asyncio.create_task(call(cut=True))
    await started.wait()
    health._cut_waiting()
    with pytest.raises(KafkaUnavailable) as info:
        await waiting
    assert info.value.status_code == 503 and not health._waiting and not health._cut
    # a call outside the guard (async, idempotent) is left alone; a real cancel stays a cancel
    started.clear()
    other = asyncio.create_task(call(cut=False))
    await started.wait()
    health._cut_waiting()
    assert not other.done()
    other.cancel()
    with pytest.raises(asyncio.CancelledError):
        await other


# --------------------------------------------------------------------------- bounded request heads


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = b""
        self.closed = False
        self.eof = False
        self.written = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += bytes(data)
        self.written.set()

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _answer_ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def protocol(**bs: Any) -> tuple[Any, FakeTransport]:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    cls, _ = protocol_for(settings(http="httptools", **bs))
    proto = cls(config=Config(app=_answer_ok, lifespan="off"), server_state=ServerState(), app_state={})
    transport = FakeTransport()
    proto.connection_made(transport)
    return proto, transport


async def test_a_head_over_the_limit_is_a_431_and_bodies_do_not_count() -> None:
    proto, transport = protocol(max_head_bytes=8192)
    proto.data_received(b"\r\nPOST /x HTTP/1.1\r\nhost: a\r\nx-a: " + b"a" * 5000)
    assert not transport.out
    proto.data_received(b"a" * 5000)
    assert transport.out.startswith(b"HTTP/1.1 431 ") and transport.eof
    proto.data_received(b"a" * 100)  # dropped while lingering
    assert b'"limit_bytes": 8192' in transport.out

    proto, transport = protocol(max_head_bytes=8192)
    head = b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 20000\r"
    proto.data_received(head)
    proto.data_received(b"\n\r\n" + b"x" * 10000)  # the blank line spans two reads; the body is not a head
    proto.data_received(b"x" * 10000)
    await asyncio.wait_for(transport.written.wait(), 5)  # the app task answers
    assert transport.out.startswith(b"HTTP/1.1 200 ") and not transport.eof


async def test_a_stalled_head_is_a_408() -> None:
    proto, transport = protocol(head_timeout_s=0.05)
    proto.data_received(b"GET /x HTTP/1.1\r\nhost")
    await asyncio.wait_for(transport.written.wait(), 5)
    assert transport.out.startswith(b"HTTP/1.1 408 ") and b'"code": "timeout"' in transport.out
    proto.connection_lost(None)
