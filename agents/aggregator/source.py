"""The aggregator's side of a job that trains from a declared source (README, "Train from your topic").

``job_data`` fixes, once per job, what every trainer must agree on: the offset range of the user's
topic to read (from ``source.start`` to ``source.end``; a bounded job without an end stops at the
end offsets of the moment it starts; a continuous one has no end) and the feature scaling, fitted on
the first window of decoded rows (``FIT_ROWS``, the first rows of each partition in offset order).
Both go into the ``DataInfo`` record on ``train.<job>.test``; a restarted aggregator finds and keeps
it, so the scaling a model was trained with never changes under it and travels in the export.

``Holdout`` reads the topic too and keeps only the held-out keys (scaled): the whole held-out share
of a bounded range, or the newest ``continuous.holdout_rows`` of a continuous stream, on which
candidates are scored. It is the job's one full reader, so the records the source's decoder refuses
(a missing field, a wrong type, not JSON...) and, for a classifier, the records whose label is
not one of its classes go from it to ``train.<job>.dlq``, each a dead letter
naming the field and the reason with the record's bytes (the trainers skip them as well).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque

import numpy as np

from aiaas.data.datainfo import JobData, read_info
from aiaas.data.sourcefeed import (
    UNBOUNDED,
    Decoding,
    Ranges,
    Rows,
    SourceReader,
    prepared,
    resolve_ranges,
    usable,
)
from aiaas.data.streamsplit import fit_scaling, held_out
from aiaas.schemas.errors import AiaasError
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.registry import SourceLineage
from aiaas.schemas.training import DATA_INFO_KEY, DataInfo
from aiaas.sources.masking import source_masker
from aiaas.streams.admin import ensure
from aiaas.streams.dlq import DeadLetters
from aiaas.streams.lifecycle import cancel
from aiaas.streams.producer import Producer
from aiaas.streams.record import Record
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

log = logging.getLogger(__name__)
FIT_ROWS = 2000
FIT_QUIET_POLLS = 10  # an unbounded topic: fit on what is there once it stops growing for this long


def _info(spec: JobSpec, ranges: Ranges, y: np.ndarray) -> DataInfo:
    assert spec.source is not None
    classify = spec.loss == "cross_entropy"
    y_mean, y_std = (0.0, 1.0) if classify or len(y) == 0 else (float(y.mean()), float(y.std()) or 1.0)
    n = spec.model.output_dim
    bounded = all(hi != UNBOUNDED for _, hi in ranges.values())
    return DataInfo(
        job_id=spec.job_id, source=f"topic:{spec.source.topic}",
        task="classification" if classify else "regression", n_features=spec.source.width(),
        n_classes=n if classify else 0, classes=[float(c) for c in range(n)] if classify else [],
        target_dim=1 if classify else n, y_mean=y_mean, y_std=y_std,
        train_rows=sum(hi - lo for lo, hi in ranges.values()) if bounded else 0,
        strategy=spec.data.strategy, partitions=spec.data.partitions)


def _decoder(spec: JobSpec) -> Decoding:
    from aiaas.sources import compile_source  # the compiled decoder (docs/sources.md)

    assert spec.source is not None
    return compile_source(spec.source)


async def _first_window(settings: Settings, spec: JobSpec, decoder: Decoding,
                        ranges: Ranges) -> tuple[np.ndarray, np.ndarray]:
    """Up to FIT_ROWS decoded rows from the start of the range (waiting for some to arrive)."""
    assert spec.source is not None
    per = math.ceil(FIT_ROWS / max(1, len(ranges)))
    window = {p: (lo, lo + per if hi == UNBOUNDED else min(hi, lo + per)) for p, (lo, hi) in ranges.items()}
    reader = SourceReader(settings, spec.source, decoder, window)
    xs, ys, quiet = [], [], 0
    await reader.start()
    try:
        async for batch in reader.batches():
            xs += [r.x for r in batch]
            ys += [np.asarray(r.y, np.float64).reshape(len(r.x), -1)[:, 0] for r in batch if r.y is not None]
            quiet = 0 if batch else quiet + 1
            if sum(len(x) for x in xs) > 0 and quiet >= FIT_QUIET_POLLS:
                break
    finally:
        await reader.stop()
    width = spec.source.width()
    x = np.concatenate(xs) if xs else np.zeros((0, width), np.float32)
    return x, (np.concatenate(ys) if ys else np.zeros(0))


async def job_data(settings: Settings, spec: JobSpec, wait_s: float) -> JobData:
    """The job's range and scaling: those written by an earlier run of this job, else fixed now."""
    assert spec.source is not None
    found = await read_info(settings, spec.job_id)
    if found is not None and found.ranges is not None:
        log.info("job %s: keeping the source range and scaling fixed before: %s", spec.job_id, found.ranges)
        return found
    ranges = await resolve_ranges(settings, spec.source, bounded=spec.mode == "bounded", wait_s=wait_s)
    x, y = await _first_window(settings, spec, _decoder(spec), ranges)
    mean, std = fit_scaling(x) if len(x) else (np.zeros(spec.source.width(), np.float32),
                                                np.ones(spec.source.width(), np.float32))
    jd = JobData(_info(spec, ranges, y), mean, std, ranges)
    async with Producer(settings) as producer:
        await (await producer.send(Topics(settings).train_test(spec.job_id).name, jd.pack(),
                                   key=DATA_INFO_KEY, partition=0))
    log.info("job %s: source %s range %s, scaling fitted on the first %d rows", spec.job_id,
             spec.source.topic, ranges, len(x))
    return jd


class Holdout:
    """The held-out rows of the source (scaled as trained on), read by a background task."""

    def __init__(self, settings: Settings, spec: JobSpec, jd: JobData) -> None:
        assert spec.source is not None and jd.ranges is not None
        self.spec, self.jd = spec, jd
        self.continuous = spec.mode == "continuous"
        keep = spec.continuous.holdout_rows if self.continuous else None
        self._x: deque[np.ndarray] = deque()
        self._y: deque[np.ndarray] = deque()
        self.keep = keep
        self.rows = 0  # held-out rows kept now
        self.train_rows = 0  # rows read that train (not held out, with a usable label)
        classes = spec.model.output_dim if spec.loss == "cross_entropy" else None
        self.reader = SourceReader(settings, spec.source, _decoder(spec), jd.ranges, refused=self._refused,
                                   classes=classes)
        self.dlq = Topics(settings).dlq(f"train.{spec.job_id}")
        self._producer = Producer(settings)
        self.dead_letters = DeadLetters(self._producer, self.dlq.name)
        self.masks = source_masker(spec.source)  # dead letters keep no personal value (docs/security.md)
        self._task: asyncio.Task[None] | None = None
        self.arrived = asyncio.Event()

    async def start(self) -> None:
        await ensure(self.reader.settings, [self.dlq])
        await self._producer.start()
        await self.reader.start()
        if self.continuous:  # candidates are scored on the newest rows: start a window back
            ends = await self.reader.end_offsets()
            share = max(1, len(ends))
            frac = max(self.spec.data.test_fraction, 1e-3)
            back = math.ceil(2 * (self.keep or 0) / frac / share)
            self.reader.seek({p: e - back for p, e in ends.items()})

    async def read_all(self) -> None:
        """Bounded: read the whole range now."""
        async for batch in self.reader.batches():
            self._take(batch)

    def follow(self) -> None:
        """Continuous: read as the topic grows, in the background."""
        self._task = asyncio.create_task(self._follow(), name=f"{self.spec.job_id}.holdout")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A holdout that stops reading would silently stop every later candidate: say why."""
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s: the held-out reader stopped: %r", self.spec.job_id, task.exception(),
                      exc_info=task.exception())

    async def _follow(self) -> None:
        async for batch in self.reader.batches():
            self._take(batch)

    async def stop(self) -> None:
        await cancel(self._task, quiet=True)
        await self.reader.stop()
        await self._producer.stop()

    async def _refused(self, records: list[tuple[Record, AiaasError]]) -> None:
        for rec, err in records:
            await self.dead_letters.send(rec if self.masks is None else self.masks.record(rec, err), err)

    def _take(self, batch: list[Rows]) -> None:
        for rows in batch:
            ok = usable(self.spec, rows)
            out = held_out(rows.hashes, self.spec.data.test_fraction)
            self.train_rows += int((ok & ~out).sum())
            keep = ok & out
            if not keep.any():
                continue
            x, y = prepared(self.spec, self.jd, rows, keep)
            self._x.append(x)
            self._y.append(y)
            self.rows += len(x)
            while self.keep is not None and self._x and self.rows - len(self._x[0]) >= self.keep:
                self.rows -= len(self._x.popleft())
                self._y.popleft()
            self.arrived.set()

    def arrays(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The held-out rows now (the newest ``holdout_rows`` of a continuous job); None when none."""
        if not self._x:
            return None
        x, y = np.concatenate(self._x), np.concatenate(self._y)
        if self.keep is not None:
            x, y = x[-self.keep:], y[-self.keep:]
        return x, y

    def lineage(self) -> SourceLineage:
        """What the version scored now was trained from: the range read so far, the schemas seen."""
        assert self.spec.source is not None and self.jd.ranges is not None
        offsets = {p: [lo, hi if hi != UNBOUNDED else self.reader.positions[p]]
                   for p, (lo, hi) in self.jd.ranges.items()}
        return SourceLineage(topic=self.spec.source.topic, offsets=offsets, format=self.spec.source.format,
                             schema_ids=sorted(self.reader.schema_ids))
