"""The inference worker: one consumer-group member serving one model from ``infer.<model>.requests``.

Loop: poll up to ``max_batch`` requests (waiting at most ``max_wait_ms`` for more; a request batch
record counts as the requests it carries, see ``intake.split``), decode and check them in the event
loop, run compatible ones as one onnxruntime call in a worker thread (so Kafka heartbeats and fetches
keep flowing), produce each reply to its ``reply-to`` topic (or to ``infer.<model>.results`` when
there is none; replies to framed requests go as one reply frame per topic and poll, see
``replier`` and ``outbox``), and commit the offsets only after every reply of the poll
is acknowledged (``committer``). While one batch computes, the next is fetched and decoded. Bad
input gets an error reply and a dead letter; expired deadlines get a 504 reply without compute;
a failure to make or deliver one reply (NaN in a JSON reply, a reply over the size limits, a
record the broker refuses) is that request's alone: an error reply and a dead letter (``replier``).
Nothing crashes the loop except a failure to write dead letters (the broker is gone), which stops
the worker uncommitted so its partitions are re-served.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from aiokafka import ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from aiaas.agents.inference import batcher, blocks, stages
from aiaas.agents.inference.batcher import Result, Work
from aiaas.agents.inference.breather import Breather
from aiaas.agents.inference.committer import Committer
from aiaas.agents.inference.intake import Intake, request_id, split, unreadable
from aiaas.agents.inference.outbox import Outbox
from aiaas.agents.inference.sealing import WorkerSealing
from aiaas.agents.inference.sessions import Sessions
from aiaas.agents.inference.settings import WorkerSettings
from aiaas.registry.store import Registry
from aiaas.schemas.errors import AiaasError, DeadlineExceeded
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams import metrics as m
from aiaas.streams.admin import ensure
from aiaas.streams.assignors import WeightedAssignor, default_weight
from aiaas.streams.consumer import Consumer
from aiaas.streams.dlq import DeadLetters
from aiaas.streams.lifecycle import Service, cancel, stop_consumer
from aiaas.streams.offload import Offload
from aiaas.streams.producer import Producer
from aiaas.streams.record import Record
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

log = logging.getLogger(__name__)


class _Handoff(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions move to another member, finish and commit what is in flight."""

    def __init__(self, worker: InferenceWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.worker.drain()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %d partitions: %s", len(assigned), sorted(tp.partition for tp in assigned))
        self.worker.stats["partitions"] = len(assigned)
        self.worker.rebalanced.set()


def group_id(settings: Settings, model: str) -> str:
    """The consumer group of a model's workers (the autoscaler watches its lag)."""
    return settings.topic(f"inference.{model}")


class InferenceWorker(Service):
    def __init__(self, settings: Settings, cfg: WorkerSettings) -> None:
        self.settings = settings
        self.cfg = cfg
        self.topics = Topics(settings)
        self.requests_topic = self.topics.infer_requests(stages.served(cfg), cfg.partitions)
        self.results_topic = self.topics.infer_results(stages.answered_as(cfg), cfg.partitions).name
        self.stats: Counter[str] = Counter()
        self.registry = Registry(settings)
        self.sessions = Sessions(self.registry, cfg)
        self.intake = Intake(cfg, self.sessions)
        # replies are small and mostly tensor bytes: compressing them costs CPU and saves little
        self._producer = Producer(settings, linger_ms=cfg.reply_linger_ms, compression_type=None)
        self.sealing = WorkerSealing()  # sealed requests: opened in memory, replies sealed (start loads keys)
        self.dead_letters = DeadLetters(self._producer, self.topics.infer_dlq(cfg.model).name,
                                        protect=self.sealing.protect)
        self.breathe = Breather()  # decoding a poll of big JSON requests may take seconds: heartbeats too
        self.replier = stages.replier(settings, cfg, self._producer, self.results_topic, self.dead_letters,
                                      self.stats, chunk_bytes=settings.chunk_bytes,
                                      max_reply_bytes=cfg.max_reply_bytes, breathe=self.breathe,
                                      sealing=self.sealing)
        self._batch_limit = min(1 << 20, settings.max_message_bytes // 4)
        self._consumer: Consumer | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{cfg.model}")
        # a short onnxruntime call runs on the loop: the thread hop cost more than a small batch
        self._run = Offload(cfg.inline_below_ms, executor=self._pool)
        self._inflight: asyncio.Task[None] | None = None
        self._commits: Committer | None = None
        self._committer: asyncio.Task[None] | None = None
        self._per_record = 1.0  # requests per record lately (request batch records carry many)
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.rebalanced = asyncio.Event()  # set on every assignment (tests and autoscalers watch it)
        self._m_ok = m.INFER_REQUESTS.labels(model=cfg.model, outcome="ok")
        self._m_batch = m.INFER_BATCH_SIZE.labels(model=cfg.model)
        self._m_queue = m.INFER_LATENCY.labels(model=cfg.model, stage="queue")
        self._m_compute = m.INFER_LATENCY.labels(model=cfg.model, stage="compute")
        self._m_total = m.INFER_LATENCY.labels(model=cfg.model, stage="total")
        self._m_depth = m.INFER_QUEUE_DEPTH.labels(model=cfg.model)
        self._m_version = m.INFER_MODEL_VERSION.labels(model=cfg.model)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        t, model = self.topics, self.cfg.model
        await ensure(self.settings, [self.requests_topic, t.infer_results(model, self.cfg.partitions),
                                     t.infer_dlq(model), *stages.topics(t, self.cfg)])
        self.sealing.load()
        await self.registry.start()
        await self._producer.start()
        await self.sessions.start()
        weight = self.cfg.weight if self.cfg.weight is not None else default_weight()
        group = self.cfg.group_id or group_id(self.settings, stages.served(self.cfg))
        self._consumer = Consumer(
            self.settings, [], group, dead_letters=self.dead_letters,
            # one strategy only: aiokafka 0.14 sends a JoinGroup per listed strategy, and the second
            # one (its protocol list changed) restarts the rebalance, which can livelock two members
            partition_assignment_strategy=(WeightedAssignor(weight),),
            fetch_min_bytes=self.cfg.fetch_min_bytes,
            fetch_max_wait_ms=self.cfg.fetch_max_wait_ms or self.settings.fetch_max_wait_ms,
            session_timeout_ms=self.cfg.session_timeout_ms,
            heartbeat_interval_ms=self.cfg.heartbeat_interval_ms, group_instance_id=self.cfg.instance_id,
        )
        await self._consumer.start()
        self._consumer.raw.subscribe([self.requests_topic.name], listener=_Handoff(self))
        self._commits = Committer(self._consumer, self.cfg.commit_interval_ms / 1000,
                                  self.replier.undelivered)
        self._committer = asyncio.create_task(self._commits.run(), name="committer")
        log.info("worker for %s up: group %s, weight %s, max_batch %d, max_wait %.1f ms",
                 self.cfg.model, group, weight, self.cfg.max_batch, self.cfg.max_wait_ms)

    async def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(Exception):
            await self.drain()
        log.info("worker for %s stopping: %s", self.cfg.model, dict(self.stats))
        await cancel(self._committer)
        if self._consumer is not None:
            await stop_consumer(self._consumer)
        await self.sessions.stop()
        await self._producer.stop()
        await self.registry.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def request_stop(self) -> None:
        """Make ``run()`` return after the current poll."""
        self._stopping.set()

    async def drain(self) -> None:
        """Finish the batch in flight, wait for its replies and commit (used on rebalance and stop)."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
        if self._commits is not None and self._committer is not None and not self._committer.done():
            await self._commits.join()
        if self._consumer is not None and self._consumer.running:
            await self._consumer.commit_quietly()

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Serve until ``stop()`` (or a failure to produce replies, which is raised)."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("InferenceWorker.run before start()")
        self.ready.set()
        while not self._stopping.is_set():
            records = await self._poll(consumer)
            if not records:
                continue
            sent = Outbox(self.replier.send_raw, self._batch_limit, self.replier.undelivered)
            requests = await self._unpacked(records, sent)
            self._m_depth.inc(len(records))
            counted = self.stats["requests"]
            works: list[Work] = []
            for r in requests:
                await self.breathe()
                if isinstance(r.message, frame.Entry) and r.message.rows:
                    works += await self._prepare_block(r, r.message, sent)
                elif (w := await self._prepare(r, sent)) is not None:
                    works.append(w)
            per_record = (self.stats["requests"] - counted) / len(records)
            self._per_record += (max(1.0, per_record) - self._per_record) * 0.2
            if self._inflight is not None:
                await asyncio.shield(self._inflight)  # a cancelled run() must not cut a batch short
            self._inflight = asyncio.create_task(self._compute(works, records, sent))
            if self._committer is not None and self._committer.done():
                self._committer.result()

    async def _poll(self, consumer: Consumer) -> list[Record]:
        """Up to ``max_batch`` records; with batching off, one (one request per call, end to end)."""
        # records, not requests: a request batch record carries ~_per_record requests
        limit = max(1, round(self.cfg.max_batch / self._per_record)) if self.cfg.batching else 1
        # the broker answers at once when records arrive; the wait only bounds idle wake-ups and
        # how long request_stop() takes (100 ms cost an idle worker ~0.2% of a core more)
        records = await consumer.getmany(timeout_ms=500, max_records=limit)
        if not records or not self.cfg.batching:
            return records
        deadline = time.monotonic() + self.cfg.max_wait_ms / 1000
        while len(records) < limit and (left := deadline - time.monotonic()) > 0:
            wait_ms = max(1, int(left * 1000))
            more = await consumer.getmany(timeout_ms=wait_ms, max_records=limit - len(records))
            if not more:
                break
            records += more
        return records

    async def _unpacked(self, records: list[Record], sent: Outbox) -> list[Record]:
        """The requests of a poll; a malformed frame goes to the dead letters whole, and the requests
        whose ids its head still tells get an error reply. Sealed records are opened first; one that
        does not open is refused the same way (its ids are in its headers)."""
        records, refused = self.sealing.open(records)
        for rec, ids, why in refused:
            await self.replier.fail(rec, ids, why, sent)
        requests, rejected = split(records)
        for rec, exc in rejected:
            await self.replier.fail(rec, frame.ids_of(rec.value, rec.headers), exc, sent)
        return requests

    async def _prepare(self, rec: Record, sent: Outbox) -> Work | None:
        """Decode and check one request; on failure the error reply (and dead letter) is sent here."""
        rid = request_id(rec)
        self.stats["requests"] += 1
        try:
            work = await self.intake.work(rec, rid)
            return stages.carried(work) if self.cfg.pipeline is not None else work
        except Exception as exc:  # bad input of any kind fails its request, never the loop
            await self.replier.fail(rec, [rid], unreadable(exc), sent)
            return None

    async def _prepare_block(self, rec: Record, block: frame.Entry, sent: Outbox) -> list[Work]:
        """``_prepare`` for an entry of stacked rows: checked once; a failure answers each of its
        requests (and dead-letters the entry once)."""
        self.stats["requests"] += len(block.ids)
        try:
            return await self.intake.block(rec, block)
        except Exception as exc:  # as in _prepare
            await self.replier.fail(rec, block.ids, unreadable(exc), sent)
            return []

    async def _compute(self, works: list[Work], records: list[Record], sent: Outbox) -> None:
        for batch in batcher.group(works, self.cfg.max_batch if self.cfg.batching else 1):
            live = []
            now_ms = time.time() * 1000
            for w in batch:
                if h.expired(w.record.headers, now_ms):
                    late = DeadlineExceeded("deadline passed while queued",
                                            deadline=w.record.headers.get(h.DEADLINE))
                    await self.replier.fail(w.record, w.ids, late, sent)
                else:
                    live.append(w)
            if not live:
                continue
            if live[0].record.timestamp_ms > 0:  # the oldest request's wait stands for the batch
                self._m_queue.observe(max(0.0, time.time() - live[0].record.timestamp_ms / 1000))
            started = time.perf_counter()
            results = await self._run(batcher.run_group, live)
            if any(isinstance(r, AiaasError) and w.count > 1 for w, r in zip(live, results, strict=True)):
                live, results = await self._retry_blocks(live, results)
            self._m_compute.observe(time.perf_counter() - started)
            self._m_batch.observe(sum(w.count for w in live))
            self.stats["batches"] += 1
            self._count_ok(live[0], await self.replier.reply_group(live, results, sent))
        await sent.flush()
        assert self._commits is not None
        self._commits.add(records, sent)
        self._m_depth.dec(len(records))
        if self.sessions.default is not None:
            self._m_version.set(self.sessions.default.version)

    async def _retry_blocks(self, works: list[Work], results: list[Result],
                            ) -> tuple[list[Work], list[Result]]:
        """A request block that failed in onnxruntime is retried request by request, so that only
        the request that fails gets the error."""
        out_w: list[Work] = []
        out_r: list[Result] = []
        for w, r in zip(works, results, strict=True):
            if w.count == 1 or not isinstance(r, AiaasError):
                out_w.append(w)
                out_r.append(r)
                continue
            rows = blocks.explode(w)
            out_w += rows
            out_r += await self._run(batcher.run_group, rows)
        return out_w, out_r

    # ------------------------------------------------------------------ replies

    def _count_ok(self, first: Work, ok: int) -> None:
        """Per-batch bookkeeping (per-reply counters cost more than they tell)."""
        self.stats["replies"] += ok
        self.stats[first.model.stat_key] += ok
        self._m_ok.inc(ok)
        if first.record.timestamp_ms > 0:  # the oldest request of the batch: its end-to-end wait
            self._m_total.observe(max(0.0, time.time() - first.record.timestamp_ms / 1000))


async def serve(settings: Settings, cfg: WorkerSettings) -> None:
    """Run one worker until SIGINT/SIGTERM (the body of ``aiaas worker inference``)."""
    from aiaas.streams.runtime import until_signalled

    worker = InferenceWorker(settings, await stages.resolved(settings, cfg))
    with m.serving(settings):
        await worker.start()
        gc.freeze()  # start-up objects (sessions, modules) leave the collector's view: shorter pauses
        await until_signalled(worker.run, worker.stop)

