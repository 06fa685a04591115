"""The trainer's faust App: joins the job's consumer group over ``train.<job>.data`` and files batches.

faust owns membership and partition assignment (a trainer that starts or dies triggers a rebalance
and the partitions move); the agent consumes in batches (``take_events``), never per event. The data
topic is a dataset, so the topic is declared with ``acks=False``: nothing is committed and a
partition handed over is read from its beginning by its new owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import faust
import numpy as np

from aiaas.schemas.errors import EnvelopeError, InvalidMessage
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import DataBatch
from aiaas.streams import codecs
from aiaas.streams.envelope import configured
from aiaas.streams.faust_app import app_config
from aiaas.streams.jobs import trainer_group
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

from .data import LocalData
from .settings import TrainerSettings

log = logging.getLogger(__name__)
TAKE = 256  # events per batch handed to the agent
MISFIT = "data batch does not fit the model"  # every batch will fail alike: the trainer cannot go on
WITHIN_S = 0.05


def decode_batch(value: bytes | None, spec: JobSpec) -> tuple[np.ndarray, np.ndarray]:
    """x (float32 [rows, input_dim]) and y of one data record; InvalidMessage when they do not fit."""
    header, tensors = codecs.unpack(value, DataBatch)
    if header.job_id != spec.job_id or header.split != "train":
        raise InvalidMessage("data batch of another job or split", job_id=header.job_id, split=header.split)
    x, y = tensors.get("x"), tensors.get("y")
    if x is None or y is None:
        raise InvalidMessage("data batch needs tensors x and y", found=sorted(tensors))
    if x.ndim == 2 and x.shape[1] != spec.model.input_dim:
        raise InvalidMessage(MISFIT, x_shape=list(x.shape), input_dim=spec.model.input_dim,
                             why=f"the data has {x.shape[1]} features but model.input_dim is "
                                 f"{spec.model.input_dim}")
    if x.ndim != 2 or len(y) != len(x):
        raise InvalidMessage("data batch has bad shapes", x_shape=list(x.shape), y_shape=list(y.shape))
    if not np.all(np.isfinite(x)):
        raise InvalidMessage("data batch holds NaN or Inf")
    return x.astype(np.float32, copy=False), y


def build_app(
    settings: Settings, ts: TrainerSettings, spec: JobSpec, data: LocalData,
    on_change: Callable[[], None],
) -> faust.App:
    """A faust App whose agent fills ``data``; ``on_change`` runs after every batch or assignment."""
    client = settings.model_copy(update={
        "client_id": ts.worker_id, "session_timeout_ms": ts.session_timeout_ms,
        "heartbeat_interval_ms": ts.heartbeat_interval_ms,
    })
    app = faust.App(
        trainer_group(settings, spec.job_id),
        **app_config(client, store="memory://", topic_disable_leader=True, stream_wait_empty=False,
                     consumer_auto_offset_reset="earliest"),
    )
    data_topic = Topics(settings).train_data(spec.job_id, spec.data.partitions).name
    topic = app.topic(data_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", acks=False, internal=False)
    stats = {"batches": 0, "rejected": 0}
    sealer = configured(opening_only=True)  # sealed data batches open in memory (docs/security.md)

    async def ingest(stream: Any) -> None:
        async for events in stream.take_events(TAKE, within=WITHIN_S):
            for event in events:
                msg = event.message
                try:
                    x, y = decode_batch(sealer.open_record(event.value, event.headers), spec)
                except EnvelopeError as exc:  # every batch under that key will fail alike
                    stats["rejected"] += 1
                    if data.fatal is None:
                        data.fatal = f"data batch cannot be opened: {exc.reason} {exc.details}"
                    continue
                except InvalidMessage as exc:
                    stats["rejected"] += 1
                    log.warning("skipping data record %s[%d]@%d: %s %s", msg.topic, msg.partition,
                                msg.offset, exc.reason, exc.details.get("why", ""))
                    if exc.reason == MISFIT and data.fatal is None:
                        data.fatal = f"{MISFIT}: {exc.details['why']}"
                    continue
                data.add(msg.partition, msg.offset, x, y)
                stats["batches"] += 1
            on_change()
            await asyncio.sleep(0)

    app.agent(topic, name=f"{spec.job_id}.ingest")(ingest)

    async def assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        mine = sorted(tp.partition for tp in assigned if tp.topic == data_topic)
        log.info("trainer %s owns data partitions %s", ts.worker_id, mine)
        data.assign(mine)
        on_change()

    # mode calls handler(app, assigned, signal=...) but types handlers as (sender, /, *args, signal,
    # **kw): a handler that names the signal's positional argument cannot match that type
    app.on_partitions_assigned.connect(assigned)  # type: ignore[arg-type]
    app.ingest_stats = stats  # type: ignore[attr-defined]
    return app
