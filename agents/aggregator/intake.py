"""Records in, validated contributions out: decode, decompress, check shapes and finiteness.

A record that fails any check is rejected: counted, logged with the reason, and the job goes on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord

from aiaas.ml.compression import decompress, payload_bytes
from aiaas.ml.params import Shapes, check_finite_and_shapes
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import GradientMessage
from aiaas.streams import codecs
from aiaas.streams.headers import SENT_AT

from .rounds import Contribution

log = logging.getLogger(__name__)
PAYLOAD = {"sync": "gradient", "async": "gradient", "hybrid": "delta", "ring": "params"}


LOG_APPEND_TIME = 1


@dataclass(frozen=True, slots=True)
class Ready:
    """A trainer holds its data and can start computing."""

    worker: str


@dataclass(frozen=True, slots=True)
class Fatal:
    """A trainer cannot go on (e.g. its data does not fit the model); the job fails with ``error``."""

    worker: str
    error: str


def _sent_at(rec: ConsumerRecord[bytes, bytes]) -> float:
    for key, value in rec.headers or ():
        if key == SENT_AT:
            try:
                return float(value)
            except ValueError:
                break
    ms: int = rec.timestamp  # aiokafka is untyped
    return ms / 1000


class Intake:
    """Turns the job's input records into Contributions; counts what it rejects."""

    def __init__(self, spec: JobSpec, grad_shapes: Shapes, state_shapes: Shapes) -> None:
        self.spec = spec
        self.payload = PAYLOAD[spec.sync.mode]
        self.shapes = state_shapes if self.payload == "params" else grad_shapes
        self.rejected = 0
        self.reasons: dict[str, int] = {}

    def decode(self, rec: ConsumerRecord[bytes, bytes]) -> Contribution | Ready | Fatal | None:
        """The record's contribution, a trainer's ready signal, or None (rejected and logged)."""
        try:
            return self._decode(rec)
        except InvalidMessage as exc:
            self.rejected += 1
            self.reasons[exc.reason] = self.reasons.get(exc.reason, 0) + 1
            log.warning("rejected gradient record %s[%d]@%d (key %r): %s %s", rec.topic, rec.partition,
                        rec.offset, rec.key, exc.reason, exc.details)
            return None

    def _decode(self, rec: ConsumerRecord[bytes, bytes]) -> Contribution | Ready | Fatal:
        received, wall = time.monotonic(), time.time()
        header, raw = codecs.unpack(rec.value, GradientMessage)
        if header.job_id != self.spec.job_id:
            raise InvalidMessage("gradient of another job", job_id=header.job_id)
        if header.payload == "ready":
            return Ready(header.worker_id)
        if header.payload == "fatal":
            return Fatal(header.worker_id, header.error or "no reason given")
        if header.payload != self.payload:
            raise InvalidMessage("payload does not fit the sync mode", payload=header.payload,
                                 expected=self.payload, mode=self.spec.sync.mode)
        dense = decompress(raw, self.shapes, header.compression)
        check_finite_and_shapes(dense, self.shapes)
        sent = _sent_at(rec)
        appended = rec.timestamp / 1000 if rec.timestamp_type == LOG_APPEND_TIME else None
        return Contribution(
            worker=header.worker_id, base_version=header.base_version, tensors=dense,
            samples=header.samples, offset=rec.offset, partition=rec.partition, loss=header.loss,
            step=header.step, timings=header.timings, received_at=received,
            transit_ms=max(0.0, (wall - sent) * 1000), nbytes=payload_bytes(raw),
            produce_ms=None if appended is None else max(0.0, (appended - sent) * 1000),
        )
