"""Records in, validated contributions out: reassemble chunks, decode, decompress, check shapes and
finiteness.

A gradient larger than ``chunk_bytes`` arrives in chunks (``aiaas.streams.chunking``); ``take`` puts
them back together (one payload per sender at a time) and a contribution's offset is its first
chunk's, so a checkpoint never passes a gradient it has not applied. A record that fails any check
is rejected: counted, logged with the reason, and the job goes on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord

from aiaas.ml.compression import decompress, payload_bytes
from aiaas.ml.params import Shapes, check_finite_and_shapes
from aiaas.schemas.errors import AiaasError, InvalidMessage
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import GradientMessage
from aiaas.streams import codecs
from aiaas.streams import headers as h
from aiaas.streams import metrics as m
from aiaas.streams.chunking import Reassembler
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
class Stop:
    """Shard 0 of a sharded parameter server stopped at ``version``: the other shards stop there too."""

    version: int


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
        self.chunks = Reassembler(max_pending=256, timeout_s=120.0)

    def take(self, rec: ConsumerRecord[bytes, bytes]) -> Contribution | Ready | Fatal | Stop | None:
        """What the record completes: a contribution, a signal, or None (a chunk of a payload still
        incomplete, or rejected and logged)."""
        try:
            done = self.chunks.add_into(rec.partition, rec.offset, h.decode(rec.headers), rec.value or b"")
            if done is None:
                return None
            return self._decode(rec, *done)
        except AiaasError as exc:
            self._reject(rec.topic, rec.partition, rec.offset, exc)
            return None

    def expire(self) -> None:
        """Give up on chunked payloads whose chunks stopped coming (rejected, with the reason)."""
        for partition, first, exc in self.chunks.expire():
            self._reject("grads", int(str(partition)), first, exc)

    def _reject(self, topic: str, partition: int, offset: int, exc: AiaasError) -> None:
        self.rejected += 1
        self.reasons[exc.reason] = self.reasons.get(exc.reason, 0) + 1
        m.AGG_GRADIENTS.labels(self.spec.job_id, "rejected").inc()
        log.warning("rejected gradient record %s[%d]@%d: %s %s", topic, partition, offset, exc.reason,
                    exc.details)

    def _decode(self, rec: ConsumerRecord[bytes, bytes], value: bytes | bytearray,
                first_offset: int) -> Contribution | Ready | Fatal | Stop:
        received, wall = time.monotonic(), time.time()
        header, raw = codecs.unpack(value, GradientMessage)
        if header.job_id != self.spec.job_id:
            raise InvalidMessage("gradient of another job", job_id=header.job_id)
        if header.payload == "ready":
            return Ready(header.worker_id)
        if header.payload == "fatal":
            return Fatal(header.worker_id, header.error or "no reason given")
        if header.payload == "stop":
            return Stop(header.step)
        if header.payload != self.payload:
            raise InvalidMessage("payload does not fit the sync mode", payload=header.payload,
                                 expected=self.payload, mode=self.spec.sync.mode)
        dense = decompress(raw, self.shapes, header.compression)
        check_finite_and_shapes(dense, self.shapes)
        sent = _sent_at(rec)
        appended = rec.timestamp / 1000 if rec.timestamp_type == LOG_APPEND_TIME else None
        return Contribution(
            worker=header.worker_id, base_version=header.base_version, tensors=dense,
            samples=header.samples, offset=first_offset, partition=rec.partition, loss=header.loss,
            step=header.step, timings=header.timings, received_at=received,
            transit_ms=max(0.0, (wall - sent) * 1000), nbytes=payload_bytes(raw),
            produce_ms=None if appended is None else max(0.0, (appended - sent) * 1000),
        )
