"""Each look of the autoscaler as a record on ``scaling.<model>`` (``ScalingSample``): the arrival
rate it saw and the rate it forecast. The status page (agents/bridge/ui.py) plots one against the
other; Prometheus has the same figures as gauges, but only the last value and only where scraped.

Writing is best effort: a failed write is logged and the scaler goes on (scaling matters more than
the chart), and the record is not awaited on the step's path.
"""

from __future__ import annotations

import asyncio
import logging

from aiaas.schemas.errors import AiaasError
from aiaas.schemas.records import ScalingSample
from aiaas.streams.admin import ensure
from aiaas.streams.lifecycle import Service
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

log = logging.getLogger(__name__)


class SamplePublisher(Service):
    """Writes ``ScalingSample`` records of one model, keyed by the model."""

    def __init__(self, settings: Settings, model: str) -> None:
        self.settings, self.model = settings, model
        self.spec = Topics(settings).scaling(model)
        self._producer: Producer | None = None
        self._failed = False  # log the first failure of a streak only

    async def start(self) -> None:
        """Create the topic and a producer; when that is refused (a user without the grant, say),
        the scaler runs without its chart and says so once."""
        producer = Producer(self.settings)
        try:
            await ensure(self.settings, [self.spec])
            await producer.start()
        except AiaasError as exc:
            log.warning("%s: no forecast chart: cannot write %s (%s); the scaler goes on",
                        self.model, self.spec.name, exc)
            return
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, sample: ScalingSample) -> None:
        if self._producer is None:
            return
        try:
            ack = await self._producer.send_message(self.spec.name, sample, key=self.model)
        except Exception as exc:  # a full buffer, a stopped producer: the chart misses one point
            self._failure(exc)
            return
        ack.add_done_callback(self._acked)

    def _acked(self, ack: asyncio.Future[object]) -> None:
        exc = None if ack.cancelled() else ack.exception()
        if exc is not None:
            self._failure(exc)
        else:
            self._failed = False

    def _failure(self, exc: BaseException) -> None:
        if not self._failed:
            log.warning("%s: writing the autoscaler's sample to %s failed (%s); the scaler goes on",
                        self.model, self.spec.name, exc)
        self._failed = True
