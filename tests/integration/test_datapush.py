"""`push` on the real broker: each strategy's partitions hold what it promised; test split apart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from aiaas.cli.main import app
from aiaas.data.datapush import push
from aiaas.data.datasets import Dataset, load_dataset
from aiaas.data.partitioners import assign, row_hash
from aiaas.schemas.errors import AiaasError
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import DataBatch
from aiaas.streams import codecs
from aiaas.streams.admin import Admin
from aiaas.streams.consumer import Consumer
from aiaas.streams.record import Record
from aiaas.streams.settings import Settings

PARTS = 3


def _spec(strategy: str, source: str = "digits") -> JobSpec:
    out = 10 if source == "digits" else 1
    return JobSpec.model_validate({
        "job_id": f"push-{strategy}", "model": {"input_dim": 64 if source == "digits" else 10,
                                                "output_dim": out},
        "loss": "cross_entropy" if source == "digits" else "mse", "epochs": 1, "trainers": 2,
        "data": {"source": source, "strategy": strategy, "partitions": PARTS, "batch_rows": 50, "seed": 3},
    })


async def read_all(settings: Settings, topic: str, want: int) -> list[Record]:
    """Every batch record of ``topic`` (no group: all partitions), waiting on the count, not a sleep."""
    out: list[Record] = []
    async with Consumer(settings, [topic], None) as cons:
        async with asyncio.timeout(30):
            while len(out) < want:
                out += await cons.getmany(timeout_ms=200,
                                          decode=lambda r: codecs.unpack(r.value, DataBatch))
    return out


def _by_partition(records: list[Record]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Rows per partition, in batch order."""
    parts: dict[int, list[Record]] = {}
    for r in records:
        parts.setdefault(r.partition, []).append(r)
    out = {}
    for p, recs in parts.items():
        recs.sort(key=lambda r: r.offset)
        out[p] = (np.concatenate([r.message[1]["x"] for r in recs]),
                  np.concatenate([r.message[1]["y"] for r in recs]))
    return out


def _check_strategy(strategy: str, ds: Dataset, rows: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    expected = assign(strategy, ds.x_train, ds.y_train, PARTS, 3)
    for p, (x, y) in rows.items():
        np.testing.assert_array_equal(x, ds.x_train[expected == p])
        np.testing.assert_array_equal(y, ds.y_train[expected == p])
        if strategy == "stratified":
            assert set(y.tolist()) == set(range(10))
        if strategy == "label":  # each class on one partition only
            others = np.concatenate([yy for q, (_, yy) in rows.items() if q != p])
            assert not set(y.tolist()) & set(others.tolist())
        if strategy == "hash":
            assert all(row_hash(r) % PARTS == p for r in x)
    if strategy == "sequential":
        starts = [int(np.flatnonzero(expected == p)[0]) for p in range(PARTS)]
        ends = [int(np.flatnonzero(expected == p)[-1]) for p in range(PARTS)]
        assert starts[0] == 0 and all(ends[p] + 1 == starts[p + 1] for p in range(PARTS - 1))


@pytest.mark.parametrize("strategy", ["random", "sequential", "stratified", "label", "hash"])
async def test_push_digits_per_strategy(settings: Settings, admin: Admin, strategy: str) -> None:
    spec = _spec(strategy)
    ds = load_dataset(spec.data)
    report = await push(settings, spec, ds)
    assert report.train_rows == ds.train_rows and report.partitions == PARTS
    assert sum(report.rows_per_partition.values()) == ds.train_rows
    assert await admin.partitions(report.data_topic) == PARTS
    train = await read_all(settings, report.data_topic, sum(report.batches_per_partition.values()))
    assert all(r.message[0].split == "train" and r.message[0].strategy == strategy for r in train)
    assert all(r.message[0].rows <= 50 and r.message[1]["y"].dtype == np.int64 for r in train)
    rows = _by_partition(train)
    assert {p: len(y) for p, (_, y) in rows.items()} == report.rows_per_partition
    _check_strategy(strategy, ds, rows)
    test = await read_all(settings, report.test_topic, report.test_batches)
    assert all(r.message[0].split == "test" for r in test)
    np.testing.assert_array_equal(np.concatenate([r.message[1]["x"] for r in test]), ds.x_test)
    assert sum(len(y) for _, y in rows.values()) + report.test_rows == 1797  # disjoint, nothing lost


async def test_push_regression_and_refuse_a_second_push(settings: Settings) -> None:
    spec = _spec("stratified", source="diabetes")
    report = await push(settings, spec)  # loads the dataset itself
    assert report.task == "regression" and report.n_classes == 0 and report.test_rows > 0
    train = await read_all(settings, report.data_topic, sum(report.batches_per_partition.values()))
    assert {r.message[1]["y"].dtype for r in train} == {np.dtype(np.float32)}
    with pytest.raises(AiaasError) as err:
        await push(settings, spec)
    assert err.value.code == "conflict"


def test_cli_push_from_spec_with_override(infra: None, prefix: str, tmp_path: Path) -> None:
    """`aiaas data push --spec job.yaml --partitions 3` writes 3 partitions and prints the summary."""
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({
        "job_id": "cli", "model": {"input_dim": 64, "output_dim": 10}, "epochs": 1,
        "data": {"source": "digits", "strategy": "stratified", "partitions": 2},
    }))
    env = {"AIAAS_TOPIC_PREFIX": prefix, "COLUMNS": "200"}
    runner = CliRunner()
    result = runner.invoke(app, ["data", "push", "--spec", str(spec), "--partitions", "3"], env=env)
    assert result.exit_code == 0, result.output
    assert "10/10" in result.output and f"{prefix}train.cli.data" in result.output
    for line in ("0 │  479", "1 │  479", "2 │  479"):
        assert line in result.output
    again = runner.invoke(app, ["data", "push", "--spec", str(spec), "--partitions", "3"], env=env)
    assert again.exit_code == 1 and "already holds records" in again.output
    bad = runner.invoke(app, ["data", "push", "--job", "x", "--strategy", "zigzag"], env=env)
    assert bad.exit_code == 2 and "data.strategy" in bad.output
