"""A trainer's rows when its job trains from a declared source: read the user's topic, keep its share.

Nothing is copied to a data topic. The trainer still joins the job's group over ``train.<job>.data``
(empty here) so faust deals it the job partitions (``data.partitions`` of them) as it would for
pushed data; it then reads every partition of the user's topic and keeps the rows the strategy
routes to the job partitions it owns, leaving out the held-out keys (``aiaas.data.streamsplit``),
scaled with the statistics the aggregator fitted (``DataInfo`` on ``train.<job>.test``).

Bounded job: the range the aggregator fixed is read once and replayed epoch after epoch from memory.
Continuous job: the trainer follows the topic and keeps its newest ``continuous.window_rows`` rows;
it commits its read positions to ``<prefix>train.<job>.feed``, and a restarted trainer starts from
the committed positions moved back by one window, so its window refills with the latest records
(README, "Train from your topic", says what that guarantees). A rebalance that hands it a new job
partition starts the read again the same way.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from aiaas.data.datainfo import JobData, read_info
from aiaas.data.sourcefeed import Rows, SourceReader, prepared, usable
from aiaas.data.streamsplit import held_out, route
from aiaas.schemas.errors import AiaasError
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.lifecycle import cancel
from aiaas.streams.settings import Settings

from .data import LocalData

log = logging.getLogger(__name__)
INFO_POLL_S = 0.3
COMMIT_EVERY_S = 1.0


def feed_group(settings: Settings, job_id: str) -> str:
    return f"{settings.topic_prefix}train.{job_id}.feed"


class SourceFeed:
    """Fills ``data`` from the job's source; ``start``/``stop`` run it as a background task."""

    def __init__(self, settings: Settings, spec: JobSpec, data: LocalData,
                 on_change: Callable[[], None], wait_s: float = 120.0) -> None:
        assert spec.source is not None
        self.settings, self.spec, self.source = settings, spec, spec.source
        self.data, self.on_change, self.wait_s = data, on_change, wait_s
        self.continuous = spec.mode == "continuous"
        self.jd: JobData | None = None
        self.reader: SourceReader | None = None
        self.kept = 0
        self.resumed_at: dict[int, int] | None = None  # where a continuous restart started reading
        self.filed = asyncio.Event()  # set whenever rows were kept (tests wait on it)
        self.unusable = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.spec.job_id}.feed")

    async def stop(self) -> None:
        await cancel(self._task, quiet=True)
        if self.reader is not None:
            await self.reader.stop()

    async def _info(self) -> JobData:
        """The DataInfo the aggregator wrote (ranges and scaling), waiting for it."""
        # a continuous job may start on a topic still empty: its aggregator fits the scaling once
        # rows arrive, so its trainers wait as long as that takes
        async with asyncio.timeout(None if self.continuous else self.wait_s):
            while True:
                found = await read_info(self.settings, self.spec.job_id)
                if found is not None and found.ranges is not None:
                    return found
                await asyncio.sleep(INFO_POLL_S)  # the aggregator fits it from the first window

    async def _run(self) -> None:
        try:
            from aiaas.sources import compile_source  # the compiled decoder (docs/sources.md)

            self.jd = await self._info()
            decoder = compile_source(self.source)
            while True:
                owned = await self._owned()
                await self._read(decoder, owned)
                if not self.continuous and self.data.partitions <= owned:
                    return  # the range is read; later epochs replay it from memory
        except asyncio.CancelledError:
            raise
        except AiaasError as exc:
            self.data.fatal = f"source {self.source.topic}: {exc.reason}"
            self.on_change()
        except TimeoutError:
            self.data.fatal = (f"no DataInfo for job {self.spec.job_id} within {self.wait_s:.0f}s "
                               "(is its aggregator running?)")
            self.on_change()

    async def _owned(self) -> set[int]:
        while not self.data.partitions:  # noqa: ASYNC110 - faust's assignment callback sets no event of ours
            await asyncio.sleep(0.1)  # faust has not dealt this trainer a job partition yet
        return self.data.partitions

    async def _read(self, decoder: object, owned: set[int]) -> None:
        """Read until done (bounded) or until the owned partitions change (then read again)."""
        assert self.jd is not None and self.jd.ranges is not None
        self.reader = SourceReader(self.settings, self.source, decoder,  # type: ignore[arg-type]
                                   self.jd.ranges, group=feed_group(self.settings, self.spec.job_id)
                                   if self.continuous else None)
        await self.reader.start()
        try:
            if self.continuous:
                await self._rewind(self.reader)
            committed = time.monotonic()
            async for batch in self.reader.batches():
                for rows in batch:
                    self._file(rows, owned)
                if batch:
                    self.on_change()
                if self.data.partitions - owned:
                    log.info("feed: new job partitions %s; reading the source again",
                             sorted(self.data.partitions))
                    return
                if self.continuous and time.monotonic() - committed > COMMIT_EVERY_S:
                    await self.reader.commit()
                    committed = time.monotonic()
        finally:
            await self.reader.stop()

    async def _rewind(self, reader: SourceReader) -> None:
        """Start one window before the committed positions (newest first when none: the range's start)."""
        done = await reader.committed()
        if not done:
            return
        share = max(1, len(reader.ranges))
        keep = 1.0 - self.spec.data.test_fraction
        back = math.ceil(self.spec.continuous.window_rows * self.spec.data.partitions / share / keep)
        reader.seek({p: done[p] - back for p in done})
        self.resumed_at = dict(reader.positions)
        log.info("feed: resuming the source at %s (committed %s, one window back)", reader.positions, done)

    def _file(self, rows: Rows, owned: set[int]) -> None:
        assert self.jd is not None and self.jd.ranges is not None
        if len(rows.offsets) == 0:
            return
        ok = usable(self.spec, rows)
        if not ok.all():
            self.unusable += int((~ok).sum())
            log.warning("source %s[%d]: %d records without a usable label (none, or not a class index "
                        "below %d) are not trained on", self.source.topic, rows.partition,
                        int((~ok).sum()), self.spec.model.output_dim)
        train = ok & ~held_out(rows.hashes, self.spec.data.test_fraction)
        lo, hi = self.jd.ranges[rows.partition]
        parts = route(self.spec.data.strategy, self.spec.data.partitions, seed=self.spec.data.seed,
                      partition=rows.partition, offsets=rows.offsets, hashes=rows.hashes,
                      y=rows.y, span=(lo, hi) if hi >= 0 else None, block=self.spec.data.batch_rows)
        for p in owned:
            keep = train & (parts == p)
            if keep.any():
                x, y = prepared(self.spec, self.jd, rows, keep)
                self.data.add(p, (rows.partition << 40) | int(rows.offsets[keep][0]), x, y)
                self.kept += len(x)
                self.filed.set()
