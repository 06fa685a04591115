"""The parameter server of one job: gradients in, parameter versions out, until budget or target.

``Aggregator.start`` resumes from the newest checkpoint when there is one (the version continues),
else starts at version 0, and waits for the trainers' group. ``run`` (a new job: once the trainers
say they hold their data) publishes the current parameters, then polls the input topic (grads, or
the ring topic), feeds the mode, publishes every new version, evaluates, checkpoints every
``checkpoint_interval`` versions in a transaction, and finishes with export and registration.

With ``aggregator.shards: N`` one Aggregator runs per shard (``shard``): each owns whole tensors
(``ServerState``), reads its own grads topic and publishes and checkpoints on its own params topic;
shard 0 alone evaluates, reports the job's status and exports, with the other shards' tensors
(``peers.py``), and tells them where to stop. How it comes up is ``startup.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiaas.ml.evaluate import evaluate
from aiaas.schemas.records import JobStatus
from aiaas.schemas.training import PARAMS_KEY
from aiaas.streams import metrics as m
from aiaas.streams.chunking import Pieces
from aiaas.streams.headers import SENT_AT

from .core import AggregatorCore
from .intake import Fatal, Ready, Stop
from .modes import Work
from .reporting import job_status

log = logging.getLogger(__name__)


__all__ = ["Aggregator", "job_status"]


class Aggregator(AggregatorCore):
    """``start()``, then ``run()`` to the job's end, then ``stop()``."""

    # ------------------------------------------------------------------ the loop

    async def _await_ready(self, wait_s: float) -> None:
        """Version 0 (and the job's clock) waits until the gang's trainers hold their data and say
        so (``payload="ready"``), as DDP's ranks meet at a barrier: a trainer still loading would
        otherwise stretch the first round (measured: up to 45 ms)."""
        try:
            async with asyncio.timeout(wait_s):
                while len(self.ready) < self.gang and self.fatal is None:
                    await self._poll(100)
        except TimeoutError:
            log.warning("job %s: %d of %d trainers ready within %.0fs; starting anyway",
                        self.spec.job_id, len(self.ready), self.gang, wait_s)

    async def run(self) -> JobStatus:
        assert self.progress is not None
        if self.resumed_from is None:
            await self._await_ready(self.cfg.start_wait_s)
        if self.fatal is not None:  # final parameters first: the other trainers stop too
            await self._publish(await asyncio.to_thread(self.state.pack, True))
            return await self._status("failed", error=self.fatal)
        await self._publish(await asyncio.to_thread(self.state.pack, False))  # version 0, or where
        self.progress.start()  # a resumed job stands
        await self._status("running")
        if self.finished_before:
            self.stop_reason = "finished before restart"
        while self._go_on():
            await self._poll(self._poll_ms())
            await self._advance()
            if self.gate is not None and self.stop_reason is None and self.gate.due():
                await self._candidate()
        return await self._finish()

    async def _candidate(self) -> None:
        """Continuous mode: score the current parameters against production, promote them if they
        pass; the decision goes to the metrics topic and the job's status."""
        assert self.gate is not None
        decision = await self.gate.consider(self.state, self._metrics())
        await self.producer.send_message(self.metrics_topic, decision, key=self.spec.job_id)
        extra = {"candidates": float(self.gate.candidates), "promotions": float(self.gate.promotions),
                 "candidate_score": decision.candidate}
        if decision.production is not None:
            extra["production_score"] = decision.production
        await self._status("running", self._metrics() | extra)

    async def _poll(self, timeout_ms: int) -> None:
        """Read what arrived: contributions go to the mode, ready signals to ``self.ready``."""
        assert self.consumer is not None and self.mode is not None and self.progress is not None
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.cfg.max_poll_records)
        self.intake.expire()
        for tp, records in batch.items():
            for rec in records:
                self.offsets[tp.partition] = rec.offset + 1
                c = self.intake.take(rec)
                if c is None:
                    continue
                if isinstance(c, Stop):
                    self.stop_at = None if self.lead else c.version
                    continue
                if isinstance(c, Ready):
                    self.members.seen(c.worker)
                    self.ready.add(c.worker)
                    continue
                if isinstance(c, Fatal):
                    self.fatal = self.fatal or f"trainer {c.worker}: {c.error}"
                    self.stop_reason = "a trainer failed"
                    continue
                m.AGG_GRADIENTS.labels(self.spec.job_id, "accepted").inc()
                self.members.seen(c.worker)
                self.progress.received(c)
                self.mode.offer(c)

    def _poll_ms(self) -> int:
        assert self.mode is not None
        due = self.mode.next_deadline()
        if due is None:
            return 100
        return int(min(100.0, max(1.0, (due - time.monotonic()) * 1000)))

    async def _advance(self) -> None:
        """Apply every update that is due, publishing each new version."""
        assert self.mode is not None and self.progress is not None
        while self._go_on():
            work = self.mode.take(time.monotonic())
            if work is None:
                return
            before = self.state.version
            t0 = time.perf_counter()
            samples, value = await self.offload(self._apply, work)
            del work  # it holds the round's mean: a parameter copy, not kept through a checkpoint
            apply_ms = (time.perf_counter() - t0) * 1000
            if self.state.version == before:  # everything was stale
                continue
            if self.peers is None:
                await self._publish(value)
                value = Pieces(())  # the producer's now: not held through a checkpoint
                if self.spec.sync.mode in ("sync", "hybrid"):
                    await self._delivered()
            self._observe()
            self.mode.advanced(time.monotonic())
            waits = self.mode.waits_ms
            self.progress.applied(samples, apply_ms, waits[-1] if waits else None)
            await self._after_version(before)
            if self.peers is not None:  # shard 0 of several: the other shards hear where it stops
                if self.stop_reason is not None:  # before the trainers can see this version
                    await self.peers.stop_all(self.state.version)
                await self._publish(value)

    def _go_on(self) -> bool:
        """No stop yet; a shard other than 0 stops where shard 0 did (async: at once)."""
        at = self.stop_at
        if at is not None and (self.state.version >= at or self.spec.sync.mode == "async"):
            self.stop_reason = self.stop_reason or f"shard 0 stopped at version {self.stop_at}"
        return self.stop_reason is None

    def _apply(self, work: Work) -> tuple[int, Pieces]:
        samples = work()
        self.state.samples += samples
        self._final_sent = self._last_by_budget()
        return samples, self.state.pack(self._final_sent)

    def _last_by_budget(self) -> bool:
        """This version ends the job by its budget (steps, epochs), and one aggregator holds all the
        parameters: it goes out final at once, so no trainer computes a gradient nobody applies (and
        holds it beside the final version coming in: benchmarks.memcopies)."""
        assert self.progress is not None
        return self.spec.aggregator.shards == 1 and bool(self.progress.out_of_budget(self.state.version))

    async def _publish(self, value: Pieces) -> None:
        """Queue a version (its pieces are views of the live tensors: read until this returns, and
        nothing steps the model before that)."""
        self._published = await self.producer.send(self.params_topic, value, key=PARAMS_KEY,
                                                   headers={SENT_AT: repr(time.time())})

    async def _delivered(self) -> None:
        """Wait until the broker holds the version just published. In lockstep modes nothing can
        arrive before the trainers read it, so this costs no round time; without it the loop went on
        to bookkeeping, evaluation and checkpoints before the producer's sender ran, and a version
        took 4.1 ms to reach the broker against a trainer's 0.6 ms for a gradient of the same size
        (benchmarks.training, round_breakdown_ms params_produce vs grad_produce)."""
        if self._published is None:
            return
        try:
            await self._published
        except Exception as exc:  # as before: a trainer that hears nothing resends its gradient
            log.warning("job %s: publishing version %d failed: %r", self.spec.job_id, self.state.version, exc)

    async def _after_version(self, before: int) -> None:
        assert self.progress is not None and self.mode is not None
        v, spec = self.state.version, self.spec
        self.stop_reason = self.progress.out_of_budget(v)
        steps, steps_before = self.progress.steps(v), self.progress.steps(before)
        due = steps // spec.eval_interval > steps_before // spec.eval_interval or self.stop_reason is not None
        if due and self.lead and await self._evaluate() and spec.target is not None:
            self.stop_reason = self.stop_reason or "target"
        # after the evaluation (the target check does not wait behind a snapshot); none when
        # stopping: _finish writes the final checkpoint
        if self.stop_reason is None and v // spec.checkpoint_interval > before // spec.checkpoint_interval:
            await self._checkpoint()

    async def _evaluate(self) -> bool:
        assert self.progress is not None and self.mode is not None
        if self.holdout is not None and self.gate is not None:  # continuous: the newest window
            held = self.holdout.arrays()
            if held is None:
                return False
            self._x_test, self._y_test = held
        assert self._x_test is not None and self._y_test is not None
        if self.peers is not None:  # the other shards' newest tensors (a version behind at most)
            self.peers.load_into(self.state)
        metrics = await self.eval_offload(evaluate, self.state.model, self._x_test, self._y_test, self.spec)
        self._evaluated_version = self.state.version
        met = self.progress.evaluated(metrics)
        msg = self.progress.message(self.state.version, metrics, live=len(self.members.live()),
                                    dropped=self.mode.dropped, rejected=self.intake.rejected)
        await self.producer.send_message(self.metrics_topic, msg, key=self.spec.job_id)
        return met

    # ------------------------------------------------------------------ checkpoints

    async def _checkpoint(self, final: bool = False) -> None:
        """Checkpoint the state and the offsets it reflects now (between two updates, so they agree):
        never past a contribution held but not applied, nor a gradient still arriving in chunks."""
        assert self.mode is not None
        held = self.mode.unapplied_offset()
        for p in self.offsets:
            first = self.intake.chunks.pending_first_offset(p)
            if first is not None:
                held[p] = min(held.get(p, first), first)
        offsets = {p: min(o, held.get(p, o)) for p, o in self.offsets.items()}
        await self.checkpointer.save_soon(self.state, self.input_topic.name, offsets, final)

    # ------------------------------------------------------------------ the end

    async def _finish(self) -> JobStatus:
        assert self.progress is not None and self.mode is not None
        log.info("job %s stops at version %d: %s", self.spec.job_id, self.state.version, self.stop_reason)
        if self.fatal is not None:
            await self._publish(await asyncio.to_thread(self.state.pack, True))  # trainers stop
            return await self._status("failed", self._metrics(), error=self.fatal)
        if self.peers is not None:  # the other shards stop where this one did, then shard 0 has
            await self.peers.stop_all(self.state.version)  # the whole final model
            missing = await self.peers.finals(self.cfg.shard_wait_s)
            if missing:
                return await self._status("failed", self._metrics(), error=f"shards {missing} published no "
                                          f"final version within {self.cfg.shard_wait_s:.0f}s")
            self.peers.load_into(self.state)
            self._evaluated_version = -1
        if self.lead and self._evaluated_version != self.state.version:
            await self._evaluate()
        if not self._final_sent:
            await self._publish(await asyncio.to_thread(self.state.pack, True))
        await self._checkpoint(final=True)
        await self.checkpointer.flush()
        self.state.drop_optimizer_state()  # in the final checkpoint; not needed to export
        if not self.lead:
            return await self._status("succeeded", self._metrics())  # not written: shard 0 reports
        metrics = self._metrics()
        await self._status("exporting", metrics)
        from .finish import conclude  # onnx/onnxruntime: imported when needed (slow)

        assert self._x_test is not None
        state, error, model_version = await conclude(
            self.settings, self.spec, self.state, self._x_test[: self.cfg.validate_rows], self.data,
            {f"{self.input_topic.name}:{p}": o for p, o in self.offsets.items()}, metrics,
            met_target=self.progress.reached_at is not None, stop_reason=self.stop_reason,
            source=self.holdout.lineage() if self.holdout is not None else None)
        return await self._status(state, metrics, error=error, model_version=model_version)
