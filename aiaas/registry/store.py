"""The model registry: ONNX model versions on the compacted ``models`` topic, bytes on ``artifacts``.

Used by the training aggregator to publish its exports and by inference workers to load and
hot-reload versions. All state lives in Kafka, so any process can open a ``Registry`` and see the
same versions::

    async with Registry(settings) as reg:
        mv = await reg.publish("digits", onnx_bytes, lineage=Lineage(job_id="j1"))
        await reg.promote("digits", mv.version)          # now the production version
        data = await reg.load_bytes(await reg.get("digits", stage="production"))  # sha256 checked
        async for changed in reg.watch("digits"):        # hot reload: every change, as it lands
            ...

Records on ``models`` are keyed ``<name>:<version>`` (the latest record per key is the truth, so
compaction keeps every version). A version's bytes go to ``artifacts`` in chunks keyed
``<name>:<version>:<i>`` (with the streams chunk headers, so ``streams.Consumer`` reassembles them
too); ``ModelVersion.artifact_offset`` says where they start. With ``artifact_dir`` set (or
``AIAAS_REGISTRY_ARTIFACT_DIR``) the bytes are written there instead and ``uri`` is a file:// URI.

Stages: ``staging`` on publish; ``promote`` makes one version ``production`` (the previous one
becomes ``archived``); ``rollback`` undoes the last promotion; ``set_canary`` marks one version
``canary`` with a traffic weight served beside production.

Version numbers are unique across processes: a publisher appends a claim of the next number to
``models``, and the first claim of a number in the log wins it (``aiaas.registry.versionclaims``), so any
number of processes may publish the same name at once and get distinct, increasing numbers.
Publishing bytes whose sha256 a version of the name already has (as far as this process has read)
returns that version; two processes publishing the same bytes at the same instant get two.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from aiaas.registry import bundles
from aiaas.registry.artifactlog import RegistrySettings, load, store
from aiaas.registry.artifacts import signature
from aiaas.registry.versionclaims import Numbering, claim_key
from aiaas.schemas.errors import AiaasError, ErrorCode, IntegrityError, InvalidMessage, NotFound
from aiaas.schemas.masking import Masking
from aiaas.schemas.registry import Lineage, ModelVersion, VersionClaim
from aiaas.streams.admin import ensure
from aiaas.streams.lifecycle import Service, within
from aiaas.streams.metadata import end_offset
from aiaas.streams.producer import Producer
from aiaas.streams.readers import TABLE_WAIT_MS, open_assigned, read_forever, stop_reader
from aiaas.streams.retry import retrying
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

log = logging.getLogger(__name__)

Stage = Literal["staging", "production", "canary", "archived"]
__all__ = ["IntegrityError", "Registry", "RegistrySettings", "Stage"]
MAX_CLAIMS = 100  # proposals per publish; each round some publisher wins, so this is a livelock guard


class Registry(Service):
    """Read and write model versions; a background reader keeps ``versions`` current."""

    def __init__(self, settings: Settings, *, artifact_dir: str | Path | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings)
        cfg_dir = artifact_dir if artifact_dir is not None else RegistrySettings().artifact_dir
        self.artifact_dir = Path(cfg_dir) if cfg_dir else None
        self.versions: dict[tuple[str, int], ModelVersion] = {}
        self._tp = TopicPartition(self.topics.models().name, 0)
        self._producer: Producer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._polled = asyncio.Condition()
        self._watchers: set[asyncio.Queue[ModelVersion]] = set()
        self._write_lock = asyncio.Lock()
        self._numbering = Numbering()

    async def start(self) -> None:
        await ensure(self.settings, [self.topics.models(), self.topics.artifacts()])
        # No compression: an artifact is float weights, which do not compress (aiokafka's lz4 is level 9:
        # ~0.25 s CPU per 16 MB on the event loop for 0% saved); version records are small.
        self._producer = Producer(self.settings, compression_type=None)
        await self._producer.start()
        # A 2 s long-poll (one empty fetch per 2 s at rest): refresh() asks the end offset over the
        # producer's connection, not behind the reader's fetch in flight (streams.metadata.end_offset)
        self._consumer = await open_assigned(self.settings, self._tp, fetch_max_wait_ms=TABLE_WAIT_MS)
        self._reader = asyncio.create_task(read_forever(self._consumer, self._tp, self._apply, self._polled),
                                           name="registry-reader")
        await self.refresh()

    async def stop(self) -> None:
        await stop_reader(self._reader, self._consumer)
        self._reader, self._consumer = None, None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("Registry used before start()")
        return self._producer

    # ------------------------------------------------------------------ reading

    async def refresh(self, timeout_s: float = 30.0) -> None:
        """Wait until every record written to ``models`` before this call has been applied."""
        consumer = self._consumer
        if consumer is None or self._reader is None:
            raise RuntimeError("Registry used before start()")
        end = await end_offset(self.producer.raw.client, self._tp)
        if end is None:  # leader unknown yet (broker starting): the consumer's call, with its retries
            end = (await retrying(lambda: consumer.end_offsets([self._tp]), self.settings,
                                  "reading the end of the models topic", metadata_wait=True))[self._tp]
        async with asyncio.timeout(timeout_s), self._polled:
            while await consumer.position(self._tp) < end:
                if self._reader.done():
                    self._reader.result()  # re-raise the reader's failure
                await within(self._polled.wait(), 0.5)

    async def list(self, name: str | None = None) -> list[ModelVersion]:
        """Every known version (of ``name``), ordered by name then version."""
        await self.refresh()
        return [mv for key, mv in sorted(self.versions.items()) if name is None or key[0] == name]

    async def get(self, name: str, version: int | None = None, stage: Stage | None = None) -> ModelVersion:
        """One version: by number, else the one in ``stage``, else production, else the latest."""
        await self.refresh()
        return self.pick(name, version, stage)

    def pick(self, name: str, version: int | None = None, stage: Stage | None = None) -> ModelVersion:
        """Like ``get`` on what this process has already read (no broker round trip)."""
        mine = [mv for (n, _), mv in self.versions.items() if n == name]
        if not mine:
            raise NotFound("unknown model", model=name)
        if version is not None:
            for mv in mine:
                if mv.version == version:
                    return mv
            raise NotFound("unknown model version", model=name, version=version)
        if stage is None:
            prod = [mv for mv in mine if mv.stage == "production"]
            return prod[0] if prod else max(mine, key=lambda mv: mv.version)
        staged = [mv for mv in mine if mv.stage == stage]
        if not staged:
            raise NotFound("no version in this stage", model=name, stage=stage)
        return max(staged, key=lambda mv: mv.version)

    async def watch(self, name: str | None = None) -> AsyncIterator[ModelVersion]:
        """Yield every version record (of ``name``) applied from now on: the hot-reload feed."""
        queue = self.subscribe()
        try:
            while True:
                mv = await queue.get()
                if name is None or mv.name == name:
                    yield mv
        finally:
            self.unsubscribe(queue)

    def subscribe(self) -> asyncio.Queue[ModelVersion]:
        """A queue that gets every version record applied after this call (no await: no gap)."""
        queue: asyncio.Queue[ModelVersion] = asyncio.Queue()
        self._watchers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[ModelVersion]) -> None:
        self._watchers.discard(queue)

    async def load_bytes(self, mv: ModelVersion) -> bytes:
        """The ONNX bytes of ``mv``; raises IntegrityError when they do not match its sha256."""
        return await load(self.settings, self.topics.artifacts().name, mv)

    async def load_file(self, mv: ModelVersion, name: str) -> bytes:
        """A bundle file of ``mv`` (``model.onnx`` is ``load_bytes``); sha256 checked."""
        return await bundles.load_file(self.settings, self.topics.artifacts().name, mv, name)

    # ------------------------------------------------------------------ writing

    async def publish(
        self, name: str, onnx_bytes: bytes, *, lineage: Lineage | None = None,
        stage: Stage = "staging", tenant: str | None = None, files: dict[str, bytes] | None = None,
    ) -> ModelVersion:
        """Register ``onnx_bytes`` as the next version of ``name`` (signature read from the graph);
        ``files`` makes it a bundle: tokenizer.json, labels.json, config.json beside the graph, a
        sha256 each (``aiaas.registry.bundles``)."""
        inputs, outputs = await asyncio.to_thread(signature, onnx_bytes)
        digest = hashlib.sha256(onnx_bytes).hexdigest()
        async with self._write_lock:
            await self.refresh()
            same = [mv for (n, _), mv in self.versions.items()
                    if n == name and mv.sha256 == digest and bundles.same_files(mv, files or {})]
            if same:
                log.info("model %s: bytes already registered as version %d", name, same[0].version)
                return same[0] if stage in ("staging", same[0].stage) else await self._stage(same[0], stage)
            version = await self._claim(name, digest)
            mv = ModelVersion(
                name=name, version=version, sha256=digest, size_bytes=len(onnx_bytes),
                inputs=inputs, outputs=outputs, lineage=lineage or Lineage(),
                created_at=time.time(), tenant=tenant,
            )
            if files:  # before the graph's chunks: its reader starts at artifact_offset
                mv.files = await bundles.store_files(self.producer, self.topics.artifacts().name,
                                                     self.artifact_dir, mv, files)
            mv = await store(self.producer, self.topics.artifacts().name, self.artifact_dir, mv, onnx_bytes)
            await self._write(mv)
            return mv if stage == "staging" else await self._stage(mv, stage)

    async def promote(self, name: str, version: int) -> ModelVersion:
        """Make ``version`` the production version; the previous one becomes archived."""
        async with self._write_lock:
            await self.refresh()
            return await self._stage(self.pick(name, version), "production")

    async def rollback(self, name: str) -> ModelVersion:
        """Undo the last promotion: the version promoted before the current one is production again."""
        async with self._write_lock:
            await self.refresh()
            current = self.pick(name, stage="production")
            earlier = [mv for (n, _), mv in self.versions.items()
                       if n == name and mv.version != current.version and mv.promoted_at is not None]
            if not earlier:
                raise NotFound("no earlier production version to roll back to", model=name)
            back = max(earlier, key=lambda mv: mv.promoted_at or 0.0)
            back = back.model_copy(update={"stage": "production"})
            await self._write(current.model_copy(update={"stage": "archived", "promoted_at": None}))
            await self._write(back)
            return back

    async def set_pipeline(self, name: str, version: int, stages: builtins.list[str]) -> ModelVersion:
        """Record the stage models ``version`` is split into, in order (``aiaas.registry.pipelines``)."""
        return await self._update(name, version, pipeline=list(stages))

    async def set_masking(self, name: str, version: int, masking: Masking | None) -> ModelVersion:
        """Declare the personal request fields of ``version`` (docs/security.md, "Masking")."""
        return await self._update(name, version, masking=masking)

    async def _update(self, name: str, version: int, **fields: object) -> ModelVersion:
        """``version`` with ``fields`` changed, written as its newest record."""
        async with self._write_lock:
            await self.refresh()
            mv = self.pick(name, version).model_copy(update=fields)
            await self._write(mv)
            return mv

    async def set_canary(self, name: str, version: int, weight: float) -> ModelVersion:
        """Serve ``version`` to ``weight`` (0..1) of the requests beside production; 0 ends the canary."""
        if not 0.0 <= weight <= 1.0:
            raise AiaasError("canary weight must be within 0..1", code=ErrorCode.BAD_REQUEST, weight=weight)
        async with self._write_lock:
            await self.refresh()
            mv = self.pick(name, version)
            for other in self._in_stage(name, "canary"):
                if other.version != version:
                    await self._write(other.model_copy(update={"stage": "staging", "canary_weight": 0.0}))
            stage: Stage = "canary" if weight > 0 else "staging"
            out = mv.model_copy(update={"stage": stage, "canary_weight": weight})
            await self._write(out)
            return out

    # ------------------------------------------------------------------ internals

    def _in_stage(self, name: str, stage: Stage) -> builtins.list[ModelVersion]:
        return [mv for (n, _), mv in self.versions.items() if n == name and mv.stage == stage]

    async def _stage(self, mv: ModelVersion, stage: Stage) -> ModelVersion:
        if stage == "production":
            for old in self._in_stage(mv.name, "production"):
                if old.version != mv.version:
                    await self._write(old.model_copy(update={"stage": "archived"}))
            out = mv.model_copy(update={"stage": "production", "promoted_at": time.time(),
                                        "canary_weight": 0.0})
        else:
            out = mv.model_copy(update={"stage": stage})
        await self._write(out)
        return out

    async def _claim(self, name: str, digest: str) -> int:
        """The next version number of ``name``, unique across processes (``aiaas.registry.versionclaims``);
        a claim another publisher won first is proposed again, one higher."""
        for _ in range(MAX_CLAIMS):
            claim, won = self._numbering.new_claim(name, digest)
            try:
                await self.producer.send_and_wait(self._tp.topic, claim.to_record(), key=claim_key(claim),
                                                  partition=0)
                await self.refresh()  # our reader has applied the log up to (and past) the claim
                if won.result():
                    return claim.version
            finally:
                self._numbering.forget(claim)
        raise AiaasError("no version number won: too many publishers at once", code=ErrorCode.CONFLICT,
                         model=name, tries=MAX_CLAIMS)

    async def _write(self, mv: ModelVersion) -> None:
        """Write one version record and wait until our own reader has applied it."""
        await self.producer.send_and_wait(self._tp.topic, mv.to_record(), key=f"{mv.name}:{mv.version}",
                                          partition=0)
        await self.refresh()

    def _apply(self, value: bytes | None) -> None:
        if value is None:  # a tombstone: the version was deleted
            return
        try:
            mv = ModelVersion.from_record(value)
        except InvalidMessage as exc:
            if exc.details.get("got") == VersionClaim.KIND:
                self._apply_claim(value)
                return
            log.warning("skipping a bad record on models: %s %s", exc.reason, exc.details)
            return
        self._numbering.saw_version(mv)
        self.versions[(mv.name, mv.version)] = mv
        for queue in self._watchers:
            queue.put_nowait(mv)

    def _apply_claim(self, value: bytes) -> None:
        try:
            self._numbering.saw_claim(VersionClaim.from_record(value))
        except InvalidMessage as exc:
            log.warning("skipping a bad version claim on models: %s %s", exc.reason, exc.details)
