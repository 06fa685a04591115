"""The parameter server of one job: gradients in, parameter versions out, until budget or target.

``Aggregator.start`` resumes from the newest checkpoint when there is one (the version continues),
else starts at version 0, and waits for the trainers' group. ``run`` (a new job: once the trainers
say they hold their data) publishes the current parameters, then polls the input topic (grads, or
the ring topic), feeds the mode, publishes every new version, evaluates, checkpoints every
``checkpoint_interval`` versions in a transaction, and finishes with export and registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from aiaas.data.datainfo import JobData, check_fit
from aiaas.ml.evaluate import evaluate
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.schemas.training import PARAMS_KEY
from aiaas.streams import metrics as m
from aiaas.streams.admin import ensure
from aiaas.streams.headers import SENT_AT
from aiaas.streams.jobs import aggregator_group
from aiaas.streams.offload import Offload
from aiaas.streams.producer import Producer
from aiaas.streams.retry import started
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

from .checkpoint import Checkpointer, checkpoint_record, find_latest
from .fromsource import FromSource, open_source
from .gate import Gate
from .group import GroupView
from .inputs import load_test_split, train_rows
from .intake import Fatal, Intake, Ready
from .members import Membership
from .modes import AsyncMode, Mode, RingMode, RoundMode, Work
from .progress import Progress
from .reporting import StatusReporter, job_status
from .settings import AggregatorSettings
from .source import Holdout
from .state import ServerState

log = logging.getLogger(__name__)
FIRST_ROUND_GRACE_S = 5.0  # the first round also waits for trainers still loading their data
RESUME_WAIT_S = 3.0  # after a restart the trainers are (mostly) there already


__all__ = ["Aggregator", "job_status"]


class Aggregator:
    def __init__(self, settings: Settings, spec: JobSpec, cfg: AggregatorSettings | None = None) -> None:
        self.settings, self.spec, self.cfg = settings, spec, cfg or AggregatorSettings()
        topics = Topics(settings)
        self.params_topic_spec = topics.train_params(spec.job_id)
        self.params_topic = self.params_topic_spec.name
        self.metrics_topic = topics.train_metrics(spec.job_id).name
        ring = spec.sync.mode == "ring"
        self.input_topic = (topics.train_ring(spec.job_id, spec.data.partitions) if ring
                            else topics.train_grads(spec.job_id))
        self.state = ServerState(spec)
        self.members = Membership(self.cfg.forget_after_s)
        self.group = GroupView(settings, spec.job_id, self.members)
        self._dropped_seen = 0
        self.intake = Intake(spec, self.state.grad_shapes, self.state.state_shapes)
        self.producer = Producer(settings, linger_ms=0, compression_type=None)
        self.reporter = StatusReporter(settings, self.producer, self.cfg.heartbeat_s)
        self.offload = Offload(self.cfg.inline_below_ms)  # updates: inline while they are short
        self.eval_offload = Offload(self.cfg.inline_below_ms)  # test evaluations: timed apart
        self.checkpointer = Checkpointer(settings, spec.job_id)
        self.consumer: AIOKafkaConsumer | None = None
        self.mode: Mode | None = None
        self.progress: Progress | None = None
        self.resumed_from: int | None = None
        self.finished_before = False
        self.offsets: dict[int, int] = {}  # next offset to read per input partition
        self._tasks: list[asyncio.Task[None]] = []
        self._ckpt: asyncio.Task[None] | None = None
        self._x_test: np.ndarray | None = None  # the job's test split: loaded by start()
        self._y_test: np.ndarray | None = None
        self.data: JobData | None = None  # what the push said about the data (scaling, classes)
        self.fatal: str | None = None  # a trainer's fatal error: the job fails with it
        self._evaluated_version = -1
        self.stop_reason: str | None = None
        self.gang = spec.trainers
        self.ready: set[str] = set()  # trainers that said they hold their data
        self.src: FromSource | None = None  # a job that trains from the user's topic

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.cfg.apply()  # threads, GIL switch interval, CPU pinning
        self.offload.prime(await asyncio.to_thread(self.state.warm_up))
        topics = Topics(self.settings)
        job = self.spec.job_id
        await ensure(self.settings, [
            topics.train_data(job, self.spec.data.partitions), topics.train_test(job),
            topics.train_grads(job), self.params_topic_spec, topics.train_metrics(job), self.input_topic,
            topics.jobs()])
        await self.producer.start()
        await self.checkpointer.start()  # fences an earlier aggregator of this job
        if self.spec.source is not None:
            rows = await self._open_source()
        else:
            held = await load_test_split(self.settings, self.spec, self.cfg.data_wait_s)
            self._x_test, self._y_test, self.data = held.x, held.y, held.data
            if self.data is not None:
                check_fit(self.spec, self.data.info)  # a spec that does not fit its data fails now
            rows = await train_rows(self.settings, self.spec, self.cfg.data_wait_s)
        self.progress = Progress(self.spec, rows)
        await self._resume()
        await self._open_input()
        self._tasks.append(asyncio.create_task(self.group.watch(self.cfg.group_poll_s), name="group-watch"))
        wait_s = self.cfg.start_wait_s if self.resumed_from is None else RESUME_WAIT_S
        self.gang = await self.group.rendezvous(self.spec.trainers, wait_s)
        self.mode = self._make_mode()
        log.info("aggregator for job %s (%s mode) at version %d%s", self.spec.job_id, self.spec.sync.mode,
                 self.state.version, f" (resumed from checkpoint {self.resumed_from})"
                 if self.resumed_from is not None else "")

    async def _open_source(self) -> int:
        """The user's topic (fromsource.py); returns the rows that train."""
        self.src = await open_source(self.settings, self.spec, self.cfg.data_wait_s)
        self.data = self.src.data
        if self.src.test is not None:
            self._x_test, self._y_test = self.src.test
        return self.src.rows

    @property
    def holdout(self) -> Holdout | None:
        return self.src.holdout if self.src is not None else None

    @property
    def gate(self) -> Gate | None:
        return self.src.gate if self.src is not None else None

    async def stop(self) -> None:
        await self.reporter.stop()
        if self.src is not None:
            await self.src.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ckpt is not None:
            with contextlib.suppress(Exception):
                await self._ckpt
        if self.consumer is not None:
            await self.consumer.stop()
        await self.checkpointer.stop()
        await self.producer.stop()

    async def _resume(self) -> None:
        found = await find_latest(self.settings, self.spec.job_id)
        if found.checkpoint is None:
            return
        header, tensors = found.checkpoint
        await asyncio.to_thread(self.state.restore, tensors, header.server_state)
        self.offsets = {int(p): o for p, o in header.consumed_offsets.items()}
        self.resumed_from = header.version
        self.finished_before = bool(found.latest is not None and found.latest.final and header.final)
        assert self.progress is not None
        self.progress.samples = self.state.samples

    def _make_mode(self) -> Mode:
        s = self.spec.sync.mode
        if s == "async":
            return AsyncMode(self.spec, self.state, self.members)
        if s == "ring":
            return RingMode(self.spec, self.state, self.members)
        deadline = self.spec.sync.straggler_deadline_ms / 1000
        return RoundMode(self.spec, self.state, self.members, first_deadline_s=deadline + FIRST_ROUND_GRACE_S,
                         first_min_workers=self.gang)

    async def _open_input(self) -> None:
        group = aggregator_group(self.settings, self.spec.job_id)
        kw = self.settings.consumer_kwargs(group, fetch_max_wait_ms=20)
        self.consumer = await started(lambda: AIOKafkaConsumer(**kw), self.settings,
                                      f"starting the aggregator's consumer of {self.input_topic.name}")
        tps = [TopicPartition(self.input_topic.name, p) for p in range(self.input_topic.partitions)]
        self.consumer.assign(tps)
        for tp in tps:
            self.consumer.seek(tp, self.offsets.get(tp.partition, 0))

    async def _await_ready(self, wait_s: float) -> None:
        """Version 0 (and the job's clock) waits until the gang's trainers hold their data and say
        so (``payload="ready"``), as DDP's ranks meet at a barrier: a trainer still loading would
        otherwise stretch the first round (measured: up to 45 ms)."""
        try:
            async with asyncio.timeout(wait_s):
                while len(self.ready) < self.gang and self.fatal is None:
                    await self._poll(100)
        except TimeoutError:
            log.warning("job %s: %d of %d trainers ready within %.0fs; starting anyway",
                        self.spec.job_id, len(self.ready), self.gang, wait_s)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> JobStatus:
        assert self.progress is not None
        if self.resumed_from is None:
            await self._await_ready(self.cfg.start_wait_s)
        if self.fatal is not None:  # final parameters first: the other trainers stop too
            await self._publish(await asyncio.to_thread(self.state.pack, True))
            return await self._status("failed", error=self.fatal)
        await self._publish(await asyncio.to_thread(self.state.pack, False))  # version 0, or where
        self.progress.start()  # a resumed job stands
        await self._status("running")
        if self.finished_before:
            self.stop_reason = "finished before restart"
        while self.stop_reason is None:
            await self._poll(self._poll_ms())
            await self._advance()
            if self.gate is not None and self.stop_reason is None and self.gate.due():
                await self._candidate()
        return await self._finish()

    async def _candidate(self) -> None:
        """Continuous mode: score the current parameters against production, promote them if they
        pass; the decision goes to the metrics topic and the job's status."""
        assert self.gate is not None
        decision = await self.gate.consider(self.state, self._metrics())
        await self.producer.send_message(self.metrics_topic, decision, key=self.spec.job_id)
        extra = {"candidates": float(self.gate.candidates), "promotions": float(self.gate.promotions),
                 "candidate_score": decision.candidate}
        if decision.production is not None:
            extra["production_score"] = decision.production
        await self._status("running", self._metrics() | extra)

    async def _poll(self, timeout_ms: int) -> None:
        """Read what arrived: contributions go to the mode, ready signals to ``self.ready``."""
        assert self.consumer is not None and self.mode is not None and self.progress is not None
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.cfg.max_poll_records)
        for tp, records in batch.items():
            for rec in records:
                self.offsets[tp.partition] = rec.offset + 1
                c = self.intake.decode(rec)
                if isinstance(c, Ready):
                    self.members.seen(c.worker)
                    self.ready.add(c.worker)
                    continue
                if isinstance(c, Fatal):
                    self.fatal = self.fatal or f"trainer {c.worker}: {c.error}"
                    self.stop_reason = "a trainer failed"
                    continue
                m.AGG_GRADIENTS.labels(self.spec.job_id, "rejected" if c is None else "accepted").inc()
                if c is not None:
                    self.members.seen(c.worker)
                    self.progress.received(c)
                    self.mode.offer(c)

    def _poll_ms(self) -> int:
        assert self.mode is not None
        due = self.mode.next_deadline()
        if due is None:
            return 100
        return int(min(100.0, max(1.0, (due - time.monotonic()) * 1000)))

    async def _advance(self) -> None:
        """Apply every update that is due, publishing each new version."""
        assert self.mode is not None and self.progress is not None
        while self.stop_reason is None:
            work = self.mode.take(time.monotonic())
            if work is None:
                return
            before = self.state.version
            t0 = time.perf_counter()
            samples, value = await self.offload(self._apply, work)
            apply_ms = (time.perf_counter() - t0) * 1000
            if self.state.version == before:  # everything was stale
                continue
            await self._publish(value)
            self._observe()
            self.mode.advanced(time.monotonic())
            waits = self.mode.waits_ms
            self.progress.applied(samples, apply_ms, waits[-1] if waits else None)
            await self._after_version(before)

    def _apply(self, work: Work) -> tuple[int, bytes]:
        samples = work()
        self.state.samples += samples
        return samples, self.state.pack(False)

    async def _publish(self, value: bytes) -> None:
        await self.producer.send(self.params_topic, value, key=PARAMS_KEY,
                                 headers={SENT_AT: repr(time.time())})

    def _observe(self) -> None:
        """Prometheus: the version, live trainers, and stale gradients dropped since last time."""
        assert self.mode is not None
        job = self.spec.job_id
        m.AGG_VERSION.labels(job).set(self.state.version)
        m.AGG_MEMBERS.labels(job).set(len(self.members.live()))
        dropped = self.mode.dropped - self._dropped_seen
        if dropped > 0:
            m.AGG_STALE_DROPS.labels(job).inc(dropped)
            self._dropped_seen = self.mode.dropped

    async def _after_version(self, before: int) -> None:
        assert self.progress is not None and self.mode is not None
        v, spec = self.state.version, self.spec
        self.stop_reason = self.progress.out_of_budget(v)
        steps, steps_before = self.progress.steps(v), self.progress.steps(before)
        due = steps // spec.eval_interval > steps_before // spec.eval_interval or self.stop_reason is not None
        if due and await self._evaluate() and spec.target is not None:
            self.stop_reason = self.stop_reason or "target"
        # after the evaluation (the target check does not wait behind a snapshot); none when
        # stopping: _finish writes the final checkpoint
        if self.stop_reason is None and v // spec.checkpoint_interval > before // spec.checkpoint_interval:
            await self._checkpoint()

    async def _evaluate(self) -> bool:
        assert self.progress is not None and self.mode is not None
        if self.holdout is not None and self.gate is not None:  # continuous: the newest window
            held = self.holdout.arrays()
            if held is None:
                return False
            self._x_test, self._y_test = held
        assert self._x_test is not None and self._y_test is not None
        metrics = await self.eval_offload(evaluate, self.state.model, self._x_test, self._y_test, self.spec)
        self._evaluated_version = self.state.version
        met = self.progress.evaluated(metrics)
        msg = self.progress.message(self.state.version, metrics, live=len(self.members.live()),
                                    dropped=self.mode.dropped, rejected=self.intake.rejected)
        await self.producer.send_message(self.metrics_topic, msg, key=self.spec.job_id)
        return met

    # ------------------------------------------------------------------ checkpoints

    async def _checkpoint(self, final: bool = False) -> None:
        """Snapshot the state and the offsets it reflects now (between two updates, so they agree),
        then write them in the background, one transaction at a time (a busy writer skips one)."""
        if self._ckpt is not None and not self._ckpt.done():
            if not final:
                return
            await self._ckpt
        assert self.mode is not None
        held = self.mode.unapplied_offset()
        offsets = {p: min(o, held.get(p, o)) for p, o in self.offsets.items()}
        value = await asyncio.to_thread(checkpoint_record, self.state, self.spec.job_id, offsets, final)
        self._ckpt = asyncio.create_task(
            self.checkpointer.save(value, self.state.version, self.input_topic.name, offsets))

    # ------------------------------------------------------------------ the end

    async def _finish(self) -> JobStatus:
        assert self.progress is not None and self.mode is not None
        log.info("job %s stops at version %d: %s", self.spec.job_id, self.state.version, self.stop_reason)
        if self.fatal is not None:
            await self._publish(await asyncio.to_thread(self.state.pack, True))  # trainers stop
            return await self._status("failed", self._metrics(), error=self.fatal)
        if self._evaluated_version != self.state.version:
            await self._evaluate()
        await self._publish(await asyncio.to_thread(self.state.pack, True))
        await self._checkpoint(final=True)
        assert self._ckpt is not None
        await self._ckpt
        metrics = self._metrics()
        await self._status("exporting", metrics)
        from .finish import conclude  # onnx/onnxruntime: imported when needed (slow)

        assert self._x_test is not None
        state, error, model_version = await conclude(
            self.settings, self.spec, self.state, self._x_test[: self.cfg.validate_rows], self.data,
            {f"{self.input_topic.name}:{p}": o for p, o in self.offsets.items()}, metrics,
            met_target=self.progress.reached_at is not None, stop_reason=self.stop_reason,
            source=self.holdout.lineage() if self.holdout is not None else None)
        return await self._status(state, metrics, error=error, model_version=model_version)

    def _metrics(self) -> dict[str, float]:
        assert self.progress is not None and self.mode is not None
        out = self.progress.summary()
        out |= {"version": float(self.state.version), "dropped_stale": float(self.mode.dropped),
                "rejected": float(self.intake.rejected), "live_workers": float(len(self.members.live()))}
        if self.resumed_from is not None:
            out["resumed_from_version"] = float(self.resumed_from)
        return out

    async def fail(self, error: str) -> None:
        """Report the job failed (best effort: the producer may be what failed)."""
        with contextlib.suppress(Exception):
            if not self.producer.running:
                await self.producer.start()
            await self._status("failed", error=error)

    async def _status(self, state: str, metrics: dict[str, float] | None = None, *,
                      error: str | None = None, model_version: int | None = None) -> JobStatus:
        status = job_status(self.spec, state, self.state.version, metrics, error, model_version)
        return await self.reporter.write(status)
