"""Model registry on the real broker: publish, versions, stages, rollback, canary, watch, integrity."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from pathlib import Path

import pytest

from aiaas.registry.store import Registry
from aiaas.schemas.errors import IntegrityError, InvalidMessage, NotFound
from aiaas.schemas.registry import Lineage
from aiaas.streams.lifecycle import cancel
from aiaas.streams.settings import Settings
from tests import examples
from tests.infra import ROOT


@pytest.fixture(scope="module")
def small_models() -> tuple[bytes, bytes]:
    return examples.mlp([8, 16, 3], seed=1), examples.mlp([8, 16, 3], seed=2)


async def test_publish_list_get_load(settings: Settings, small_models: tuple[bytes, bytes]) -> None:
    a, b = small_models
    async with Registry(settings) as reg:
        v1 = await reg.publish("m", a, lineage=Lineage(job_id="j1", parameter_version=7))
        v2 = await reg.publish("m", b)
        assert (v1.version, v2.version) == (1, 2)
        assert v1.inputs[0].name == "input" and v1.inputs[0].shape == [None, 8]
        assert v1.outputs[0].shape == [None, 3] and v1.stage == "staging"
        assert v1.chunks == 1 and v1.artifact_offset == 0
        again = await reg.publish("m", a)  # same bytes: same version, nothing new
        assert again.version == 1
        assert await reg.load_bytes(v1) == a and await reg.load_bytes(v2) == b
    async with Registry(settings) as other:  # a fresh reader sees the same state
        listed = await other.list("m")
        assert [mv.version for mv in listed] == [1, 2]
        assert listed[0].lineage.job_id == "j1" and listed[0].lineage.parameter_version == 7
        assert (await other.get("m")).version == 2  # no production yet: the latest
        with pytest.raises(NotFound):
            await other.get("nope")
        with pytest.raises(NotFound):
            await other.get("m", version=9)


async def test_big_model_is_chunked_and_sha_checked(settings: Settings) -> None:
    s = settings.model_copy(update={"chunk_bytes": 64 * 1024})
    data = examples.mlp([64, 256, 256, 10])
    async with Registry(s) as reg:
        await reg.publish("other", examples.mlp([4, 4]))
        mv = await reg.publish("big", data)
        assert mv.chunks == -(-len(data) // (64 * 1024)) and mv.chunks > 4
        assert await reg.load_bytes(mv) == data
        with pytest.raises(IntegrityError):
            await reg.load_bytes(mv.model_copy(update={"sha256": "0" * 64}))
        with pytest.raises(IntegrityError):
            await reg.load_bytes(mv.model_copy(update={"chunks": mv.chunks + 1, "version": 99}))


async def test_promote_rollback_canary_and_watch(
    settings: Settings, small_models: tuple[bytes, bytes]
) -> None:
    a, b = small_models
    async with Registry(settings) as reg:
        seen: list[tuple[int, str]] = []
        canary_ended = asyncio.Event()

        async def watch() -> None:
            async for mv in reg.watch("m"):
                seen.append((mv.version, mv.stage))
                if seen[-1] == (3, "staging") and (3, "canary") in seen:
                    canary_ended.set()

        watcher = asyncio.create_task(watch())
        await reg.publish("m", a, stage="production")
        await reg.publish("m", b)
        v3 = await reg.publish("m", examples.mlp([8, 4, 3], seed=3))
        assert (await reg.get("m", stage="production")).version == 1
        await reg.promote("m", 2)
        await reg.promote("m", 3)
        stages = {mv.version: mv.stage for mv in await reg.list("m")}
        assert stages == {1: "archived", 2: "archived", 3: "production"}
        back = await reg.rollback("m")
        assert back.version == 2 and (await reg.get("m")).version == 2
        assert (await reg.rollback("m")).version == 1
        with pytest.raises(NotFound):
            await reg.rollback("m")
        canary = await reg.set_canary("m", v3.version, 0.2)
        assert canary.stage == "canary" and canary.canary_weight == 0.2
        assert (await reg.get("m", stage="canary")).version == 3
        await reg.set_canary("m", 3, 0.0)
        with pytest.raises(NotFound):
            await reg.get("m", stage="canary")
        async with asyncio.timeout(10):
            await canary_ended.wait()
        await cancel(watcher, quiet=True)
        assert (1, "production") in seen and (3, "production") in seen and (3, "canary") in seen


async def test_artifact_dir_and_bad_onnx(settings: Settings, tmp_path: Path) -> None:
    async with Registry(settings, artifact_dir=tmp_path) as reg:
        data = examples.mlp([4, 2])
        mv = await reg.publish("f", data)
        assert mv.uri is not None and mv.uri.startswith("file://") and mv.chunks == 0
        assert await reg.load_bytes(mv) == data
        with pytest.raises(InvalidMessage):
            await reg.publish("f", b"not an onnx model at all")


def test_models_cli_push_list_promote_rollback(settings: Settings, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``aiaas models ...`` end to end (each command runs its own uvloop, like a shell would)."""
    from typer.testing import CliRunner

    from aiaas.cli.main import app

    monkeypatch.setenv("AIAAS_TOPIC_PREFIX", settings.topic_prefix)
    runner = CliRunner()
    for seed in (1, 2):
        path = tmp_path / f"m{seed}.onnx"
        path.write_bytes(examples.mlp([4, 3], seed=seed))
        pushed = runner.invoke(app, ["models", "push", str(path), "--name", "cli", "--job-id", "j9"])
        assert pushed.exit_code == 0, pushed.output
        assert f'"version": {seed}' in pushed.output
    assert runner.invoke(app, ["models", "promote", "cli", "1"]).exit_code == 0
    assert runner.invoke(app, ["models", "promote", "cli", "2"]).exit_code == 0
    back = runner.invoke(app, ["models", "rollback", "cli"])
    assert back.exit_code == 0 and '"version": 1' in back.output and '"stage": "production"' in back.output
    listed = runner.invoke(app, ["models", "list", "cli"])
    assert listed.exit_code == 0 and "production" in listed.output and "archived" in listed.output
    missing = runner.invoke(app, ["models", "promote", "cli", "7"])
    assert missing.exit_code == 1 and "unknown model version" in missing.output
    assert runner.invoke(app, ["worker", "inference", "--help"]).exit_code == 0


async def test_two_registries_publishing_at_once_get_distinct_numbers(settings: Settings) -> None:
    """Two Registry instances (each its own producer and reader, as in two processes) publish the
    same name concurrently: every version gets its own number, 1..n without a gap."""
    models = [examples.mlp([4, 3], seed=100 + i) for i in range(16)]
    async with Registry(settings) as one, Registry(settings) as two:
        got = await asyncio.gather(*(reg.publish("race", m) for reg, m in
                                     zip(itertools.cycle((one, two)), models, strict=False)))
        numbers = sorted(mv.version for mv in got)
        assert numbers == list(range(1, len(models) + 1))
        listed = {mv.version: mv.sha256 for mv in await one.list("race")}
        assert listed == {mv.version: mv.sha256 for mv in got}


async def test_processes_publishing_at_once_get_distinct_contiguous_numbers(settings: Settings) -> None:
    """Three processes publish 12 versions of one model each, started together: 36 distinct numbers
    1..36, each naming the bytes its publisher sent."""
    procs, count = 3, 12
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    children = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.registrypublisher", "crowd", str(1000 * (i + 1)), str(count),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
        for i in range(procs)]
    try:
        async with asyncio.timeout(120):
            for child in children:
                assert child.stdout is not None
                assert (await child.stdout.readline()).strip() == b"ready"
            for child in children:  # the barrier: every publisher has started its registry
                assert child.stdin is not None
                child.stdin.write(b"go\n")
                await child.stdin.drain()
            outs = [json.loads((await child.communicate())[0]) for child in children]
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert [child.returncode for child in children] == [0] * procs
    pairs = [tuple(p) for out in outs for p in out]
    assert sorted(v for v, _ in pairs) == list(range(1, procs * count + 1))
    assert all(len(out) == count for out in outs)
    async with Registry(settings) as reg:
        listed = {mv.version: mv.sha256 for mv in await reg.list("crowd")}
    assert listed == dict(pairs)
