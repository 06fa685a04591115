"""Dead letters: a record that cannot be processed goes to a DLQ topic with the reason."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable

from aiaas.schemas.errors import AiaasError, InvalidMessage
from aiaas.schemas.records import DeadLetter
from aiaas.streams.producer import Producer
from aiaas.streams.record import Record

log = logging.getLogger(__name__)


def dead_letter(record: Record, error: AiaasError) -> DeadLetter:
    """The DLQ message for ``record``: where it came from, why it failed, its original bytes."""
    return DeadLetter(
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        reason=error.reason,
        code=error.code.value,
        details={k: v for k, v in error.details.items() if _jsonable(v)},
        key_b64=base64.b64encode(record.key).decode() if record.key is not None else None,
        value_b64=base64.b64encode(record.value).decode() if record.value is not None else None,
        headers=record.headers,
        ts=time.time(),
    )


def refused_field(field: str, reason: str) -> InvalidMessage:
    """The dead letter's error for a record a source's decoder refused: the reason, naming the field."""
    where = f"field {field!r}" if field else "record"
    return InvalidMessage(f"{where}: {reason}", field=field, why=reason)


class DeadLetters:
    """Sends dead letters to one topic and counts them."""

    def __init__(self, producer: Producer, topic: str,
                 protect: Callable[[Record], Record] | None = None) -> None:
        """``protect``: what a record becomes before it is kept (a worker seals opened payloads
        again, docs/security.md)."""
        self.producer = producer
        self.topic = topic
        self.protect = protect
        self.count = 0

    async def send(self, record: Record, error: AiaasError) -> None:
        letter = dead_letter(record if self.protect is None else self.protect(record), error)
        log.warning(
            "dead-letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, error.reason
        )
        await (await self.producer.send_message(self.topic, letter, key=record.key))
        self.count += 1


def _jsonable(value: object) -> bool:
    return isinstance(value, str | int | float | bool | list | dict | type(None))
