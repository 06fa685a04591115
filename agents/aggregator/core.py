"""The parameter server's body: what one aggregator (one shard) holds, how it starts and stops, and
the job status it reports. The loop that uses it is ``server.Aggregator``.

``start`` resumes from the shard's newest checkpoint when there is one (the version continues, see
``startup.py``), else starts at version 0, and waits for the trainers' group. With
``aggregator.shards: N`` each shard owns whole tensors (``ServerState``), reads its own grads topic and
publishes on its own params topic; shard 0 alone reports the job's status (and evaluates and
exports, with the other shards' tensors: ``peers.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import RecordMetadata

from aiaas.data.datainfo import JobData, check_fit
from aiaas.ml.shards import shard_name
from aiaas.schemas.errors import AiaasError, ErrorCode
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.streams import metrics as m
from aiaas.streams.admin import ensure
from aiaas.streams.jobs import aggregator_group
from aiaas.streams.lifecycle import cancel, stop_consumer
from aiaas.streams.offload import Offload
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

from .checkpoint import Checkpointer
from .fromsource import FromSource, open_source
from .gate import Gate
from .group import GroupView
from .inputs import load_test_split, train_rows
from .intake import Intake
from .members import Membership
from .modes import Mode
from .peers import ShardPeers
from .progress import Progress
from .reporting import StatusReporter, job_status
from .settings import AggregatorSettings
from .source import Holdout
from .startup import make_mode, open_input, resume
from .state import ServerState

log = logging.getLogger(__name__)
RESUME_WAIT_S = 3.0  # after a restart the trainers are (mostly) there already


__all__ = ["AggregatorCore"]

class AggregatorCore:
    """State and lifecycle of one aggregator (shard); ``server.Aggregator`` adds the loop."""

    def __init__(self, settings: Settings, spec: JobSpec, cfg: AggregatorSettings | None = None,
                 shard: int = 0) -> None:
        self.settings, self.spec, self.cfg = settings, spec, cfg or AggregatorSettings()
        self.shard, self.lead = shard, shard == 0
        topics = Topics(settings)
        params = topics.train_params(spec.job_id)
        self.params_topic_spec = params.model_copy(update={"name": shard_name(params.name, shard)})
        self.params_topic = self.params_topic_spec.name
        self.metrics_topic = topics.train_metrics(spec.job_id).name
        ring = spec.sync.mode == "ring"
        grads = topics.train_grads(spec.job_id)
        self.input_topic = (topics.train_ring(spec.job_id, spec.data.partitions) if ring
                            else grads.model_copy(update={"name": shard_name(grads.name, shard)}))
        self.state = ServerState(spec, shard)
        self.members = Membership(self.cfg.forget_after_s)
        self.group = GroupView(settings, spec.job_id, self.members)
        self._dropped_seen = 0
        self.intake = Intake(spec, self.state.grad_shapes, self.state.state_shapes)
        self.producer = Producer(settings, linger_ms=0, compression_type=None)
        self.reporter = StatusReporter(settings, self.producer, self.cfg.heartbeat_s)
        self.offload = Offload(self.cfg.inline_below_ms)  # updates: inline while they are short
        self.eval_offload = Offload(self.cfg.inline_below_ms)  # test evaluations: timed apart
        self.checkpointer = Checkpointer(settings, spec.job_id, shard)
        self.peers = ShardPeers(settings, spec, self.producer) if self.lead and spec.aggregator.shards > 1 \
            else None
        self.stop_at: int | None = None  # a shard other than 0: the version shard 0 stopped at
        self.consumer: AIOKafkaConsumer | None = None
        self.mode: Mode | None = None
        self.progress: Progress | None = None
        self.resumed_from: int | None = None
        self.finished_before = False
        self.offsets: dict[int, int] = {}  # next offset to read per input partition
        self._tasks: list[asyncio.Task[None]] = []
        self._x_test: np.ndarray | None = None  # the job's test split: loaded by start()
        self._y_test: np.ndarray | None = None
        self.data: JobData | None = None  # what the push said about the data (scaling, classes)
        self.fatal: str | None = None  # a trainer's fatal error: the job fails with it
        self._evaluated_version = -1
        self.stop_reason: str | None = None
        self.gang = spec.trainers
        self.ready: set[str] = set()  # trainers that said they hold their data
        self.src: FromSource | None = None  # a job that trains from the user's topic
        self._published: asyncio.Future[RecordMetadata] | None = None  # the newest version's ack
        self._final_sent = False  # the newest version went out final (the budget's last)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if not self.state.owned:  # before waiting for any data: too many shards is the spec's fault
            raise AiaasError(f"shard {self.shard} of {self.spec.aggregator.shards} owns no tensor (the model "
                             f"has {len(self.state.all_shapes)}): use fewer shards",
                             code=ErrorCode.BAD_REQUEST)
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
        else:  # the data's size bounds every shard alike; shard 0 alone evaluates
            if self.lead:
                held = await load_test_split(self.settings, self.spec, self.cfg.data_wait_s)
                self._x_test, self._y_test, self.data = held.x, held.y, held.data
                if self.data is not None:
                    check_fit(self.spec, self.data.info)  # a spec that does not fit its data fails now
            rows = await train_rows(self.settings, self.spec, self.cfg.data_wait_s)
        self.progress = Progress(self.spec, rows)
        back = await resume(self.settings, self.spec, self.state)
        self.offsets, self.resumed_from, self.finished_before = back.offsets, back.version, back.finished
        self.progress.samples = self.state.samples
        group = shard_name(aggregator_group(self.settings, self.spec.job_id), self.shard)
        self.consumer = await open_input(self.settings, group, self.input_topic, self.offsets)
        if self.peers is not None:
            await self.peers.start()
        self._tasks.append(asyncio.create_task(self.group.watch(self.cfg.group_poll_s), name="group-watch"))
        wait_s = self.cfg.start_wait_s if self.resumed_from is None else RESUME_WAIT_S
        self.gang = await self.group.rendezvous(self.spec.trainers, wait_s)
        self.mode = make_mode(self.spec, self.state, self.members, self.gang)
        log.info("aggregator for job %s (%s mode, shard %d of %d: %d tensors) at version %d%s",
                 self.spec.job_id, self.spec.sync.mode, self.shard, self.spec.aggregator.shards,
                 len(self.state.owned),
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
            await cancel(task)
        if self.peers is not None:
            await self.peers.stop()
        if self.consumer is not None:
            await stop_consumer(self.consumer)
        await self.checkpointer.stop()
        await self.producer.stop()

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
        if not self.lead:  # shard 0 reports the job
            return status
        return await self.reporter.write(status)
