"""The CLI a newcomer uses on the real broker: models pull, unknown names, --json listings, topics.

Each command runs as its own process (``python -m aiaas.cli.main``), as a shell would run it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path

import onnx

from aiaas.agents.processes import child_env
from aiaas.registry.store import Registry
from aiaas.streams.admin import Admin
from aiaas.streams.settings import Settings
from tests import examples
from tests.infra import ROOT
from tests.spawn import run_to_end

BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
LONG = "a-model-name-long-enough-that-an-80-column-table-cuts-it"  # 56 of at most 64


async def aiaas(settings: Settings, *args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    rc, out, err = await run_to_end(
        sys.executable, "-m", "aiaas.cli.main", *args, timeout_s=timeout_s, cwd=ROOT,
        env=child_env({"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_DEBUG": "",
                       "AIAAS_LOG_LEVEL": "WARNING"}))
    return rc, out.decode(), err.decode()


async def _publish(settings: Settings, name: str, seeds: tuple[int, ...]) -> list[str]:
    async with Registry(settings) as reg:
        return [(await reg.publish(name, examples.mlp([4, 6, 2], seed=s))).sha256 for s in seeds]


async def test_pull_writes_the_registered_onnx_file(settings: Settings, tmp_path: Path) -> None:
    sha1, sha2 = await _publish(settings, "digits", (1, 2))
    rc, out, err = await aiaas(settings, "models", "pull", "digits:1", "-o", str(tmp_path / "v1.onnx"))
    assert rc == 0, err
    data = (tmp_path / "v1.onnx").read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha1 and f"sha256 {sha1}" in out
    onnx.checker.check_model(onnx.load_from_string(data))
    rc, out, err = await aiaas(settings, "models", "pull", "digits", "-o", str(tmp_path / "latest.onnx"))
    assert rc == 0, err  # no production version: the latest
    assert hashlib.sha256((tmp_path / "latest.onnx").read_bytes()).hexdigest() == sha2 and "v2" in out
    rc, _, err = await aiaas(settings, "models", "pull", "digits:7", "-o", str(tmp_path / "x.onnx"))
    assert rc == 1 and err.startswith("error: unknown model version") and not (tmp_path / "x.onnx").exists()


async def test_unknown_model_names_are_errors_that_list_the_known_ones(settings: Settings,
                                                                       tmp_path: Path) -> None:
    await _publish(settings, "digits", (1,))
    checks = [("models", "list", "digitz"), ("models", "pull", "digitz", "-o", str(tmp_path / "m.onnx")),
              ("worker", "inference", "--model", "digitz"), ("infer", "digitz", "--data", BODY)]
    results = await asyncio.gather(*(aiaas(settings, *argv) for argv in checks))
    for argv, (rc, out, err) in zip(checks, results, strict=True):
        assert rc == 1, (argv, out, err)
        last = err.strip().splitlines()[-1]
        assert last == "error: no such model (model=digitz, known=digits)", (argv, err)
        assert out == ""


async def test_worker_with_wait_waits_for_an_unknown_model(settings: Settings) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiaas.cli.main", "worker", "inference", "--model", "later", "--wait",
        cwd=ROOT, env=child_env({"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_LOG_LEVEL": "INFO"}),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(60):
            while b"waiting for a version" not in (line := await proc.stderr.readline()):
                assert line, "the worker exited instead of waiting"
        assert proc.returncode is None
    finally:
        proc.kill()
        await proc.wait()


async def test_listings_print_json_and_full_names_when_piped(settings: Settings) -> None:
    await _publish(settings, LONG, (3,))
    rc, out, err = await aiaas(settings, "models", "list", "--json")
    assert rc == 0, err
    (row,) = json.loads(out)
    assert row["name"] == LONG and row["version"] == 1 and row["stage"] == "staging"
    rc, out, err = await aiaas(settings, "models", "list")
    assert rc == 0 and LONG in out, out  # stdout is a pipe here: no 80-column cut
    rc, out, err = await aiaas(settings, "models", "list", LONG, "--json")
    assert rc == 0 and json.loads(out)[0]["sha256"] == row["sha256"]


async def test_topics_create_and_list(settings: Settings, admin: Admin) -> None:
    name = f"{settings.topic_prefix}replies.myapp"
    rc, out, err = await aiaas(settings, "topics", "create", name, "--partitions", "3")
    assert (rc, out.strip()) == (0, f"created {name}"), err
    assert await admin.partitions(name) == 3
    rc, out, _ = await aiaas(settings, "topics", "create", name)
    assert (rc, out.strip()) == (0, f"{name} exists")
    rc, out, err = await aiaas(settings, "topics", "list", "--json")
    assert rc == 0, err
    assert {"topic": name, "partitions": 3} in json.loads(out)
    rc, _, err = await aiaas(settings, "topics", "create", "bad name!")
    assert rc == 2 and "invalid name" in err


async def test_keys_list_shows_ids_not_keys(settings: Settings) -> None:
    rc, out, err = await aiaas(settings, "keys", "create", "--tenant", "acme")
    assert rc == 0, err
    made = json.loads(out)
    rc, out, err = await aiaas(settings, "keys", "list", "--json")
    assert rc == 0, err
    (row,) = json.loads(out)
    assert (row["key_id"], row["tenant"]) == (made["key_id"], "acme") and made["api_key"] not in out
    assert (await aiaas(settings, "keys", "revoke", made["key_id"]))[0] == 0
    rc, out, _ = await aiaas(settings, "keys", "list", "--tenant", "acme", "--json")
    assert rc == 0 and json.loads(out) == []
