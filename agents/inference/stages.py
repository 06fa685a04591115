"""Pipeline stages in the inference worker: a worker that serves one stage of a split model
(docs/transformers.md, "Split a model across workers"; ``aiaas.registry.pipelines``).

``aiaas worker inference --model NAME --pipeline-stage K`` looks the pipeline up once at start
(``resolved``): the worker loads stage K's model version (pinned: every stage of one split agrees),
serves ``infer.NAME.requests`` when K is 1 (callers call NAME as usual) and
``infer.NAME.stage<K>.requests`` after that, in a consumer group per stage. A stage before the last
answers no caller: its ``Forwarder`` sends each request's outputs as a request frame entry to the
next stage's topic (stacked rows stay one rows entry), with the caller's ``reply-to``, deadline,
tenant and trace context in the entry's headers, the caller's request id as its id, the outputs
it asked for (stages before the last compute all theirs; the last one picks) and the reply
parameters a stage set (the first stage's word on a text's truncation). The frames are
gathered per poll like reply frames and chunked when large (a later stage takes requests as big as
a reply, ``max_reply_bytes``); the poll's offsets commit only once they are acknowledged, so a
stage worker killed mid-batch loses nothing (the next owner of its partitions re-serves them). A
stage with an exit head (``aiaas models split --exit-head``) answers a request itself when every
row's highest probability reaches the head's threshold (``Exit``). Errors go straight to the caller
from whichever stage they arise in, and the last stage replies as any worker does, under the
pipeline's name and in the caller's encoding (a plain OIP JSON request gets a single OIP JSON
reply).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from aiaas.agents.inference import blocks
from aiaas.agents.inference.batcher import Work
from aiaas.agents.inference.outbox import Outbox
from aiaas.agents.inference.replier import Replier
from aiaas.agents.inference.sessions import Loaded
from aiaas.agents.inference.settings import WorkerSettings
from aiaas.registry import graphcut, pipelines
from aiaas.registry.store import Registry
from aiaas.schemas.errors import TooLarge
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
from aiaas.streams.dlq import DeadLetters
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics, TopicSpec

Outputs = dict[str, np.ndarray]
FORWARDED = (h.REPLY_TO, h.DEADLINE, h.TENANT, h.TRACEPARENT)  # what the next stage needs to answer
REPLY_PARAMETERS = "reply_parameters"  # an entry field: what an earlier stage has to say in the reply


async def resolved(settings: Settings, cfg: WorkerSettings) -> WorkerSettings:
    """``cfg`` with its stage filled in from the registry (unchanged when it serves no stage)."""
    if cfg.pipeline_stage is None or cfg.pipeline is not None:
        return cfg
    async with Registry(settings) as reg:
        ref = await pipelines.stage(reg, cfg.model, cfg.pipeline_stage, cfg.version)
    update: dict[str, Any] = {"model": ref.model, "version": ref.version, "stage": "latest",
                              "pipeline": ref.pipeline, "forward_to": ref.next_model}
    if ref.index > 1:  # activations outweigh requests (token ids -> hidden states): as big as a reply
        update["max_request_bytes"] = max(cfg.max_request_bytes, cfg.max_reply_bytes)
    return cfg.model_copy(update=update)


def served(cfg: WorkerSettings) -> str:
    """The model name whose request topic (and consumer group) this worker serves."""
    return cfg.pipeline if cfg.pipeline is not None and cfg.pipeline_stage == 1 else cfg.model


def answered_as(cfg: WorkerSettings) -> str:
    """The model name replies carry and stream results go under: the pipeline's, for a stage."""
    return cfg.pipeline or cfg.model


def topics(t: Topics, cfg: WorkerSettings) -> list[TopicSpec]:
    """Topics a stage worker needs besides its own: the next stage's requests, so a first stage
    started before the second one has somewhere to forward to, and the pipeline's results."""
    out = [] if cfg.forward_to is None else [t.infer_requests(cfg.forward_to, cfg.partitions)]
    return out + ([t.infer_results(cfg.pipeline, cfg.partitions)] if cfg.pipeline else [])


def replier(settings: Settings, cfg: WorkerSettings, producer: Producer, results_topic: str,
            dead_letters: DeadLetters, stats: Counter[str], **kw: Any) -> Replier:
    """The worker's replier: a ``Forwarder`` for a stage before the last, else the usual one."""
    if cfg.forward_to is None:
        return Replier(answered_as(cfg), producer, results_topic, dead_letters, stats, **kw)
    next_topic = Topics(settings).infer_requests(cfg.forward_to, cfg.partitions).name
    return Forwarder(next_topic, answered_as(cfg), producer, results_topic, dead_letters, stats, **kw)


def forwarded_headers(request_headers: dict[str, str]) -> dict[str, str]:
    """The caller's headers the next stage needs, and the caller's encoding when it sent a plain OIP
    JSON record: the last stage answers in it, as a worker of the whole model would."""
    out = {k: request_headers[k] for k in FORWARDED if k in request_headers}
    if not frame.is_frame(request_headers):
        out[h.CONTENT_TYPE] = tc.JSON
    return out


@dataclass(frozen=True)
class Exit:
    """A stage's exit head (``aiaas.registry.graphcut.with_exit``): answer when confident enough."""

    threshold: float
    confidence: str  # the output whose highest value per row is the confidence

    @staticmethod
    def of(model: Loaded) -> Exit | None:
        raw = model.session.get_modelmeta().custom_metadata_map.get(graphcut.EXIT_META)
        if raw is None:
            return None
        spec = json.loads(raw)
        return Exit(float(spec["threshold"]), str(spec["confidence"]))

    def answers(self, outputs: dict[str, np.ndarray], asked: list[str] | None) -> Outputs | None:
        """The exit head's answer when every row is confident and has what was asked, else None."""
        conf = outputs[self.confidence]
        if not conf.size or not bool(np.all(conf.max(axis=-1) >= self.threshold)):
            return None
        answer = {n.removeprefix(graphcut.EXIT_PREFIX): a for n, a in outputs.items()
                  if n.startswith(graphcut.EXIT_PREFIX)}
        if asked is None:
            return answer
        return {n: answer[n] for n in asked} if set(asked) <= answer.keys() else None


def _asked(w: Work) -> dict[str, Any]:
    """The fields of a request's entry the last stage needs: the outputs it asked for (and what an
    earlier stage had to say in the reply)."""
    msg = w.record.message
    fields = msg.fields if isinstance(msg, frame.Entry) and w.count == 1 else {}
    return {k: fields[k] for k in ("outputs", REPLY_PARAMETERS) if k in fields}


def carried(w: Work) -> Work:
    """``w`` with the reply parameters an earlier stage forwarded (a text's truncation, said by the
    stage that tokenized it): the answering stage replies with them."""
    said = _asked(w).get(REPLY_PARAMETERS)
    if isinstance(said, dict) and w.parameters is None:
        w.parameters = said
    return w


class Forwarder(Replier):
    """A stage's answers are the next stage's requests; its errors are the caller's replies. With an
    exit head, a request it is confident about is answered here instead (``Exit``)."""

    def __init__(self, next_topic: str, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.next_topic = next_topic
        self._exits: dict[int, Exit | None] = {}  # per loaded version (pinned: a worker keeps it)

    async def reply(self, w: Work, outputs: dict[str, Any], sent: Outbox) -> None:
        key = id(w.model)
        if key not in self._exits:
            self._exits[key] = Exit.of(w.model)
        ex = self._exits[key]
        if ex is None:
            await self._forward(w, outputs, sent)
        elif w.count == 1:
            await self._exit_or_forward(w, outputs, ex, sent)
        else:  # a block: each of its requests exits or goes on by itself
            for part, outs in zip(blocks.explode(w), blocks.rows_of(w, outputs), strict=True):
                await self._exit_or_forward(part, outs, ex, sent)

    async def _exit_or_forward(self, w: Work, outputs: dict[str, Any], ex: Exit, sent: Outbox) -> None:
        wanted = _asked(w).get("outputs")
        answer = ex.answers(outputs, [o["name"] for o in wanted] if wanted else None)
        if answer is not None:
            self.stats["exited"] += 1
            await super().reply(w, answer, sent)
            return
        await self._forward(w, {n: a for n, a in outputs.items() if not n.startswith(graphcut.EXIT_PREFIX)},
                            sent)

    async def _forward(self, w: Work, outputs: dict[str, Any], sent: Outbox) -> None:
        rows = w.count > 1
        fields = _asked(w)  # for the last stage to pick
        if w.parameters and not rows:  # a text's truncation, said by the stage that tokenized it
            fields[REPLY_PARAMETERS] = w.parameters
        entry = frame.Entry(list(w.ids), blocks.stacked(w, outputs) if rows else dict(outputs),
                            forwarded_headers(w.record.headers), fields, rows)
        size = entry.nbytes
        if size > self.max_reply_bytes:
            raise TooLarge("activations over the worker's size limit (max_reply_bytes)", size=size,
                           limit=self.max_reply_bytes)
        self.stats["forwarded"] += w.count
        await sent.add(self.next_topic, None, entry, (w.record, w.ids))
