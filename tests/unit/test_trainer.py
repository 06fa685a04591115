"""The trainer's logic without a broker: owned data, epochs, ring neighbours, batch checks, torch side."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from aiaas.agents.trainer.app import decode_batch
from aiaas.agents.trainer.compute import LocalModel
from aiaas.agents.trainer.data import LocalData
from aiaas.agents.trainer.ring import ring_target
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import DataBatch
from aiaas.streams import codecs


def job(**over: Any) -> JobSpec:
    base: dict[str, Any] = {"job_id": "j", "model": {"input_dim": 4, "hidden": [8], "output_dim": 3},
                            "steps": 10, "batch_size": 5}
    return JobSpec.model_validate(base | over)


def rows(n: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(4, axis=1)
    return x, np.arange(start, start + n) % 3


def test_local_data_deals_every_row_once_per_epoch() -> None:
    data = LocalData(batch_size=4, seed=1)
    data.assign([0, 1])
    data.add(0, 0, *rows(6))
    data.add(1, 0, *rows(4, start=100))
    seen: list[float] = []
    while data.epochs_done == 0:
        batch = data.next_batch()
        assert batch is not None
        seen += list(batch[0][:, 0])
        if len(seen) >= 10:
            break
    assert sorted(seen) == [*range(6), *range(100, 104)]


def test_local_data_redelivery_replaces_and_revoked_partitions_go() -> None:
    data = LocalData(batch_size=100)
    data.assign([0, 1])
    data.add(0, 7, *rows(3))
    data.add(0, 7, *rows(3))  # re-delivered after a rebalance: same offset, not twice
    data.add(1, 0, *rows(2, start=50))
    assert data.rows == 5
    data.assign([1])
    assert data.rows == 2 and data.partitions == {1}
    data.add(0, 8, *rows(3))  # late record of a partition no longer owned
    assert data.rows == 2
    batch = data.next_batch()
    assert batch is not None and sorted(batch[0][:, 0]) == [50, 51]


def test_local_data_without_rows_has_no_batch() -> None:
    assert LocalData(batch_size=4).next_batch() is None


@pytest.mark.parametrize(("owned", "partitions", "target"), [
    ([0], 2, 1), ([1], 2, 0), ([0, 1], 2, None), ([2], 4, 3), ([3], 4, 0), ([0, 2], 4, 3), ([], 2, None)])
def test_ring_target_is_the_next_partition_not_owned(
    owned: list[int], partitions: int, target: int | None
) -> None:
    assert ring_target(owned, partitions) == target


def test_decode_batch_checks_job_and_shapes() -> None:
    spec = job()
    head = DataBatch(job_id="j", batch_index=0, rows=2)
    x, y = np.zeros((2, 4), np.float32), np.array([0, 1])
    gx, gy = decode_batch(codecs.pack(head, {"x": x, "y": y}), spec)
    assert gx.shape == (2, 4) and list(gy) == [0, 1]
    with pytest.raises(InvalidMessage):
        decode_batch(codecs.pack(head, {"x": np.zeros((2, 5), np.float32), "y": y}), spec)
    with pytest.raises(InvalidMessage):
        decode_batch(codecs.pack(head.model_copy(update={"job_id": "k"}), {"x": x, "y": y}), spec)
    with pytest.raises(InvalidMessage):
        decode_batch(codecs.pack(head, {"x": np.full((2, 4), np.nan, np.float32), "y": y}), spec)
    with pytest.raises(InvalidMessage):
        decode_batch(b"junk", spec)


def test_local_model_gradient_local_steps_delta_and_gossip() -> None:
    spec = job(optimizer={"name": "sgd", "lr": 0.1})
    m = LocalModel(spec)
    m.warm_up()
    batch = rows(5)
    grads, loss = m.gradient(batch)
    assert loss > 0 and set(grads) == {n for n, _ in m.model.named_parameters()}
    base = m.state()
    m.local_steps([batch, batch])
    delta = m.delta_from(base)
    assert any(np.abs(d).max() > 0 for d in delta.values())
    other = {k: v + 1.0 for k, v in m.state().items()}
    mine = m.state()
    m.average_with(other)
    for k in mine:
        np.testing.assert_allclose(m.state()[k], mine[k] + 0.5, rtol=1e-5)
    with pytest.raises(InvalidMessage):
        m.average_with({k: np.full_like(v, np.nan) for k, v in mine.items()})
