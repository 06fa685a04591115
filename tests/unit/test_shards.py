"""The sharded parameter server and chunked gradients without a broker: the shard plan, shard
states stepping like one, the trainers' snapshot of several shards, and the intake putting chunks
back together (the broker runs: tests/integration/test_sharding.py, tests/faults/test_shard_faults.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from aiaas.agents.aggregator.intake import Intake, Stop
from aiaas.agents.aggregator.rounds import Contribution
from aiaas.agents.aggregator.state import ServerState
from aiaas.agents.trainer.follower import ParamFollower, Snapshot, combine
from aiaas.ml.shards import plan, shard_name
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import GradientMessage, ParameterSnapshot
from aiaas.streams import codecs
from aiaas.streams.chunking import split
from aiaas.streams.settings import Settings


def job(shards: int = 1, **over: Any) -> JobSpec:
    base: dict[str, Any] = {"job_id": "j", "model": {"input_dim": 8, "hidden": [16, 4], "output_dim": 3},
                            "steps": 10, "aggregator": {"shards": shards}}
    return JobSpec.model_validate(base | over)


def test_plan_deals_whole_tensors_largest_first_to_the_least_loaded_shard() -> None:
    shapes = {"a": (10, 10), "b": (60,), "c": (50,), "d": (5,), "e": (30,)}
    shards = plan(shapes, 2)
    # 100 -> s0 (100), 60 -> s1 (60), 50 -> s1 (110), 30 -> s0 (130), 5 -> s1 (115)
    assert shards == [["a", "e"], ["b", "c", "d"]]
    assert sorted(shards[0] + shards[1]) == sorted(shapes)
    assert plan(shapes, 1) == [list(shapes)]
    assert plan({"a": (3,)}, 2) == [["a"], []]  # more shards than tensors: one owns nothing
    with pytest.raises(ValueError):
        plan(shapes, 0)
    assert shard_name("t.grads", 0) == "t.grads" and shard_name("t.grads", 2) == "t.grads.s2"


def test_spec_refuses_shards_where_no_server_is_in_the_loop() -> None:
    with pytest.raises(ValidationError, match=r"aggregator\.shards"):
        job(2, sync={"mode": "ring"})
    assert job(2, sync={"mode": "hybrid"}).aggregator.shards == 2


def test_two_shard_states_step_like_one() -> None:
    whole, parts = ServerState(job()), [ServerState(job(2), i) for i in range(2)]
    assert sorted(parts[0].owned + parts[1].owned) == sorted(whole.owned)
    rng = np.random.default_rng(0)
    for _ in range(3):
        g = {k: rng.normal(size=s).astype(np.float32) for k, s in whole.grad_shapes.items()}
        whole.apply_gradient(g)
        for p in parts:
            p.apply_gradient({k: g[k] for k in p.grad_shapes})
    joined = parts[0].params() | parts[1].params()
    for name, value in whole.params().items():
        np.testing.assert_allclose(joined[name], value, rtol=0, atol=1e-7)
    tensors, meta = parts[1].checkpoint()  # a shard's checkpoint holds its tensors only
    assert {k for k in tensors if not k.startswith("opt.")} == set(parts[1].owned)
    fresh = ServerState(job(2), 1)
    fresh.restore(tensors, meta)
    assert fresh.version == 3
    assert all(np.array_equal(fresh.params()[k], v) for k, v in parts[1].params().items())


def snap(version: int, offset: int, tensors: dict[str, np.ndarray], final: bool = False) -> Snapshot:
    header = ParameterSnapshot(job_id="j", version=version, final=final)
    return Snapshot(offset, header, tensors, 0.0, 0.0, None, (version,), (offset,))


def test_a_version_is_the_shards_versions_of_one_round() -> None:
    a, b = {"a": np.zeros(2)}, {"b": np.ones(3)}
    first = combine([snap(1, 10, a), snap(1, 4, b)], True, None)
    assert first is not None and first.versions == (1, 1) and set(first.tensors) == {"a", "b"}
    assert combine([snap(2, 12, a), snap(1, 4, b)], True, first) is None  # shard 1 not there yet
    assert combine([snap(2, 12, a), snap(2, 3 + 4, b)], True, first).versions == (2, 2)  # type: ignore[union-attr]
    assert combine([snap(2, 12, a), snap(1, 4, b)], False, first) is None  # async: both must advance
    assert combine([snap(2, 12, a), snap(3, 9, b)], False, first).offset == 21  # type: ignore[union-attr]
    done = combine([snap(5, 20, a, True), snap(4, 9, b, True)], True, first)
    assert done is not None and done.header.final  # every shard final ends the job
    late = combine([snap(5, 20, a, True), snap(5, 9, b)], True, first)  # shard 1 not final yet
    assert late is not None and not late.header.final


def test_a_loaded_snapshot_releases_its_tensors_and_its_shards_parts() -> None:
    follower = ParamFollower(Settings(), "j", shards=2)
    parts = [snap(3, 10, {"a": np.zeros(2)}), snap(3, 4, {"b": np.ones(3)})]
    follower._parts = dict(zip(follower.tps, parts, strict=True))
    whole = combine(parts, True, None)
    assert whole is not None
    follower.release(whole)
    assert whole.released and not whole.tensors  # the model holds it now: no copy beside it
    assert all(p.released and not p.tensors for p in parts)
    assert combine(parts, True, None) is None  # never a version made of released parts
    newer = snap(4, 12, {"a": np.zeros(2)})
    follower._parts[follower.tps[0]] = newer
    follower.release(whole)  # shard 0 moved on: its newer part keeps its tensors
    assert not newer.released and set(newer.tensors) == {"a"}


def record(value: bytes, offset: int, headers: list[tuple[str, bytes]]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic="g", partition=0, offset=offset, timestamp=0, timestamp_type=0, key=b"w",
                          value=value, checksum=None, serialized_key_size=1, serialized_value_size=len(value),
                          headers=headers)


def test_intake_puts_a_chunked_gradient_back_together() -> None:
    spec = job()
    state = ServerState(spec)
    intake = Intake(spec, state.grad_shapes, state.state_shapes)
    g = {k: np.full(s, 0.5, np.float32) for k, s in state.grad_shapes.items()}
    value = codecs.pack(GradientMessage(job_id="j", worker_id="w", step=1, base_version=0, samples=4), g)
    chunks = split(value, 256)
    assert len(chunks) > 3
    got = [intake.take(record(c.data, 40 + i, c.headers)) for i, c in enumerate(chunks)]
    assert got[:-1] == [None] * (len(chunks) - 1) and intake.rejected == 0
    c = got[-1]
    assert isinstance(c, Contribution) and c.offset == 40  # the first chunk's: checkpoints stop there
    assert all(np.array_equal(c.tensors[k], v) for k, v in g.items())
    # a chunk lost on the way: the payload is rejected with the reason, the next one still works
    assert intake.take(record(chunks[0].data, 60, chunks[0].headers)) is None
    assert intake.chunks.pending_first_offset(0) == 60
    assert intake.take(record(chunks[2].data, 61, chunks[2].headers)) is None
    assert intake.rejected == 1 and "chunk out of order or count changed" in intake.reasons
    stop = codecs.pack(GradientMessage(job_id="j", worker_id="shard-0", step=7, base_version=0, samples=0,
                                       payload="stop"), {})
    assert intake.take(record(stop, 70, [])) == Stop(7)
