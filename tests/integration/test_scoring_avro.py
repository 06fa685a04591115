"""Avro prediction values on the real broker: registered in a real schema registry (Apicurio, from
infra/schema-registry.sh) and Confluent-framed, or bare with the schema written to a file; each
holds the passthrough fields, prediction, scores and model_version of its input record."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastavro import parse_schema, schemaless_reader

from aiaas.registry.store import Registry
from aiaas.schemas.sources import Source
from aiaas.streams.settings import Settings
from tests import examples
from tests.integration.test_scoring import FEATURES, expected, good, scoring
from tests.integration.test_sources import registry_url  # noqa: F401 (the real registry fixture)
from tests.scoredreads import make_topic, produce, read_committed

ROWS = 12


def check(values: list[dict[str, Any]], model: bytes) -> None:
    want = expected(model, [good(i) for i in range(ROWS)])
    by_id = {v["id"]: v for v in values}
    assert sorted(by_id) == sorted(f"r{i}" for i in range(ROWS))
    for i, logits in enumerate(want):
        v = by_id[f"r{i}"]
        np.testing.assert_allclose(v["scores"], logits, rtol=1e-5)
        assert v["prediction"] == int(np.argmax(logits)) and v["model_version"] == 1
        assert v["b_c"] == -i / 7  # a dotted passthrough path, named for Avro


async def test_avro_values_registered_and_framed_or_bare_with_a_schema_file(
    settings: Settings, registry_url: str, tmp_path: Path  # noqa: F811
) -> None:
    src = settings.topic("avro.in")
    model = examples.mlp([3, 8, 2], seed=6)
    await make_topic(settings, src, 2)
    async with Registry(settings) as reg:
        await reg.publish("av", model, stage="production")
    await produce(settings, src, [(f"k{i}".encode(), json.dumps(good(i)).encode()) for i in range(ROWS)],
                  partitions=2)
    source = Source(topic=src, format="json", features=FEATURES, passthrough=["id", "b.c"])

    framed = settings.topic("avro.framed")
    async with scoring(settings, source, model="av", to_topic=framed, output_format="avro",
                       output_registry_url=registry_url):
        recs = await read_committed(settings, framed, until=lambda n: n >= ROWS, timeout_s=30, parse=False)
    magic, schema_id = struct.unpack(">bI", recs[0].value[:5])
    assert magic == 0 and {r.value[:5] for r in recs} == {recs[0].value[:5]}
    async with httpx.AsyncClient(timeout=10) as http:  # the registry has it
        got = (await http.get(f"{registry_url}/schemas/ids/{schema_id}")).json()
    schema = parse_schema(json.loads(got["schema"]))
    check([schemaless_reader(io.BytesIO(r.value[5:]), schema) for r in recs], model)  # type: ignore[misc]

    bare, avsc = settings.topic("avro.bare"), tmp_path / "prediction.avsc"
    async with scoring(settings, source, model="av", to_topic=bare, output_format="avro", output_schema=avsc,
                       group_id=settings.topic("avro.bare.group")):
        recs = await read_committed(settings, bare, until=lambda n: n >= ROWS, timeout_s=30, parse=False)
    schema = parse_schema(json.loads(avsc.read_text()))
    check([schemaless_reader(io.BytesIO(r.value), schema) for r in recs], model)  # type: ignore[misc]
