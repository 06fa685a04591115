"""The status page's forecast chart data: the autoscaler's looks at each visible model, read from
``scaling.<model>`` (``ScalingSample``, written by agents/autoscaler/samples.py): the arrival rate
it saw and the rate it forecast, over time.

Read like the training metrics (agents/bridge/ui.py): each poll catches up from where the last one
stopped; the first one starts ``MAX_POINTS`` records before the end, so a day of history is never
read at once. A model without an autoscaler has no topic and no chart.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.records import ScalingSample
from aiaas.streams.readers import catch_up

MAX_POINTS = 600  # per model: 10 minutes of looks at the autoscaler's default 1 s pace
FIELDS = {"ts", "arrival_rate", "forecast_rate", "replicas", "lag"}


class ScalingFeed:
    """Points per model, caught up from ``scaling.<model>`` on each poll."""

    def __init__(self) -> None:
        self.points: dict[str, deque[dict[str, Any]]] = {}
        self.latest: dict[str, ScalingSample] = {}
        self._pos: dict[TopicPartition, int] = {}

    async def read(self, consumer: AIOKafkaConsumer, tps: dict[TopicPartition, str]) -> None:
        """Read what is new on ``tps`` (topic partition -> model); at most 5 s a poll."""
        if not tps:
            return
        with contextlib.suppress(TimeoutError):  # a slow poll shows what it has; the next goes on
            await catch_up(consumer, list(tps), self._pos, lambda tp, end: max(0, end - MAX_POINTS),
                           lambda tp, value: self._add(tps[tp], value))

    def _add(self, model: str, value: bytes | None) -> None:
        try:
            sample = ScalingSample.from_record(value)
        except InvalidMessage:  # not ours (or a future version): skipped, the chart goes on
            return
        self.latest[model] = sample
        self.points.setdefault(model, deque(maxlen=MAX_POINTS)).append(sample.model_dump(include=FIELDS))

    def rows(self, models: list[str]) -> list[dict[str, Any]]:
        """One row per visible model that has points: the series and the last look's figures."""
        out = []
        for model in models:
            last = self.latest.get(model)
            if last is not None:
                out.append({"model": model, "policy": last.policy, "horizon_s": last.horizon_s,
                            "replicas": last.replicas, "points": list(self.points[model])})
        return out
