"""Declared sources on the real broker: JSON, CSV and Avro records produced to a topic, read back with
aiokafka and decoded by the compiled decoder (bad records rejected naming the field, the good ones
decoded in order); Confluent-framed Avro against a real schema registry (Apicurio, started by
infra/schema-registry.sh when down): register a schema, produce framed records, decode, and an
unknown schema id is a Rejection."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import fastavro
import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from aiaas.schemas.sources import Source
from aiaas.sources import Decoded, compile_source
from aiaas.streams.admin import Admin
from aiaas.streams.settings import Settings
from aiaas.streams.topics import TopicSpec

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "infra" / "schema-registry.sh"
EVENT = {"type": "record", "name": "Event", "namespace": "aiaas.test", "fields": [
    {"name": "id", "type": "string"},
    {"name": "user", "type": {"type": "record", "name": "User", "fields": [
        {"name": "age", "type": "double"}, {"name": "plan", "type": "string"}]}},
    {"name": "clicks", "type": ["null", "long"], "default": None}]}
FEATURES = ["user.age", {"path": "user.plan", "vocabulary": ["free", "pro"]},
            {"path": "clicks", "default": 0}]


async def roundtrip(settings: Settings, name: str, values: list[bytes]) -> list[bytes]:
    """Produce ``values`` to a fresh one-partition topic and read them back, in order."""
    topic = settings.topic(name)
    async with Admin(settings) as admin:
        await admin.ensure_topics([TopicSpec(name=topic, partitions=1)])
    producer = AIOKafkaProducer(**settings.producer_kwargs())
    await producer.start()
    try:
        acks = [await producer.send(topic, v, key=str(i).encode()) for i, v in enumerate(values)]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**settings.consumer_kwargs(None))
    await consumer.start()
    got: list[bytes] = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + 30
        while len(got) < len(values) and time.monotonic() < deadline:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                got += [r.value for r in records if r.value is not None]
    finally:
        await consumer.stop()
    assert len(got) == len(values)
    return got


def avro(schema: dict[str, Any], rec: dict[str, Any], prefix: bytes = b"") -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), rec)
    return prefix + buf.getvalue()


def event(i: int, **over: Any) -> dict[str, Any]:
    return {"id": f"e{i}", "user": {"age": 20.0 + i, "plan": "pro" if i % 2 else "free"}, "clicks": i, **over}


def rejected(d: Decoded) -> dict[int, tuple[str, str]]:
    return {r.index: (r.field, r.reason) for r in d.rejected}


async def test_json_topic_decoded(settings: Settings) -> None:
    good = [event(i) for i in range(20)]
    bad = [event(20, user={"plan": "pro"}), event(21, user={"age": "x", "plan": "free"}),
           event(22, user={"age": 1.0, "plan": "gold"})]
    records = [*good[:10], *bad, *good[10:]]
    values = await roundtrip(settings, "json", [json.dumps(r).encode() for r in records])
    spec = {"topic": "json", "features": FEATURES, "passthrough": ["id"], "key": "id"}
    d = compile_source(Source.model_validate(spec)).decode(values)
    assert d.keys == [r["id"] for r in good]
    np.testing.assert_array_equal(d.x[:, 0], [r["user"]["age"] for r in good])
    assert d.x[:, 1:3].argmax(axis=1).tolist() == [i % 2 for i in range(20)]
    assert rejected(d) == {10: ("user.age", "missing"), 11: ("user.age", "not a number (got str)"),
                           12: ("user.plan", "not in vocabulary")}


async def test_csv_topic_decoded(settings: Settings) -> None:
    lines = [f"e{i},{20 + i},{'pro' if i % 2 else 'free'},{i}".encode() for i in range(20)]
    values = await roundtrip(settings, "csv", [*lines[:5], b"e5,,pro,1", b"e6,1,pro", *lines[5:]])
    spec = {"topic": "csv", "format": "csv", "csv": {"columns": ["id", "age", "plan", "clicks"]},
            "features": ["age", {"path": "plan", "vocabulary": ["free", "pro"]}],
            "label": "clicks", "key": "id"}
    d = compile_source(Source.model_validate(spec)).decode(values)
    assert d.keys == [f"e{i}" for i in range(20)] and d.y is not None and d.y.tolist() == list(range(20))
    assert rejected(d) == {5: ("age", "missing"), 6: ("", "expected 4 columns, got 3")}


async def test_avro_file_topic_decoded(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "event.avsc").write_text(json.dumps(EVENT))
    values = await roundtrip(settings, "avro", [avro(EVENT, event(i, clicks=None if i == 3 else i))
                                                for i in range(10)] + [b"\x06abc"])
    spec = {"topic": "avro", "format": "avro", "avro": {"file": str(tmp_path / "event.avsc")},
            "features": FEATURES, "passthrough": ["id"]}
    d = compile_source(Source.model_validate(spec)).decode(values)
    assert d.ok.tolist() == list(range(10)) and d.passthrough[3] == {"id": "e3"}
    assert d.x[:, 3].tolist() == [0 if i == 3 else i for i in range(10)]  # null clicks -> the default
    assert list(rejected(d)) == [10] and not d.schema_ids


@pytest.fixture(scope="module")
def registry_url() -> str:
    """The real registry of infra/schema-registry.sh, started when down; skipped only when it cannot
    be installed here (no java, Maven Central unreachable: the script exits 3)."""
    run = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if run.returncode == 3:
        pytest.skip(f"no schema registry can be installed here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    return subprocess.run([str(SCRIPT), "url"], capture_output=True, text=True, check=True).stdout.strip()


def register(url: str, subject: str, schema: dict[str, Any]) -> int:
    resp = httpx.post(f"{url}/subjects/{subject}/versions", json={"schema": json.dumps(schema)},
                      headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}, timeout=30)
    resp.raise_for_status()
    return int(resp.json()["id"])


async def test_confluent_avro_against_a_real_registry(settings: Settings, registry_url: str) -> None:
    v1 = {**EVENT, "name": f"Event{settings.topic_prefix.strip('.')}"}  # a schema of this test alone
    v2 = {**v1, "fields": [*v1["fields"], {"name": "country", "type": "string", "default": "fr"}]}
    subject = f"{settings.topic('cf')}-value"
    id1, id2 = register(registry_url, subject, v1), register(registry_url, subject, v2)
    assert id1 != id2
    unknown = max(id1, id2) + 100_000

    def framed(schema_id: int) -> bytes:
        return b"\x00" + schema_id.to_bytes(4, "big")

    values = await roundtrip(settings, "cf", [
        avro(v1, event(0), framed(id1)), avro(v2, {**event(1), "country": "it"}, framed(id2)),
        avro(v1, event(2), framed(unknown)), avro(v1, event(3)), avro(v1, event(4), framed(id1))])
    spec = {"topic": "cf", "format": "avro", "avro": {"registry_url": registry_url}, "features": FEATURES,
            "passthrough": ["id"]}
    dec = compile_source(Source.model_validate(spec))
    d = dec.decode(values)
    assert d.ok.tolist() == [0, 1, 4] and [p["id"] for p in d.passthrough] == ["e0", "e1", "e4"]
    np.testing.assert_array_equal(d.x[:, 0], [20, 21, 24])
    assert d.schema_ids == {id1, id2}  # lineage: the writer schemas seen
    assert rejected(d) == {2: ("", f"unknown schema id {unknown}"),
                           3: ("", "not Confluent-framed Avro (magic byte 0 + schema id)")}
    again = dec.decode(values[:2])  # cached by id: no registry round trip needed
    assert again.ok.tolist() == [0, 1]
