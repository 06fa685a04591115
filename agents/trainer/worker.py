"""One trainer process: the faust App (data, membership), a parameter follower, a gradient producer.

``Trainer.run`` trains until the aggregator publishes the job's final parameters; the sync-mode loops
live in ``loops.py``. Blocking torch work runs in a worker thread so faust's heartbeats keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import zlib

import numpy as np
from aiokafka.structs import RecordMetadata

from aiaas.ml.compression import Compressor, half_floats
from aiaas.ml.params import state_shapes
from aiaas.ml.shards import plan, shard_name
from aiaas.schemas.errors import AiaasError, ErrorCode
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import GradientMessage
from aiaas.streams import codecs
from aiaas.streams import metrics as m
from aiaas.streams.admin import ensure
from aiaas.streams.chunking import Pieces
from aiaas.streams.headers import SENT_AT
from aiaas.streams.lifecycle import Service
from aiaas.streams.offload import Offload
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

from .app import build_app
from .compute import Batch, LocalModel
from .data import LocalData
from .feed import SourceFeed
from .follower import ParamFollower, Snapshot
from .loops import LOOPS
from .ring import RingInbox
from .settings import TrainerSettings

log = logging.getLogger(__name__)
RESEND_MIN_S = 5.0  # a sync trainer that hears nothing this long computes and sends again
READY_QUIET_S = 0.1  # the initial data read is over when no batch arrived for this long


def fast_producer(settings: Settings) -> Producer:
    """No linger, no compression: a gradient is latency-bound and float noise does not compress."""
    return Producer(settings, linger_ms=0, compression_type=None)


class Trainer(Service):
    """A trainer for one job; ``async with Trainer(...) as t: await t.run()``."""

    def __init__(self, settings: Settings, spec: JobSpec, ts: TrainerSettings | None = None) -> None:
        self.settings, self.spec = settings, spec
        self.ts = ts or TrainerSettings()
        self.worker_id = self.ts.worker_id
        topics = Topics(settings)
        self.grads_topic = topics.train_grads(spec.job_id)
        self.ring_topic = topics.train_ring(spec.job_id, spec.data.partitions)
        self.params_topic = topics.train_params(spec.job_id)
        window = spec.continuous.window_rows if spec.mode == "continuous" else None
        self.data = LocalData(spec.batch_size, seed=spec.seed + zlib.crc32(self.worker_id.encode()),
                              window=window)
        self.model = LocalModel(spec)
        self.compressor = Compressor(spec.compression)
        shards = spec.aggregator.shards
        self.plan = plan(state_shapes(self.model.model), shards)  # the tensors of each shard
        self.shard_grads = [self.grads_topic.model_copy(update={"name": shard_name(self.grads_topic.name, i)})
                            for i in range(shards)]
        self.follower = ParamFollower(settings, spec.job_id, shards, lockstep=spec.sync.mode != "async")
        self.producer = fast_producer(settings)
        self.ring = RingInbox(settings, self.ring_topic.name, self.worker_id) \
            if spec.sync.mode == "ring" else None
        self._changed = asyncio.Event()
        self.app = build_app(settings, self.ts, spec, self.data, self._changed.set)
        self.feed = SourceFeed(settings, spec, self.data, self._changed.set, self.ts.spec_timeout_s) \
            if spec.source is not None else None  # the user's topic instead of pushed data
        self.offload = Offload(self.ts.inline_below_ms)  # torch work: inline while it is short
        self.timings: dict[str, float] = {}
        self.sent = 0
        self._rate = m.Rate()
        self.send_errors = 0
        self.loaded_offset = -1
        self.resent = 0
        self.resend_s = max(RESEND_MIN_S, 3 * spec.sync.straggler_deadline_ms / 1000)

    async def start(self) -> None:
        self.ts.apply()  # threads, GIL switch interval, CPU pinning
        self.offload.prime(await asyncio.to_thread(self.model.warm_up))
        specs = [*self.shard_grads, *(self.params_topic.model_copy(update={"name": tp.topic})
                                      for tp in self.follower.tps)] + ([self.ring_topic] if self.ring else [])
        if self.feed is not None:  # no push created it: the group's partitions come from it
            specs += [Topics(self.settings).train_data(self.spec.job_id, self.spec.data.partitions),
                      Topics(self.settings).train_test(self.spec.job_id)]
        await ensure(self.settings, specs)
        await self.producer.start()
        await self.follower.start()
        if self.ring is not None:
            await self.ring.start()
        await self.app.start()
        if self.feed is not None:
            await self.feed.start()
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "any"
        log.info("trainer %s started for job %s (%s mode, device %s, cpus %s)", self.worker_id,
                 self.spec.job_id, self.spec.sync.mode, self.model.device, cpus)

    async def stop(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
        with contextlib.suppress(Exception):
            await self.app.stop()
        if self.ring is not None:
            await self.ring.stop()
        await self.follower.stop()
        await self.producer.stop()

    async def run(self) -> int:
        """Train until the final parameters arrive; returns the number of local steps taken."""
        try:
            await self.announce_ready()
            await LOOPS[self.spec.sync.mode](self)
        except AiaasError as exc:
            await self.report_fatal(exc)
            raise
        log.info("trainer %s done: %d steps, %d messages sent", self.worker_id, self.model.steps, self.sent)
        return self.model.steps

    async def report_fatal(self, exc: AiaasError) -> None:
        """Tell the aggregator this trainer cannot go on, and why: it fails the job with the reason
        (best effort: the error is raised and logged here anyway)."""
        value = self._signal("fatal", step=self.model.steps, error=exc.reason)
        try:
            for topic in self._control_topics:
                await (await self.producer.send(topic, value, key=self.worker_id))
        except Exception as send_exc:  # the caller raises the original error
            log.error("trainer %s: could not report its fatal error: %r", self.worker_id, send_exc)

    @property
    def _control_topics(self) -> list[str]:
        """Where the aggregator hears from this trainer: the ring topic in ring mode, else every
        shard's grads topic."""
        return [self.ring_topic.name] if self.ring is not None else [t.name for t in self.shard_grads]

    def _signal(self, payload: str, *, step: int = 0, error: str | None = None) -> bytes:
        """A message with no tensors that tells the aggregator something (``ready``, ``fatal``)."""
        header = GradientMessage(job_id=self.spec.job_id, worker_id=self.worker_id, step=step,
                                 base_version=0, samples=0, payload=payload, error=error)
        return codecs.pack(header, {})

    def _check_data(self) -> None:
        if self.data.fatal is not None:
            raise AiaasError(self.data.fatal, code=ErrorCode.BAD_REQUEST, worker=self.worker_id)

    async def announce_ready(self) -> None:
        """Tell the aggregator this trainer holds its data, once the initial read has gone quiet
        (no new batch for ``READY_QUIET_S``): it publishes version 0, and starts the job's clock,
        when the spec's trainers have all said so."""
        seen = -1
        with contextlib.suppress(TimeoutError):  # a trainer given no partition says so anyway
            async with asyncio.timeout(self.ts.spec_timeout_s):
                while self.data.rows == 0 or self.data.changed != seen:
                    self._check_data()
                    seen = self.data.changed
                    self._changed.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(READY_QUIET_S):
                            await self._changed.wait()
        for topic in self._control_topics:
            await self.send(topic, self._signal("ready"))
        log.info("trainer %s ready with %d rows of partitions %s", self.worker_id, self.data.rows,
                 sorted(self.data.partitions))

    # ---------------------------------------------------------------- helpers for the loops

    async def batch(self) -> Batch:
        """The next minibatch of owned data, waiting while none is held."""
        while True:
            self._check_data()
            got = self.data.next_batch()
            if got is not None:
                return got
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._changed.wait()

    async def params_after(self, offset: int) -> Snapshot:
        """The newest parameters past ``offset`` (waits as long as it takes, logging now and then)."""
        while True:
            snap = await self.follower.wait_newer(offset, self.ts.param_wait_log_s)
            if snap is not None:
                return snap
            log.info("trainer %s still waiting for parameters after offset %d", self.worker_id, offset)

    async def next_params(self, snap: Snapshot) -> Snapshot:
        """Parameters newer than ``snap``; ``snap`` itself again when none came within the resend
        timeout (the message was lost or rejected: the loop computes and sends again)."""
        newer = await self.follower.wait_newer(snap.offset, self.resend_s)
        if newer is None:
            self.resent += 1
            log.info("trainer %s: no new parameters after version %d in %.1fs; sending again",
                     self.worker_id, snap.version, self.resend_s)
            return snap
        return newer

    def load_if_new(self, snap: Snapshot) -> float:
        """Load ``snap`` unless it is already loaded (call in the worker thread); returns ms spent.
        Once loaded its tensors are dropped (a parameter copy less) unless the mode needs them."""
        if snap.offset == self.loaded_offset:
            return 0.0
        t0 = time.perf_counter()
        self.model.load(snap.tensors)
        self.loaded_offset = snap.offset
        if self.spec.sync.mode != "hybrid":  # hybrid's delta needs its base; the others are done with it
            self.follower.release(snap)
        return (time.perf_counter() - t0) * 1000

    def pack(self, tensors: dict[str, np.ndarray], *, base: Snapshot, samples: int, loss: float,
             payload: str = "gradient") -> list[tuple[str, Pieces]]:
        """(topic, GradientMessage record) of a gradient or delta for each shard: its tensors,
        compressed per the spec, on the version of it that ``base`` holds. The records are pieces
        (views of the compressed arrays, never joined: the producer cuts the chunks from them), so
        a gradient is held once, not beside a record-sized copy."""
        out: list[tuple[str, Pieces]] = []
        for i, (names, topic) in enumerate(zip(self.plan, self.shard_grads, strict=True)):
            body = self.compressor.compress({k: tensors[k] for k in names if k in tensors})
            header = GradientMessage(
                job_id=self.spec.job_id, worker_id=self.worker_id, step=self.model.steps,
                base_version=base.versions[i] if base.versions else base.version, samples=samples,
                loss=loss, compression=self.spec.compression.kind, payload=payload, timings=self.timings,
            )
            out.append((topic.name, codecs.pack_pieces(header, body)))
        self._observed(sum(len(v) for _, v in out), samples)
        return out

    def pack_params(self, state: dict[str, np.ndarray], *, samples: int, loss: float) -> Pieces:
        """Ring mode: the full parameters (float16 on the wire when the spec says so)."""
        half = self.spec.compression.params_dtype == "float16"
        if half:
            state = half_floats(state)
        header = GradientMessage(
            job_id=self.spec.job_id, worker_id=self.worker_id, step=self.model.steps, base_version=0,
            samples=samples, loss=loss, compression="fp16" if half else "none", payload="params",
            timings=self.timings)
        value = codecs.pack_pieces(header, state)
        self._observed(len(value), samples)
        return value

    def _observed(self, nbytes: int, samples: int) -> None:
        """Prometheus: samples, steps, samples/s and the bytes this trainer puts on the wire."""
        job, wid = self.spec.job_id, self.worker_id
        m.TRAINER_SAMPLES.labels(job, wid).inc(samples)
        m.TRAINER_STEPS.labels(job, wid).inc()
        m.TRAINER_GRAD_BYTES.labels(job, wid, self.spec.compression.kind).inc(nbytes)
        self._rate.add(samples)
        m.TRAINER_SAMPLES_PER_S.labels(job, wid).set(self._rate.per_second())

    async def send_parts(self, parts: list[tuple[str, Pieces]]) -> None:
        """Queue one record per shard (``pack``'s output)."""
        for topic, value in parts:
            await self.send(topic, value)

    async def send(self, topic: str, value: bytes | Pieces, partition: int | None = None) -> None:
        """Queue ``value`` (no wait for the ack: it is checked by a callback; ``Pieces`` are read
        until this returns)."""
        fut = await self.producer.send(topic, value, key=self.worker_id,
                                       headers={SENT_AT: repr(time.time())}, partition=partition)
        fut.add_done_callback(self._check_ack)
        self.sent += 1

    def _check_ack(self, fut: asyncio.Future[RecordMetadata]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self.send_errors += 1
            log.error("trainer %s: a send failed: %r", self.worker_id, fut.exception())
