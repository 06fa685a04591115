"""Request-reply inference over Kafka: ``InferenceClient.infer`` and the pipelined ``infer_many``.

One client instance serves many concurrent callers (the HTTP bridge keeps one per process): it owns
one reply topic ``replies.<client-id>``, one producer and one reply reader; each request's future is
kept under its request id until the reply with that ``correlation-id`` arrives. Replies for ids no
longer waited for (duplicates after a worker restart, or late replies after a timeout) are dropped
and counted in ``duplicates``. ``max_in_flight`` bounds outstanding requests (backpressure).

    async with InferenceClient(settings) as client:
        result = await client.infer("digits", {"input": x}, timeout=5, binary=True)
        result.outputs["logits"]                    # numpy arrays
        async for i, r in client.infer_many("digits", ({"input": row} for row in xs)):
            ...                                     # r: InferResult or InferenceError

The records (for producers in any language) are described in docs/wire-protocol.md: a plain OIP v2
JSON request is answered with one OIP JSON reply record; this client speaks the frame.

Topics are not created on first use: the request topic exists once a worker of the model started
(before that ``infer`` raises NotFound at once), and the ``reply-to`` topic must exist before the
request is sent (this client creates its own in ``start``); a request whose reply topic is missing
gets no reply, only a dead letter on ``<prefix>infer.<model>.dlq`` that says so.

Frames: this client sends every request as an entry of a frame (``aiaas.streams.frame``): the
requests of one event-loop tick that share a topic and headers travel as one record (up to
``pack_requests`` of them), numeric ones of one layout stacked as rows; the worker answers with
reply frames. ``request`` sends an OIP record as it is (the bridge's pass-through).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from aiaas.client.pipelined import Pipeline
from aiaas.client.tickbatches import Layout, Shared, Stream, TickBatches, layout_of
from aiaas.client.waiting import Sink, Waiting
from aiaas.schemas.errors import AiaasError, ErrorCode, InferenceError, NotFound, Unavailable
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.admin import ensure
from aiaas.streams.envelope import Sealer
from aiaas.streams.keyring import KeySettings, load_keyring
from aiaas.streams.lifecycle import Service, cancel
from aiaas.streams.metadata import partition_count, topic_exists
from aiaas.streams.replywire import (
    STATUS,
    InferResult,
    Inputs,
    Reply,
    arrays_of,
    encode_request,
    request_fields,
)
from aiaas.streams.retry import started
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

__all__ = [  # the record formats live in aiaas.streams.replywire; these names stay importable from here
    "STATUS", "InferResult", "InferenceClient", "InferenceError", "Inputs", "Reply", "encode_request",
    "partition_count", "topic_exists",
]
log = logging.getLogger(__name__)
REPLY_WAIT_MS = 2000  # the reply reader's fetch long-poll (see start)

_OURS = frozenset({h.CORRELATION_ID, h.REPLY_TO, h.DEADLINE, h.WIRE_VERSION})
_WIRE_VERSION = (h.WIRE_VERSION, str(frame.VERSION).encode())
_FRAME_OWN = frozenset({h.CONTENT_TYPE, h.INFERENCE_HEADER_LENGTH, h.WIRE_VERSION})  # a frame has its own


class InferenceClient(Service):
    """Send inference requests and await their replies; safe to share across tasks."""

    def __init__(self, settings: Settings, *, client_id: str | None = None, max_in_flight: int = 4096,
                 timeout_s: float = 30.0, linger_ms: int = 0, pack_requests: int = 32,
                 compression: str | None = None, sealer: Sealer | None = None,
                 pack_linger_ms: float = 0.0) -> None:
        self.settings = settings
        self.linger_ms = linger_ms  # 0: send at once (aiokafka still batches what queues meanwhile)
        # Tensor bytes rarely compress: lz4 over float32 requests was 40% of this client's CPU and
        # saved nothing, so requests go uncompressed unless asked (e.g. "lz4" for JSON bodies).
        self.compression = compression
        # up to this many requests travel in one frame (1: a record each)
        self.pack_requests, self.pack_bytes = pack_requests, min(128 * 1024, settings.max_batch_size // 2)
        self.pack_linger_s = pack_linger_ms / 1000  # > 0: a frame waits this long for more requests
        self.topics = Topics(settings)
        self.client_id = client_id or f"{settings.client_id}-{uuid.uuid4().hex[:8]}"
        self.reply_topic = self.topics.replies(self.client_id).name
        self._reply_to = self.reply_topic.encode()
        self.timeout_s = timeout_s
        self.waiting = Waiting(max_in_flight)
        self._id_prefix = f"{uuid.uuid4().hex[:12]}-"
        self._ids = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._partitions: dict[str, int] = {}  # request topic -> partition count
        self._streams: dict[tuple[str, Shared], Stream] = {}
        self._topic_of: dict[str, str] = {}
        self._checking: dict[str, asyncio.Future[int]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._batches: TickBatches | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self.sealer = sealer  # tenant data keys (docs/security.md); None: AIAAS_DATA_KEYS* at start

    async def start(self) -> None:
        await ensure(self.settings, [self.topics.replies(self.client_id)])
        pkw = self.settings.producer_kwargs(linger_ms=self.linger_ms, compression_type=self.compression)
        self._producer = await started(lambda: AIOKafkaProducer(**pkw), self.settings,
                                       "starting the client's producer")
        if self.sealer is None:
            self.sealer = configured_sealer()
        self.waiting.sealer = self.sealer
        self._batches = TickBatches(self._producer, self._not_sent, pack_max=self.pack_requests,
                                    pack_bytes=self.pack_bytes, linger_s=self.pack_linger_s,
                                    in_flight=self.waiting.__len__,
                                    seal=self._seal_frame if self.sealer else None)
        # the broker answers a waiting fetch as soon as a reply lands, so a longer wait adds no latency;
        # a short one only costs CPU while idle (5 ms: 200 empty fetches/s, 7% of a core here). Nothing
        # else goes over this consumer's connection after start, so 2 s (issue 18 item 5, cost at rest)
        ckw = self.settings.consumer_kwargs(None, auto_offset_reset="latest", fetch_max_wait_ms=REPLY_WAIT_MS)
        self._consumer = await started(lambda: AIOKafkaConsumer(**ckw), self.settings,
                                       f"starting the client's reader of {self.reply_topic}")
        tp = TopicPartition(self.reply_topic, 0)
        self._consumer.assign([tp])
        await self._consumer.seek_to_end(tp)
        await self._consumer.position(tp)  # resolve now: replies to our first request are after it
        self._reader = asyncio.create_task(self.waiting.read_forever(self._consumer, self.reply_topic),
                                           name=f"replies-{self.client_id}")
        self._sweeper = asyncio.create_task(self.waiting.expire_forever(), name=f"timeouts-{self.client_id}")

    async def stop(self) -> None:
        for task in (self._reader, self._sweeper):
            await cancel(task)
        self._reader = self._sweeper = None
        if self._batches is not None:
            await self._batches.drain()
        self.waiting.fail_all(self.waiting.ids(), Unavailable("client stopped before the reply came"))
        for part in (self._consumer, self._producer):
            if part is not None:
                await part.stop()
        self._consumer = self._producer = None

    @property
    def in_flight(self) -> int:
        return len(self.waiting)

    @property
    def duplicates(self) -> int:
        """Replies dropped because their request was already answered (or given up)."""
        return self.waiting.duplicates

    @property
    def malformed(self) -> int:
        """Reply records that could not be read (logged and dropped)."""
        return self.waiting.malformed

    # ------------------------------------------------------------------ API

    async def infer(
        self, model: str, inputs: Inputs, *, timeout: float | None = None,  # noqa: ASYNC109 - also the deadline
        version: int | str | None = None,
        binary: bool = True, headers: Mapping[str, str] | None = None, request_id: str | None = None,
        parameters: dict[str, Any] | None = None, outputs: Sequence[str] | None = None,
    ) -> InferResult:
        """One request; returns the decoded outputs or raises InferenceError (with status_code).
        ``binary`` is kept for callers of older versions: every request travels in a binary frame."""
        reply = await self.call(model, inputs, timeout=timeout, version=version, headers=headers,
                                request_id=request_id, parameters=parameters, outputs=outputs)
        return reply.result()

    async def call(
        self, model: str, inputs: Inputs, *, timeout: float | None = None,  # noqa: ASYNC109 - also the deadline
        version: int | str | None = None, headers: Mapping[str, str] | None = None,
        request_id: str | None = None, parameters: dict[str, Any] | None = None,
        outputs: Sequence[str] | None = None,
    ) -> Reply:
        """``infer``'s reply as it comes, an error reply included (the HTTP bridge's call: it answers
        with the reply's status). The request is an entry of this tick's frame; a ``traceparent``
        header stays the entry's own (its request then travels alone, not as a row)."""
        rid = request_id or self.new_id()
        arrays, fields = arrays_of(inputs), request_fields(parameters, outputs)
        extra = _present({**(headers or {}), h.MODEL_VERSION: str(version) if version is not None else None})
        trace = extra.pop(h.TRACEPARENT, None)
        layout = layout_of(arrays, rows=not fields and trace is None)
        stream = await self.stream(model, extra)
        if rid in self.waiting:
            raise AiaasError("request id already in flight", code=ErrorCode.CONFLICT, request_id=rid)
        timeout_s = self.timeout_s if timeout is None else timeout
        fut = await self.waiting.add(rid, timeout_s)
        own = {h.TRACEPARENT: trace} if trace is not None else None
        self.send_request(stream, rid, arrays, timeout_s, extra.get(h.DEADLINE), fields, layout, own)
        return await fut

    async def request(
        self, model: str, value: bytes, headers: Mapping[str, str], *, request_id: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - also sent as the deadline header
    ) -> Reply:
        """Send an already encoded request and await its raw reply (the bridge's pass-through)."""
        fut = await self.submit(model, value, headers, request_id=request_id, timeout=timeout)
        return await fut

    async def submit(
        self, model: str, value: bytes, headers: Mapping[str, str], *, request_id: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - also sent as the deadline header
    ) -> asyncio.Future[Reply]:
        """Send an encoded record as it is (an OIP request, as callers in other languages send it);
        returns once it is queued, with a future for its reply."""
        topic, _ = await self.route(model)
        rid = request_id or self.new_id()
        if rid in self.waiting:
            raise AiaasError("request id already in flight", code=ErrorCode.CONFLICT, request_id=rid)
        timeout_s = self.timeout_s if timeout is None else timeout
        fut = await self.waiting.add(rid, timeout_s)
        rid_b = rid.encode()
        hdrs = [(k, v.encode()) for k, v in headers.items() if k not in _OURS]
        hdrs += [(h.CORRELATION_ID, rid_b), (h.REPLY_TO, self._reply_to), _WIRE_VERSION,
                 (h.DEADLINE, (headers.get(h.DEADLINE) or str(h.deadline_ms(timeout_s))).encode())]
        assert self._producer is not None and self._batches is not None
        try:
            if self.sealer is not None:  # sealed under its tenant's key
                value, hdrs = self.sealer.seal_record(value, hdrs, self.sealer.key_for(headers.get(h.TENANT)))
            sent = await self._producer.send(topic, value, key=rid_b, headers=hdrs)
        except BaseException:
            self.waiting.fail(rid, Unavailable("request could not be sent", model=model))
            raise
        sent.add_done_callback(functools.partial(self._batches.delivered, [rid]))
        return fut

    def send_request(self, stream: Stream, rid: str, arrays: dict[str, np.ndarray], timeout_s: float,
                     deadline: str | None, fields: dict[str, Any] | None, layout: Layout | None,
                     own: dict[str, str] | None = None) -> None:
        """Queue a request (its reply already waited for) as an entry of this tick's frame for
        ``stream`` (``own``: the entry's own headers); a failure to queue fails the request."""
        assert self._batches is not None
        try:
            self._batches.add_request(stream, rid, arrays, timeout_s, deadline, fields, layout, own)
        except Exception as exc:
            self.waiting.fail(rid, Unavailable("request could not be sent", detail=str(exc)[:200]))

    async def submit_request(self, stream: Stream, rid: str, arrays: dict[str, np.ndarray],
                             timeout_s: float, deadline: str | None, layout: Layout | None,
                             sink: Sink) -> None:
        """``infer_many``'s send: ``sink`` gets the reply or error (no future per request)."""
        await self.waiting.slots.acquire()
        self.waiting.put(rid, asyncio.get_running_loop().time() + timeout_s, sink)
        self.send_request(stream, rid, arrays, timeout_s, deadline, None, layout)

    async def stream(self, model: str, extra: Mapping[str, str]) -> Stream:
        """Where requests to ``model`` with the headers ``extra`` go (one object per topic and headers)."""
        topic, partitions = await self.route(model)
        key = (topic, self.shared_headers(extra))
        found = self._streams.get(key)
        if found is None or found.partitions != partitions:
            if len(self._streams) >= 1024:
                self._streams.clear()
            found = self._streams[key] = Stream(topic, partitions, key[1])
        return found

    async def route(self, model: str) -> tuple[str, int]:
        """The request topic of ``model`` and its partition count (NotFound when there is none)."""
        producer = self._producer
        if producer is None:
            raise RuntimeError("InferenceClient used before start()")
        topic = self._topic_of.get(model)
        if topic is None:
            topic = self._topic_of[model] = self.topics.infer_requests(model).name
        return topic, self._partitions.get(topic) or await self._check_model(producer, model, topic)

    def new_id(self) -> str:
        """A request id unique to this client instance (cheaper than a uuid per request)."""
        self._ids += 1
        return f"{self._id_prefix}{self._ids:x}"

    def infer_many(
        self, model: str, inputs: Iterable[Inputs] | AsyncIterable[Inputs], *, window: int = 256,
        timeout: float | None = None,
        version: int | str | None = None, binary: bool = True, headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[tuple[int, InferResult | InferenceError]]:
        """Keep up to ``window`` requests in flight; yield ``(index, result or error)`` as replies come
        (``aiaas.client.pipelined``)."""
        extra = _present({**(headers or {}), h.MODEL_VERSION: str(version) if version is not None else None})
        pipeline = Pipeline(self, model, inputs, window=window, timeout=timeout, extra=extra)
        return pipeline.results()

    # ------------------------------------------------------------------ internals

    def shared_headers(self, extra: Mapping[str, str]) -> Shared:
        """The record headers of a frame of requests (its entries add their own)."""
        shared = [(k, v.encode()) for k, v in extra.items() if k not in _OURS and k not in _FRAME_OWN]
        shared.append((h.REPLY_TO, self._reply_to))
        return tuple(shared)

    def _not_sent(self, rids: list[str], exc: BaseException) -> None:
        self.waiting.fail_all(rids, Unavailable("request not delivered", detail=str(exc)))

    async def _check_model(self, producer: AIOKafkaProducer, model: str, topic: str) -> int:
        """The request topic's partition count (one broker question, however many callers ask)."""
        asking = self._checking.get(topic)
        if asking is None:
            asking = self._checking[topic] = asyncio.ensure_future(partition_count(producer.client, topic))
            asking.add_done_callback(lambda _: self._checking.pop(topic, None))
        count = await asyncio.shield(asking)
        if count == 0:  # workers create it (brokers here do not auto-create topics)
            raise NotFound("unknown model: no inference worker has served it yet (its request topic does "
                           "not exist)", model=model, topic=topic,
                           hint=f"aiaas worker inference --model {model}")
        self._partitions[topic] = count
        return count

    def _seal_frame(self, value: bytes, headers: list[tuple[str, bytes]], rids: list[str],
                    ) -> tuple[bytes, list[tuple[str, bytes]]]:
        """A frame sealed under the key of its ``tenant`` header (else the client's tenant)."""
        assert self.sealer is not None
        tenant = next((v.decode() for k, v in headers if k == h.TENANT), None)
        return self.sealer.seal_record(value, headers, self.sealer.key_for(tenant), rids)


def configured_sealer() -> Sealer | None:
    """The data keys of ``AIAAS_DATA_KEYS_FILE`` / ``AIAAS_DATA_KEYS``, sealing for
    ``AIAAS_DATA_KEY_TENANT`` (or per record ``tenant`` header); None when no keys are set."""
    cfg = KeySettings()
    keys = load_keyring(cfg)
    return Sealer(keys, cfg.data_key_tenant) if keys is not None else None


def _present(values: Mapping[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}
