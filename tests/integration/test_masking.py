"""Masking on the real broker (docs/security.md, "Masking"): a source declaring personal fields is
scored; their values (a unique marker) appear on no topic the test made (predictions, dead letters,
registry, anything else under its prefix, aborted transactions included), in no log line, in no
metric; hashed fields still join (the same value gives the same hash)."""

from __future__ import annotations

import base64
import json
import logging
import uuid

import pytest
from prometheus_client import REGISTRY, generate_latest

from aiaas.registry.store import Registry
from aiaas.schemas.masking import Masking
from aiaas.schemas.records import DeadLetter
from aiaas.schemas.sources import Source
from aiaas.streams.admin import Admin
from aiaas.streams.masking import Masker
from aiaas.streams.settings import Settings
from tests import examples
from tests.inferreads import letters_on
from tests.integration.test_scoring import scoring
from tests.scoredreads import Prediction, make_topic, produce, read_committed

KEY = "masking-test-key"


async def everything_under(settings: Settings, but: str) -> list[bytes]:
    """Every key, value and header of every record on every topic of this test's prefix but ``but``
    (the user's own input topic)."""
    async with Admin(settings) as admin:
        topics = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix) and t != but]
    assert len(topics) >= 4  # the output, its dead letters, the registry's models and artifacts
    seen: list[bytes] = []
    for topic in topics:
        for r in await read_committed(settings, topic, parse=False, isolation="read_uncommitted"):
            seen += [r.key or b"", r.value or b""] + [k.encode() + v for k, v in r.headers]
    return seen


async def test_personal_fields_reach_no_topic_log_or_metric(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # aiokafka's own DEBUG lines quote fetched bytes (docs/security.md)
    caplog.set_level(logging.DEBUG, logger="aiaas")
    monkeypatch.setenv("AIAAS_MASK_KEY", KEY)
    mark = f"pii-{uuid.uuid4().hex}"  # a value nothing else can contain
    src, out = settings.topic("people"), settings.topic("people.scored")
    await make_topic(settings, src, 1)
    async with Registry(settings) as reg:
        await reg.publish("m", examples.mlp([3, 8, 2], seed=3), stage="production")

    def person(i: int, **extra: object) -> bytes:
        return json.dumps({"id": f"e{i}", "a": i, "b": {"c": 1}, "d": 2, "email": f"{mark}-{i % 2}",
                           "name": f"{mark} Lee", **extra}).encode()

    values = [person(i) for i in range(6)] + [
        person(6, a=mark),  # a feature holding the marker: not a number
        person(7, b={}),  # b.c missing
        f'{{"id": "e8", "email": "{mark}", "a": '.encode()]  # not JSON
    records = [(f"{mark}-key-{i}".encode(), v) for i, v in enumerate(values)]
    await produce(settings, src, records, partitions=1)
    mask = Masking(drop=["name"], hash=["email"], record_key="hash")
    source = Source(topic=src, format="json", features=["a", "b.c", "d"], passthrough=["id", "email"],
                    mask=mask)
    async with scoring(settings, source, model="m", to_topic=out) as worker:
        preds: list[Prediction] = await read_committed(settings, out, until=lambda n: n >= 6, timeout_s=30)
        letters = await letters_on(settings, f"{out}.dlq", 3)
        assert worker.stats["scored"] == 6
    raw_input = await read_committed(settings, src, parse=False)
    assert len(raw_input) == len(values)  # the user's own topic keeps its records as written

    masker = Masker(mask, KEY.encode())
    assert [p.value["id"] for p in preds] == [f"e{i}" for i in range(6)]
    assert [p.value["email"] for p in preds] == [masker.digest(f"{mark}-{i % 2}") for i in range(6)]
    assert preds[0].value["email"] == preds[2].value["email"] != preds[1].value["email"]  # joins
    assert all("name" not in p.value for p in preds)
    assert [p.key for p in preds] == [masker.digest(f"{mark}-key-{i}").encode() for i in range(6)]
    by = {dl.source_offset: dl for dl in letters}
    assert isinstance(by[6], DeadLetter) and by[6].details["field"] == "a"
    assert json.loads(base64.b64decode(by[6].value_b64 or ""))["email"] == masker.digest(f"{mark}-0")
    assert by[8].value_b64 is None and "withheld" in by[8].details["value"]  # unreadable: not kept

    mine = [x for x in await everything_under(settings, src) if x]
    assert len(mine) > 20 and not [x for x in mine if mark.encode() in x]
    on_input = [x for x in (r.value for r in raw_input) if mark.encode() in (x or b"")]
    assert len(on_input) == len(values)  # the check above reads the same way and would see it
    assert "dead-letter" in caplog.text and mark not in caplog.text
    assert mark not in generate_latest(REGISTRY).decode()

