"""The aggregator's logic without a broker: membership, rounds, modes, checkpoints, intake."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from aiokafka.structs import ConsumerRecord

from aiaas.agents.aggregator.intake import Intake, Ready
from aiaas.agents.aggregator.members import Membership
from aiaas.agents.aggregator.modes import AsyncMode, RingMode, RoundMode
from aiaas.agents.aggregator.progress import Progress
from aiaas.agents.aggregator.rounds import Ahead, Contribution, Round, weighted_mean
from aiaas.agents.aggregator.state import ServerState
from aiaas.ml.compression import Compressor
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import GradientMessage, ParameterSnapshot
from aiaas.streams import codecs
from aiaas.streams.headers import SENT_AT


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def job(mode: str = "sync", **over: Any) -> JobSpec:
    base: dict[str, Any] = {"job_id": "j", "model": {"input_dim": 4, "hidden": [3], "output_dim": 2},
                            "steps": 100, "sync": {"mode": mode, "straggler_deadline_ms": 1000}}
    return JobSpec.model_validate(base | over)


def grads(state: ServerState, value: float) -> dict[str, np.ndarray]:
    return {k: np.full(s, value, np.float32) for k, s in state.grad_shapes.items()}


def contrib(worker: str, version: int, tensors: dict[str, np.ndarray], *, samples: int = 8,
            offset: int = 0, at: float = 100.0) -> Contribution:
    return Contribution(worker, version, tensors, samples, offset, received_at=at)


def test_membership_marks_late_forgets_silent_and_follows_the_group() -> None:
    clock = Clock()
    m = Membership(forget_after_s=10, clock=clock)
    m.seen("a")
    m.seen("b")
    m.mark_late({"b"})
    assert m.expected() == {"a"} and m.live() == {"a", "b"}
    m.seen("b")  # heard from again: expected again
    assert m.expected() == {"a", "b"}
    clock.now += 11
    m.seen("a")
    assert m.live() == {"a"}  # b was silent too long
    m.seen("c")
    m.set_group({"a"}, asked_at=clock.now - 1)  # c was heard after the question: kept
    assert m.live() == {"a", "c"}
    m.set_group({"c"}, asked_at=clock.now + 1)
    assert m.live() == {"c"}


def test_round_waits_for_everyone_expected_or_its_deadline() -> None:
    r = Round(3, opened_at=0.0)
    g = {"w": np.ones(2, np.float32)}
    assert not r.ready({"a", "b"}, now=100.0, deadline_s=1.0)
    assert r.add(contrib("a", 3, g, at=100.0))
    assert not r.add(contrib("a", 3, g, at=100.1))  # one per worker
    assert not r.ready({"a", "b"}, now=100.5, deadline_s=1.0)
    assert r.ready({"a", "b"}, now=101.0, deadline_s=1.0)  # straggler deadline
    assert r.ready({"a"}, now=100.0, deadline_s=1.0)
    assert not r.ready({"a"}, now=100.0, deadline_s=1.0, min_workers=2)
    assert r.missing({"a", "b"}) == {"b"} and r.min_offset() == 0


def test_weighted_mean_weights_by_samples() -> None:
    a = contrib("a", 0, {"w": np.array([1.0, 1.0], np.float32)}, samples=3)
    b = contrib("b", 0, {"w": np.array([5.0, -3.0], np.float32)}, samples=1)
    np.testing.assert_allclose(weighted_mean([a, b])["w"], [2.0, 0.0])


def test_round_sums_into_the_first_writable_contribution_and_weights_by_samples() -> None:
    r = Round(0, opened_at=0.0)
    own = np.array([1.0, 2.0], np.float32)  # writable float32: becomes the sum, no new buffer
    wire = np.frombuffer(np.array([4.0, 4.0], np.float32).tobytes(), np.float32)  # read-only view
    half = np.array([-2.0, 8.0], np.float16)
    assert r.add(contrib("a", 0, {"w": own, "b": wire, "h": half}, samples=3))
    assert r.add(contrib("b", 0, {"w": np.array([5.0, -2.0], np.float32), "b": wire.copy(),
                                  "h": np.zeros(2, np.float32)}, samples=1))
    mean = r.mean()
    assert mean["w"] is own and not np.shares_memory(mean["b"], wire)
    np.testing.assert_allclose(mean["w"], [2.0, 1.0])
    np.testing.assert_allclose(mean["b"], [4.0, 4.0])
    np.testing.assert_allclose(mean["h"], [-1.5, 6.0])
    assert mean["h"].dtype == np.float32 and np.array_equal(wire, [4.0, 4.0])


def test_ahead_keeps_future_contributions_bounded() -> None:
    ahead = Ahead(limit=2)
    g = {"w": np.ones(1, np.float32)}
    assert ahead.add(contrib("a", 5, g, offset=7)) == 0
    assert ahead.add(contrib("a", 6, g, offset=8)) == 0
    assert ahead.add(contrib("b", 7, g, offset=9)) == 1  # the oldest goes
    assert ahead.min_offset() == 8
    assert [c.base_version for c in ahead.take(6)] == [6] and ahead.min_offset() == 9


def test_sync_mode_applies_the_mean_once_everyone_is_in() -> None:
    spec, clock = job(), Clock()
    state, members = ServerState(spec), Membership(30, clock)
    mode = RoundMode(spec, state, members, first_deadline_s=5.0, first_min_workers=2)
    before = state.params()
    for w, v in (("a", 1.0), ("b", 3.0)):
        members.seen(w)
        mode.offer(contrib(w, 0, grads(state, v), offset={"a": 4, "b": 5}[w], at=clock.now))
    mode.offer(contrib("a", 1, grads(state, 9.0), offset=6))  # next round, held
    assert mode.unapplied_offset() == {0: 4}
    work = mode.take(clock.now)
    assert work is not None and work() == 16
    assert state.version == 1 and any(not np.allclose(before[k], state.params()[k]) for k in before)
    mode.advanced(clock.now)
    assert mode.round.workers == {"a"}  # the held one joined the new round
    mode.offer(contrib("b", 0, grads(state, 1.0)))  # stale
    assert mode.dropped == 1


def test_sync_mode_does_not_wait_again_for_a_worker_that_missed_a_deadline() -> None:
    spec, clock = job(), Clock()
    state, members = ServerState(spec), Membership(30, clock)
    mode = RoundMode(spec, state, members, first_deadline_s=1.0, first_min_workers=1)
    members.seen("a")
    members.seen("dead")
    mode.offer(contrib("a", 0, grads(state, 1.0), at=clock.now))
    assert mode.take(clock.now) is None  # waits for "dead"
    clock.now += 1.0
    work = mode.take(clock.now)
    assert work is not None
    work()
    mode.advanced(clock.now)
    assert "dead" in members.late
    mode.offer(contrib("a", 1, grads(state, 1.0), at=clock.now))
    assert mode.take(clock.now) is not None  # no second deadline


def test_hybrid_mode_adds_the_mean_delta() -> None:
    spec = job("hybrid")
    state, members = ServerState(spec), Membership(30)
    mode = RoundMode(spec, state, members, first_deadline_s=1.0, first_min_workers=2)
    before = state.params()
    for w in ("a", "b"):  # each its own arrays: a round uses a contribution's tensors up
        members.seen(w)
        mode.offer(contrib(w, 0, {k: np.full(s, 0.5, np.float32) for k, s in state.grad_shapes.items()}))
    work = mode.take(100.0)
    assert work is not None
    work()
    for k in state.grad_shapes:
        np.testing.assert_allclose(state.params()[k], before[k] + 0.5, rtol=1e-6)


def test_async_mode_drops_gradients_past_the_staleness_bound() -> None:
    spec = job("async", sync={"mode": "async", "staleness": 1})
    state = ServerState(spec)
    state.version = 5
    mode = AsyncMode(spec, state, Membership(30))
    mode.offer(contrib("a", 4, grads(state, 1.0)))
    mode.offer(contrib("b", 3, grads(state, 1.0)))  # 2 versions old: dropped
    work = mode.take(0.0)
    assert work is not None and work() == 8
    assert mode.dropped == 1 and state.version == 6
    mode.offer(contrib("c", 1, grads(state, 1.0)))
    assert mode.take(0.0) is None and mode.dropped == 2


def test_ring_mode_publishes_the_mean_of_the_trainers_parameters() -> None:
    spec = job("ring")
    state, members = ServerState(spec), Membership(30)
    mode = RingMode(spec, state, members)
    shapes = state.state_shapes
    for w, v in (("a", 1.0), ("b", 3.0)):
        members.seen(w)
        mode.offer(contrib(w, 0, {k: np.full(s, v, np.float32) for k, s in shapes.items()}))
    work = mode.take(100.0)
    assert work is not None and work() == 16
    assert all(np.allclose(v, 2.0) for v in state.params().values()) and state.version == 1


def test_checkpoint_restores_model_optimizer_schedule_and_counters() -> None:
    spec = job(optimizer={"name": "adam", "lr": 0.01}, schedule={"kind": "cosine"})
    a = ServerState(spec)
    rng = np.random.default_rng(0)
    for _ in range(3):
        a.apply_gradient({k: rng.normal(size=s).astype(np.float32) for k, s in a.grad_shapes.items()})
    a.samples = 77
    tensors, meta = a.checkpoint()
    header, back = codecs.unpack(codecs.pack(ParameterSnapshot(job_id="j", version=a.version,
                                                               server_state=json.loads(json.dumps(meta))),
                                             tensors), ParameterSnapshot)
    b = ServerState(spec)
    b.restore(back, header.server_state)
    assert (b.version, b.samples) == (3, 77)
    g = {k: rng.normal(size=s).astype(np.float32) for k, s in a.grad_shapes.items()}
    a.apply_gradient(g)
    b.apply_gradient(g)
    for k, v in a.params().items():
        np.testing.assert_array_equal(v, b.params()[k])  # the same next step: nothing was lost


def _record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic="g", partition=0, offset=9, timestamp=0, timestamp_type=0, key=b"a",
                          value=value, checksum=None, serialized_key_size=1, serialized_value_size=len(value),
                          headers=[(SENT_AT, b"1.0")])


@pytest.mark.parametrize("compression", ["none", "fp16", "topk"])
def test_intake_decodes_compressed_gradients(compression: str) -> None:
    spec = job(compression={"kind": compression, "ratio": 0.5})
    state = ServerState(spec)
    intake = Intake(spec, state.grad_shapes, state.state_shapes)
    payload = Compressor(spec.compression).compress(grads(state, 2.0))
    head = GradientMessage(job_id="j", worker_id="a", step=1, base_version=0, samples=8,
                           compression=compression)
    c = intake.take(_record(codecs.pack(head, payload)))
    assert c is not None and c.worker == "a" and c.offset == 9 and c.nbytes > 0
    assert set(c.tensors) == set(state.grad_shapes)


def test_intake_passes_ready_signals_through_without_counting_them() -> None:
    spec = job()
    state = ServerState(spec)
    intake = Intake(spec, state.grad_shapes, state.state_shapes)
    head = GradientMessage(job_id="j", worker_id="r", step=0, base_version=0, samples=0, payload="ready")
    assert intake.take(_record(codecs.pack(head, {}))) == Ready("r")
    assert intake.rejected == 0


def test_intake_rejects_bad_records_and_counts_them() -> None:
    spec = job()
    state = ServerState(spec)
    intake = Intake(spec, state.grad_shapes, state.state_shapes)
    head = GradientMessage(job_id="j", worker_id="m", step=1, base_version=0, samples=8)
    nan = grads(state, 1.0)
    nan[next(iter(nan))][0] = np.nan
    wrong = {k: np.ones((2, *s), np.float32) for k, s in state.grad_shapes.items()}
    other_job = head.model_copy(update={"job_id": "other"})
    delta = head.model_copy(update={"payload": "delta"})
    bad = [codecs.pack(head, nan), codecs.pack(head, wrong), codecs.pack(other_job, grads(state, 1.0)),
           codecs.pack(delta, grads(state, 1.0)), b"junk"]
    assert all(intake.take(_record(v)) is None for v in bad)
    assert intake.rejected == 5 and len(intake.reasons) == 5


def test_progress_budget_target_and_steps() -> None:
    p = Progress(job("hybrid", sync={"mode": "hybrid", "local_steps": 4}, steps=40), train_rows=100)
    p.start()
    assert p.steps(9) == 36 and p.out_of_budget(9) is None and p.out_of_budget(10) == "steps"
    e = Progress(job(steps=None, epochs=2, target={"metric": "test_accuracy", "value": 0.9}), train_rows=100)
    e.start()
    e.applied(150, 1.0, None)
    assert e.out_of_budget(1) is None
    e.applied(50, 1.0, None)
    assert e.out_of_budget(2) == "epochs"
    assert not e.evaluated({"test_accuracy": 0.8}) and e.evaluated({"test_accuracy": 0.95})
    assert e.summary()["seconds_to_target"] >= 0


def test_a_metrics_record_says_when_its_evaluation_was_made_on_the_jobs_clock() -> None:
    """The time-to-accuracy curves (benchmarks.training, make bench) read ``seconds`` off the metrics
    records: the same clock as seconds_to_target, none before the clock starts."""
    p = Progress(job(steps=None, epochs=2, target={"metric": "test_accuracy", "value": 0.9}), train_rows=100)
    p.evaluated({"test_accuracy": 0.5})
    assert p.message(0, {"test_accuracy": 0.5}, live=1, dropped=0, rejected=0).seconds is None
    p.start()
    p.evaluated({"test_accuracy": 0.95})
    msg = p.message(3, {"test_accuracy": 0.95}, live=1, dropped=0, rejected=0)
    assert msg.seconds is not None and 0 <= msg.seconds <= p.summary()["seconds_to_target"] + 1e-6
