"""The topic catalog: every topic aiaas uses, its partition count and its configs.

Names follow docs/architecture.md and carry the configured prefix. Functions return TopicSpec so the
admin module can ensure them idempotently and tests can make their own with a fresh prefix.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from aiaas.streams.settings import Settings

_NAME_OK = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
COMPACT = {"cleanup.policy": "compact"}
# the broker stamps the append time: a round trip splits into produce (sender -> log) and fetch
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
# Training round trips: tailed from the end, never searched by offset or time, so no sparse index
# entries. The first entry of a new partition costs its append ~8 ms (a page fault in the broker's
# memory-mapped index; measured: the 2nd 170 KB record of every new topic, 7.4-9.9 ms vs 1.8 ms),
# and a new job's first rounds paid it on the gradient and the parameter topic.
ROUND_TRIP = {**APPEND_TIME, "index.interval.bytes": str(2**30)}


class TopicSpec(BaseModel):
    name: str
    partitions: int = Field(default=1, ge=1)
    config: dict[str, str] = Field(default_factory=dict)


def check_part(part: str) -> str:
    """Reject job/model/client names that would make an invalid or ambiguous topic name."""
    if not _NAME_OK.match(part):
        raise ValueError(f"invalid name for a topic part: {part!r} (use A-Z a-z 0-9 . _ -)")
    return part


class Topics:
    """Topic names and specs for one deployment (one prefix)."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    def _spec(self, name: str, partitions: int = 1, **config: str) -> TopicSpec:
        cfg = {"max.message.bytes": str(self.s.max_message_bytes), **config}
        return TopicSpec(name=self.s.topic(name), partitions=partitions, config=cfg)

    # control plane
    def jobs(self) -> TopicSpec:
        return self._spec("jobs", 1, **COMPACT)

    def models(self) -> TopicSpec:
        return self._spec("models", 1, **COMPACT)

    def artifacts(self) -> TopicSpec:
        return self._spec("artifacts", 1, **COMPACT)

    def audit(self) -> TopicSpec:
        return self._spec("audit", 1)

    # training
    def train_data(self, job: str, partitions: int = 2) -> TopicSpec:
        return self._spec(f"train.{check_part(job)}.data", partitions)

    def train_test(self, job: str) -> TopicSpec:
        """The held-out test split: kept apart from the training partitions, read by the evaluator."""
        return self._spec(f"train.{check_part(job)}.test", 1)

    def train_grads(self, job: str, partitions: int = 1) -> TopicSpec:
        return self._spec(f"train.{check_part(job)}.grads", partitions, **ROUND_TRIP)

    def train_params(self, job: str) -> TopicSpec:
        return self._spec(f"train.{check_part(job)}.params", 1, **COMPACT, **ROUND_TRIP)

    def train_ring(self, job: str, partitions: int = 2) -> TopicSpec:
        """ring mode's inboxes: partition i is read by the trainer owning data partition i."""
        return self._spec(f"train.{check_part(job)}.ring", partitions, **ROUND_TRIP)

    def train_metrics(self, job: str) -> TopicSpec:
        return self._spec(f"train.{check_part(job)}.metrics", 1)

    # serving
    def infer_requests(self, model: str, partitions: int = 8) -> TopicSpec:
        return self._spec(f"infer.{check_part(model)}.requests", partitions)

    def infer_results(self, model: str, partitions: int = 8) -> TopicSpec:
        return self._spec(f"infer.{check_part(model)}.results", partitions)

    def infer_dlq(self, model: str) -> TopicSpec:
        return self._spec(f"infer.{check_part(model)}.dlq", 1)

    def scaling(self, model: str) -> TopicSpec:
        """The autoscaler's looks at ``model`` (arrival rate, forecast, replicas): the status page's
        forecast chart; kept a day, the history the page can show."""
        return self._spec(f"scaling.{check_part(model)}", 1, **{"retention.ms": str(86_400_000)})

    def replies(self, client: str) -> TopicSpec:
        return self._spec(f"replies.{check_part(client)}", 1)

    def dlq(self, name: str) -> TopicSpec:
        """A generic dead-letter topic ``<name>.dlq`` for any consumer."""
        return self._spec(f"{check_part(name)}.dlq", 1)

    def control_plane(self) -> list[TopicSpec]:
        return [self.jobs(), self.models(), self.artifacts(), self.audit()]
