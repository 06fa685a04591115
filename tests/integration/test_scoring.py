"""Stream scoring on the real broker: a user's JSON topic scored into another, one prediction per
input record with the key, source headers and passthrough fields; malformed records dead-lettered
naming the field while the next good record is scored; a promoted version takes over mid-stream;
the bridge's status page shows a scoring group's progress and lag."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import uvicorn
import yaml

from aiaas.agents.bridge.app import create_app
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.agents.inference.scoring import ScoringWorker
from aiaas.agents.inference.scoring_settings import ScoringSettings
from aiaas.registry.store import Registry
from aiaas.schemas.records import DeadLetter
from aiaas.schemas.sources import Source
from aiaas.sources import compile_source
from aiaas.streams import metrics as m
from aiaas.streams.lifecycle import cancel
from aiaas.streams.settings import Settings
from tests import examples
from tests.inferreads import letters_on
from tests.integration.test_cli_models import aiaas
from tests.scoredreads import Prediction, make_topic, produce, read_committed

FEATURES = ["a", "b.c", "d"]


def good(i: int) -> dict[str, Any]:
    return {"id": f"r{i}", "a": i / 10, "b": {"c": -i / 7}, "d": 1.5}


@asynccontextmanager
async def scoring(settings: Settings, source: Source, **cfg: Any) -> AsyncIterator[ScoringWorker]:
    """One scoring worker in this process, stopped (gracefully) at the end."""
    conf = ScoringSettings(from_topic=source.topic, **cfg)
    worker = ScoringWorker(settings, conf, source, compile_source(source, labels=False))
    await worker.start()
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        await cancel(task)
        await worker.stop()


def expected(model: bytes, rows: list[dict[str, Any]]) -> np.ndarray:
    x = np.array([[r["a"], r["b"]["c"], r["d"]] for r in rows], np.float32)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("exactly_once", [True, False], ids=["exactly-once", "at-least-once"])
async def test_json_scored_and_malformed_dead_lettered(settings: Settings, exactly_once: bool) -> None:
    src, out = settings.topic("events"), settings.topic("scored")
    model = examples.mlp([3, 8, 2], seed=4)
    await make_topic(settings, src, 2)
    async with Registry(settings) as reg:
        await reg.publish("m", model, stage="production")
    bad = {5: b'{"id": "r5", "a": 1, "d": 2}',  # b.c missing
           9: b'{"id": "r9", "a": "x", "b": {"c": 1}, "d": 2}',  # a is not a number
           12: b"not json"}
    values = [bad.get(i, json.dumps(good(i)).encode()) for i in range(20)]
    await produce(settings, src, [(f"k{i}".encode(), v) for i, v in enumerate(values)], partitions=1)
    source = Source(topic=src, format="json", features=FEATURES, passthrough=["id"])
    async with scoring(settings, source, model="m", to_topic=out, exactly_once=exactly_once) as worker:
        preds: list[Prediction] = await read_committed(settings, out, until=lambda n: n >= 17, timeout_s=30)
        letters = await letters_on(settings, f"{out}.dlq", 3)
        assert worker.stats["scored"] == 17 and worker.stats["dead_lettered"] == 3
        counted = {o: m.sample("aiaas_scoring_records_total", {"model": "m", "topic": src, "outcome": o})
                   for o in ("scored", "dead_lettered")}
        assert counted == {"scored": 17, "dead_lettered": 3}
        assert m.sample("aiaas_scoring_lag", {"model": "m", "topic": src}) == 0
    assert [p.source[2] for p in preds] == [i for i in range(20) if i not in bad]  # in order, once each
    want = expected(model, [good(i) for i in range(20) if i not in bad])
    for p, logits in zip(preds, want, strict=True):
        i = p.source[2]
        assert p.key == f"k{i}".encode() and p.source[:2] == (src, 0) and p.partition == 0
        assert p.value["id"] == f"r{i}" and p.value["model_version"] == 1
        np.testing.assert_allclose(p.value["scores"], logits, rtol=1e-5)
        assert p.value["prediction"] == int(np.argmax(logits))
    by_offset = {dl.source_offset: dl for dl in letters}
    assert sorted(by_offset) == [5, 9, 12]
    assert isinstance(by_offset[5], DeadLetter) and by_offset[5].details["field"] == "b.c"
    assert "'b.c'" in by_offset[5].reason and "missing" in by_offset[5].reason
    assert by_offset[9].details["field"] == "a" and "number" in by_offset[9].reason
    assert by_offset[12].code == "invalid_message" and by_offset[12].value_b64  # the bytes are kept


async def test_promoted_version_takes_over_without_a_gap(settings: Settings) -> None:
    src, out = settings.topic("stream"), settings.topic("stream.scored")
    await make_topic(settings, src, 2)
    v1, v2 = examples.mlp([3, 8, 2], seed=1), examples.mlp([3, 8, 2], seed=2)
    source = Source(topic=src, format="json", features=FEATURES)
    rows = [(f"k{i}".encode(), json.dumps(good(i)).encode()) for i in range(3000)]
    async with Registry(settings) as reg:
        await reg.publish("p", v1, stage="production")
        await reg.publish("p", v2)
        await produce(settings, src, rows[:1500], partitions=2)
        async with scoring(settings, source, model="p", stage="production", to_topic=out,
                           max_batch=200) as worker:
            await read_committed(settings, out, until=lambda n: n >= 1500, timeout_s=30)
            await reg.promote("p", 2)
            async with asyncio.timeout(20):
                while worker.sessions.default is None or worker.sessions.default.version != 2:
                    worker.sessions.changed.clear()
                    await worker.sessions.changed.wait()
            await produce(settings, src, rows[1500:], partitions=2)
            preds: list[Prediction] = await read_committed(settings, out, until=lambda n: n >= 3000,
                                                           timeout_s=30)
    assert len(preds) == 3000
    assert len({p.source for p in preds}) == 3000  # every input record once
    versions = {p.source: p.value["model_version"] for p in preds}
    assert {versions[(src, i % 2, i // 2)] for i in range(1500)} == {1}
    assert {versions[(src, i % 2, i // 2)] for i in range(1500, 3000)} == {2}


@asynccontextmanager
async def bridge(settings: Settings) -> AsyncIterator[str]:
    """The real bridge app (auth off, loopback) on a free port; its base URL."""
    app = create_app(settings, BridgeSettings(auth=False, instance=f"sc{uuid.uuid4().hex[:6]}"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(60):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)  # polling the started flag (a condition), not timing
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


async def test_status_page_shows_scoring_progress_and_lag(settings: Settings, redis_client: object) -> None:
    src, out = settings.topic("clicks"), settings.topic("clicks.scored")
    await make_topic(settings, src, 2)
    async with Registry(settings) as reg:
        await reg.publish("s", examples.mlp([3, 8, 2], seed=5), stage="production")
    await produce(settings, src, [(b"k", json.dumps(good(i)).encode()) for i in range(300)], partitions=2)
    source = Source(topic=src, format="json", features=FEATURES)
    async with scoring(settings, source, model="s", to_topic=out) as worker, bridge(settings) as url, \
            httpx.AsyncClient(base_url=url) as http:
        await read_committed(settings, out, until=lambda n: n >= 300, timeout_s=30, parse=False)
        rows = (await http.get("/ui/api/status")).json()["scoring"]
        assert rows == [{"group": worker.group, "model": "s", "topics": [src], "scored": 300, "lag": 0}]
        page = (await http.get("/ui")).text
        assert "Stream scoring" in page
    await produce(settings, src, [(b"k", json.dumps(good(i)).encode()) for i in range(40)], partitions=2)
    async with bridge(settings) as url, httpx.AsyncClient(base_url=url) as http:  # no worker: lag grows
        rows = (await http.get("/ui/api/status")).json()["scoring"]
        assert rows[0]["lag"] == 40 and rows[0]["scored"] == 300


async def test_aiaas_score_refuses_an_unknown_model_and_a_misfit_one_in_one_line(
    settings: Settings, tmp_path: Path
) -> None:
    src = settings.topic("misfit")
    await make_topic(settings, src, 1)
    spec = tmp_path / "source.yaml"
    spec.write_text(yaml.safe_dump({"source": {"topic": src, "format": "json", "features": FEATURES}}))
    async with Registry(settings) as reg:
        await reg.publish("four", examples.mlp([4, 8, 2]), stage="production")  # 4 inputs; the source has 3
    args = ("score", "--to", settings.topic("misfit.out"), "--source", str(spec))
    rc, _, err = await aiaas(settings, *args, "--model", "nope")
    assert rc == 1 and "no such model" in err and len(err.strip().splitlines()) == 1, err
    rc, _, err = await aiaas(settings, *args, "--model", "four")
    assert rc == 1 and "input width" in err and "source_width=3" in err and "model_width=4" in err, err
