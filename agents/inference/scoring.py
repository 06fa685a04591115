"""Stream scoring: score every record of the user's topic into another topic, exactly once.

``aiaas score --model M --from IN --to OUT --source spec.yaml`` (README, "Score your topic"). A
worker is one member of a consumer group over ``IN``; start more with the same group to share its
partitions. Loop: poll up to ``max_batch`` records, decode them with the source's compiled decoder
(``aiaas.sources``; a record that does not decode is a ``Rejection`` naming the field; see
``scoringbatch``), run the decoded rows as one onnxruntime call on the version the registry says
to serve (``Sessions``: a promoted version takes over between two batches, no record is skipped),
and write one prediction record per scored input record (same key; headers ``source-topic``,
``-partition``, ``-offset``) and one dead letter per rejected one, with the consumed offsets, in
one Kafka transaction per input partition (``transactions``). While one poll's transactions
commit, the next poll is decoded and scored.

Exactly once, with a rebalance or a kill -9: a partition's new owner fences the old one through the
partition's transactional id before it reads the committed offset (``_Rebalance``), and records
fetched before a rebalance are only scored when they are still ours and past what we have already
handed to a transaction (``_fresh``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError
from aiokafka.structs import TopicPartition

from aiaas.agents.inference.predictions import encode as encode_json
from aiaas.agents.inference.predictions_avro import value_encoder
from aiaas.agents.inference.scoring_end import SourceEnd, seek_to_time
from aiaas.agents.inference.scoring_settings import ScoringSettings
from aiaas.agents.inference.scoringbatch import Encode, Raw, Scored, compute, outgoing
from aiaas.agents.inference.sessions import Loaded, Sessions
from aiaas.agents.inference.transactions import PlainSink, Target, TransactionalSink
from aiaas.registry.store import Registry
from aiaas.schemas.errors import BadInput, KafkaUnavailable, NotFound
from aiaas.schemas.sources import Source
from aiaas.sources.decoded import Decoder
from aiaas.sources.masking import source_masker
from aiaas.streams import metrics as m
from aiaas.streams.admin import Admin
from aiaas.streams.lifecycle import Service, bounded, stop_consumer
from aiaas.streams.offload import Offload
from aiaas.streams.retry import started
from aiaas.streams.settings import Settings
from aiaas.streams.topics import TopicSpec

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Revoked: finish the poll in flight (its transactions commit). Assigned: fence the previous
    owners, then read where each partition's committed offset stands."""

    def __init__(self, worker: ScoringWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.worker.drain()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.worker.assigned(set(assigned))


class ScoringWorker(Service):
    def __init__(self, settings: Settings, cfg: ScoringSettings, source: Source, decoder: Decoder) -> None:
        self.settings = settings
        self.cfg = cfg
        self.source = source
        self.decoder = decoder
        self.masks = source_masker(source)  # the source's personal fields (docs/security.md, "Masking")
        self.group = cfg.group(settings)
        self.registry = Registry(settings)
        self.sessions = Sessions(self.registry, cfg.worker_settings())
        self.stats: Counter[str] = Counter()
        self.consumer: AIOKafkaConsumer | None = None
        self.sink: TransactionalSink | PlainSink | None = None
        self.owned: set[TopicPartition] = set()
        self.next: dict[TopicPartition, int | None] = {}  # past what was handed to a transaction
        self.end = SourceEnd(source)  # the source's end: (none: score until stopped)
        self._encode: Encode = encode_json  # prediction values (JSON, or Avro: set in start())
        self._lock = asyncio.Lock()  # a poll being scored, or a rebalance step: one at a time
        self._inflight: asyncio.Task[None] | None = None
        # decode + onnxruntime + encode: inline while short (a thread hop and the GIL handed back and
        # forth cost 10% of a record's CPU: benchmarks.streaming), in a thread for a slow model; timed
        # by this thread's CPU (onnxruntime's other intra-op threads, threads > 1, are not counted)
        self._compute = Offload(cfg.inline_below_ms, clock=time.thread_time)
        self._stopping = asyncio.Event()
        self._failure: Exception | None = None  # taking partitions over failed (see assigned)
        self.ready = asyncio.Event()
        self.rebalanced = asyncio.Event()
        self._m_scored = m.SCORE_RECORDS.labels(model=cfg.model, topic=cfg.from_topic, outcome="scored")
        self._m_rejected = m.SCORE_RECORDS.labels(model=cfg.model, topic=cfg.from_topic,
                                                  outcome="dead_lettered")
        self._m_lag = m.SCORE_LAG.labels(model=cfg.model, topic=cfg.from_topic)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.registry.start()
        await self.sessions.start()
        self._check_width(self.sessions.default)  # before anything is created: a wrong spec leaves no trace
        self._encode = await asyncio.to_thread(value_encoder, self.cfg, self.source.passthrough)
        target = await self._topics()
        start = self.source.start if isinstance(self.source.start, str) else "earliest"
        kw = self.settings.consumer_kwargs(
            self.group, auto_offset_reset=start, isolation_level="read_committed",
            session_timeout_ms=self.cfg.session_timeout_ms,
            heartbeat_interval_ms=self.cfg.heartbeat_interval_ms)
        self.consumer = await started(lambda: AIOKafkaConsumer(**kw), self.settings,
                                      f"starting a consumer of {self.cfg.from_topic} (group {self.group})")
        if self.cfg.exactly_once:
            self.sink = TransactionalSink(self.settings, self.group, target,
                                          deadline_s=self.cfg.retry_deadline_s,
                                          transaction_timeout_ms=self.cfg.transaction_timeout_ms)
        else:
            self.sink = PlainSink(self.settings, target, self._commit)
        await self.sink.start()
        self.consumer.subscribe([self.cfg.from_topic], listener=_Rebalance(self))
        log.info("scoring %s -> %s with model %s: group %s, %s, max_batch %d", self.cfg.from_topic,
                 self.cfg.to_topic, self.cfg.model, self.group,
                 "exactly once" if self.cfg.exactly_once else "at least once", self.cfg.max_batch)

    async def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(Exception):  # TimeoutError: see ScoringSettings.stop_grace_s
            async with asyncio.timeout(self.cfg.stop_grace_s):
                await self.drain()
        log.info("scoring worker stopping: %s", dict(self.stats))
        if self.consumer is not None:
            await stop_consumer(self.consumer)
        if self.sink is not None:
            await self.sink.stop()
        await self.sessions.stop()
        await self.registry.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def _topics(self) -> Target:
        """The output and dead-letter topics (created like the input when missing)."""
        async with Admin(self.settings) as admin:
            if self.cfg.from_topic not in await admin.list_topics():
                raise NotFound("input topic does not exist", topic=self.cfg.from_topic)
            parts = self.cfg.partitions or await admin.partitions(self.cfg.from_topic)
            limit = {"max.message.bytes": str(self.settings.max_message_bytes)}
            dlq = self.cfg.dead_letter_topic()
            await admin.ensure_topics([TopicSpec(name=self.cfg.to_topic, partitions=parts, config=limit),
                                       TopicSpec(name=dlq, partitions=1, config=limit)])
            return Target(self.cfg.to_topic, await admin.partitions(self.cfg.to_topic), dlq)

    def _check_width(self, loaded: Loaded | None) -> None:
        """Refuse a model whose input is not as wide as the source's rows (one line, at start)."""
        if loaded is None or not loaded.mv.inputs:
            return
        dim = loaded.mv.inputs[0].shape[-1] if loaded.mv.inputs[0].shape else None
        if isinstance(dim, int) and dim > 0 and dim != self.source.width():
            raise BadInput("the model's input width is not the source's", model=self.cfg.model,
                           version=loaded.version, model_width=dim, source_width=self.source.width())

    # ------------------------------------------------------------------ rebalances

    async def drain(self) -> None:
        """Wait for the poll being scored and for its transactions (rebalance, stop)."""
        async with self._lock:
            await self._settle()

    async def assigned(self, tps: set[TopicPartition]) -> None:
        """Take ``tps`` over. aiokafka only logs a listener's failure and would leave the worker
        fetching partitions it does not score: ``run()`` raises it instead (the worker stops). The
        take-over has the retry deadline: aiokafka's committed-offset fetch and a transactional
        producer's start wait forever for a broker that is gone, holding the lock ``stop()`` needs (a
        deadline a lost cancellation cannot undo: ``lifecycle.bounded``)."""
        try:
            await bounded(self._take(tps), self.cfg.retry_deadline_s)
        except TimeoutError:
            self.owned, self._failure = set(), KafkaUnavailable(
                "partitions not taken over before the retry deadline", deadline_s=self.cfg.retry_deadline_s,
                partitions=sorted(tp.partition for tp in tps))
        except Exception as exc:
            self.owned, self._failure = set(), exc

    async def _take(self, tps: set[TopicPartition]) -> None:
        assert self.consumer is not None and self.sink is not None
        async with self._lock:
            await self._settle()
            await self.sink.assign(tps)  # fences every previous owner before we read offsets
            self.owned = tps
            self.next = {}
            for tp in tps:
                committed = await self.consumer.committed(tp)
                if committed is not None:
                    self.consumer.seek(tp, committed)
                elif isinstance(self.source.start, datetime):
                    await seek_to_time(self.consumer, tp, self.source.start)
                self.next[tp] = committed
            await self.end.resolve(self.consumer, tps)
        log.info("assigned %d partitions: %s", len(tps), sorted(tp.partition for tp in tps))
        self.stats["partitions"] = len(tps)
        self.rebalanced.set()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """At-least-once: commit offsets after the acks (partitions still ours only)."""
        assert self.consumer is not None
        mine = {tp: o for tp, o in offsets.items() if tp in self.owned}
        if not mine:
            return
        try:
            await self.consumer.commit(mine)
        except CommitFailedError as exc:  # the group rebalanced: the new owner re-reads (at least once)
            log.warning("commit refused (the group rebalanced): %s", str(exc).splitlines()[0])

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Score until ``stop()``; a write that fails past its retry deadline is raised."""
        consumer = self.consumer
        if consumer is None:
            raise RuntimeError("ScoringWorker.run before start()")
        self.ready.set()
        while not self._stopping.is_set():
            if self._failure is not None:
                raise self._failure
            batches = await consumer.getmany(timeout_ms=100, max_records=self.cfg.max_batch)
            async with self._lock:
                fresh = self._fresh(batches)
                if fresh:
                    scored = await self._score(fresh)
                    await self._settle()
                    self._inflight = asyncio.create_task(self._write(scored))
            self._update_lag(consumer)
            if self.end.bounded and await self._at_end(consumer):
                return

    async def _at_end(self, consumer: AIOKafkaConsumer) -> bool:
        """Every owned partition scored to the source's end and its transactions committed."""
        async with self._lock:
            if not await self.end.all_reached(consumer, self.owned, self.next):
                return False
            await self._settle()
        log.info("%s scored to its end on partitions %s; stopping", self.cfg.from_topic, sorted(self.owned))
        return True

    async def _settle(self) -> None:
        """Wait for the transactions in flight; their failure (past the retry deadline) is raised.
        A cancelled caller (SIGTERM) does not cut them short: ``stop()`` waits for them again."""
        task = self._inflight
        if task is not None:
            await asyncio.shield(task)
            self._inflight = None

    def _fresh(self, batches: dict[TopicPartition, list[Raw]]) -> dict[TopicPartition, list[Raw]]:
        """The records still ours and not yet handed to a transaction (a poll fetched before a
        rebalance may hold records of partitions gone, or from before the committed offset)."""
        out = {}
        for tp, recs in batches.items():
            if tp not in self.owned:
                continue
            recs = self.end.cut(tp, recs)
            nxt = self.next.get(tp)
            if nxt is not None and recs and recs[0].offset < nxt:
                recs = [r for r in recs if r.offset >= nxt]
            if recs:
                out[tp] = recs
                self.next[tp] = recs[-1].offset + 1
        return out

    async def _score(self, batches: dict[TopicPartition, list[Raw]]) -> Scored:
        loaded = self.sessions.default
        assert loaded is not None
        flat = [r for recs in batches.values() for r in recs]
        decoded, values, failed = await self._compute(compute, self.decoder, flat, loaded, self._encode)
        scored = outgoing(batches, flat, decoded, values, failed)
        if self.masks is not None:  # prediction keys and dead letters: no personal value leaves
            self.masks.outgoing(scored.outs)
        return scored

    async def _write(self, scored: Scored) -> None:
        assert self.sink is not None
        fenced = await self.sink.write(scored.outs)
        for tp in fenced:  # another worker owns it now: forget it until the group says otherwise
            self.owned.discard(tp)
            self.stats["fenced"] += 1
        self.stats["scored"] += scored.scored
        self.stats["dead_lettered"] += scored.rejected
        self._m_scored.inc(scored.scored)
        self._m_rejected.inc(scored.rejected)

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        lag = 0
        for tp in self.owned:
            end = consumer.last_stable_offset(tp)
            nxt = self.next.get(tp)
            if end is not None and nxt is not None:
                lag += max(0, end - nxt)
        self._m_lag.set(lag)


async def score(settings: Settings, cfg: ScoringSettings, source: Source) -> None:
    """Run one scoring worker until SIGINT/SIGTERM or the source's end (``aiaas score``). The cyclic
    GC runs every 50,000 allocations, not 700: it rescanned each poll's live records (a fifth of the
    CPU per record, benchmarks.streaming); refcounting frees them."""
    from aiaas.sources import compile_source
    from aiaas.streams.runtime import until_signalled

    worker = ScoringWorker(settings, cfg, source, compile_source(source, labels=False))
    with m.serving(settings):
        await worker.start()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        await until_signalled(worker.run, worker.stop)
