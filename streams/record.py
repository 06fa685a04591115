"""The record type handed to our consumers: decoded headers, reassembled chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition

from aiaas.streams import headers as h


@dataclass(slots=True)
class Record:
    topic: str
    partition: int
    offset: int  # offset of the last record of this payload (the one to commit past)
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    timestamp_ms: int = 0
    first_offset: int = -1  # offset of the first chunk (== offset for a plain record)
    message: Any = field(default=None)  # the decoded body, filled by a decoder

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


def plain_record(r: Any) -> Record:
    """A record as aiokafka's consumer hands it over (not chunked: its first offset is its own)."""
    return Record(r.topic, r.partition, r.offset, r.key, r.value, h.decode(r.headers), r.timestamp, r.offset)
