"""The tools work from any directory after a plain install, and write nothing where they run.

``aiaas infra status|up|down`` here is the command of a fresh venv holding the base install of a
wheel built from this tree (not this checkout): its scripts come from the installed package, its
state goes to ``AIAAS_STATE_DIR``, and the directory it runs in stays empty.

- ``status`` and ``up`` on the shared broker and Redis (their state dir is the clone's, as the
  Makefile passes it) find both running; ``up`` is a no-op;
- an up/status/up/down/status cycle on a broker and Redis of the test's own, on free ports in a
  temporary state dir (the jars are the clone's, ``AIAAS_KAFKA_LIBS``, so nothing is downloaded);
- a training job run from an empty directory leaves nothing there (faust's table folder was
  ``<job>.trainers-data`` in the current directory);
- ``aiaas serve`` run from an empty directory with its local Kafka and Redis down starts them with
  the shipped scripts in its state dir, serves, and leaves the directory empty.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from aiaas.agents.launcher import LocalJob
from aiaas.agents.processes import child_env, free_port
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.admin import wait_for_broker
from aiaas.streams.settings import Settings
from tests import examples
from tests.infra import ROOT, TEST_BROKER_JVM, distinct_free_ports
from tests.integration.test_bridge_serve import _lines_until_key
from tests.spawn import run_to_end

pytestmark = pytest.mark.timeout(240)
CLEAN = ("PYTHONPATH", "VIRTUAL_ENV")  # the installed command must not see this checkout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the base install of aiaas (sdist, then a wheel from it, as from an index)."""
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH (make setup installs it)"
    tmp = tmp_path_factory.mktemp("installed")
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}

    def run(*argv: str) -> None:
        done = subprocess.run([uv, *argv], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"uv {argv[0]} failed:\n{done.stderr[-3000:]}"

    run("build", "--quiet", "--out-dir", str(tmp / "dist"), str(ROOT))
    wheel = next((tmp / "dist").glob("aiaas-*.whl"))
    run("venv", "--quiet", "--python", sys.executable, str(tmp / "venv"))
    run("pip", "install", "--quiet", "--python", str(tmp / "venv" / "bin" / "python"),
        f"aiaas @ {wheel.as_uri()}")
    return tmp / "venv"


async def _aiaas(venv: Path, *args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if k not in CLEAN}
    code, out, _ = await run_to_end(str(venv / "bin" / "aiaas"), *args, timeout_s=180, merge_stderr=True,
                                    cwd=str(cwd), env={**clean, **env})
    return code, out.decode(errors="replace")


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


async def test_the_installed_infra_commands_find_the_shared_broker_from_anywhere(
    installed: Path, infra: None, tmp_path: Path
) -> None:
    where = "import aiaas.agents.processes as p; print(p.INFRA.resolve())"
    code, script_dir, _ = await run_to_end(
        str(installed / "bin" / "python"), "-c", where,
        timeout_s=60, cwd=str(tmp_path), env={k: v for k, v in os.environ.items() if k not in CLEAN})
    assert code == 0 and "site-packages" in script_dir.decode() and str(ROOT) not in script_dir.decode()
    shared = {"AIAAS_STATE_DIR": os.environ["AIAAS_STATE_DIR"]}  # the clone's .run (tests/conftest.py)
    code, status = await _aiaas(installed, "infra", "status", cwd=tmp_path, env=shared)
    assert code == 0 and "kafka: running" in status and "redis: running" in status, status
    code, up = await _aiaas(installed, "infra", "up", cwd=tmp_path, env=shared)
    assert code == 0, up
    assert "kafka already running" in up and "redis already running" in up, up
    assert _tree(tmp_path) == []  # nothing written where the command ran


@pytest.fixture
def own_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Ports and a state dir of this test's own; whatever it started is stopped by pid at the end."""
    state = tmp_path / "state"
    kafka, controller, sasl, redis_port = map(str, distinct_free_ports(4))
    env = {
        "AIAAS_STATE_DIR": str(state), "AIAAS_KAFKA_PORT": kafka, "AIAAS_KAFKA_CONTROLLER_PORT": controller,
        "AIAAS_KAFKA_SASL_PORT": sasl, "AIAAS_REDIS_PORT": redis_port,
        "AIAAS_KAFKA_HEAP": TEST_BROKER_JVM,
        "AIAAS_EXTERNAL_INFRA": "0",  # up.sh starts this test's own, even when the suite runs with it set
        "AIAAS_KAFKA_LIBS": os.environ["AIAAS_KAFKA_LIBS"],  # the clone's jars: nothing to download
        # a fresh cluster id from here saves start.sh one JVM start (StorageTool random-uuid)
        "AIAAS_KAFKA_CLUSTER_ID": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(),
    }
    try:
        yield env
    finally:
        for name in ("kafka.pid", "redis.pid"):
            pid_file = state / name
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)


async def test_up_down_cycle_from_an_installed_package_on_own_ports(
    installed: Path, own_env: dict[str, str], tmp_path: Path
) -> None:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    state = Path(own_env["AIAAS_STATE_DIR"])
    package = next((installed / "lib").glob("python*/site-packages/aiaas"))
    shipped = _tree(package)
    code, out = await _aiaas(installed, "infra", "up", cwd=cwd, env=own_env)
    assert code == 0, out
    kafka, redis_port = own_env["AIAAS_KAFKA_PORT"], own_env["AIAAS_REDIS_PORT"]
    assert f"kafka up on 127.0.0.1:{kafka}" in out and f"redis up on 127.0.0.1:{redis_port}" in out, out
    await wait_for_broker(Settings(bootstrap_servers=f"127.0.0.1:{kafka}"), timeout_s=30)
    client = aioredis.from_url(f"redis://127.0.0.1:{redis_port}/0")
    try:
        assert await client.ping()
    finally:
        await client.aclose()
    assert (state / "kafka.pid").is_file() and (state / "kafka" / "meta.properties").is_file()
    assert (state / "redis.pid").is_file() and (state / "kafka.log").is_file()
    code, out = await _aiaas(installed, "infra", "status", cwd=cwd, env=own_env)
    assert code == 0 and f"state {state}" in out and "redis: running" in out, out
    code, out = await _aiaas(installed, "infra", "up", cwd=cwd, env=own_env)  # idempotent
    assert code == 0 and "kafka already running" in out and "redis already running" in out, out
    code, out = await _aiaas(installed, "infra", "down", cwd=cwd, env=own_env)
    assert code == 0 and "kafka stopped" in out and "redis stopped" in out, out
    code, out = await _aiaas(installed, "infra", "status", cwd=cwd, env=own_env)
    assert code == 0 and "kafka: stopped" in out and "redis: stopped" in out, out
    assert _tree(cwd) == []
    assert _tree(package) == shipped  # nothing written into the installed package


async def test_a_training_job_writes_nothing_into_its_directory(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    state = tmp_path / "state"
    own = settings.model_copy(update={"state_dir": state})
    spec = JobSpec.model_validate({
        "job_id": "cwd-check", "model": {"input_dim": 64, "hidden": [16], "output_dim": 10},
        "trainers": 1, "optimizer": {"name": "adam", "lr": 3e-3}, "steps": 10, "eval_interval": 5,
        "sync": {"mode": "sync"}, "data": {"source": "digits", "partitions": 1}})
    async with LocalJob(own, spec) as job:
        status = await job.wait(180)
    assert status.state == "succeeded", job.log_text()
    assert _tree(here) == []  # no <job>.trainers-data, no logs
    assert (state / "faust").is_dir() and any((state / "jobs").iterdir())  # they went to the state dir


async def test_serve_starts_its_infrastructure_from_the_package_in_any_directory(
    own_env: dict[str, str], tmp_path: Path
) -> None:
    """``aiaas serve`` with its local Kafka and Redis down starts them with the shipped up.sh, in the
    state dir, from a directory that is not the clone; SIGTERM stops its children, not the infra."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(examples.mlp([4, 6, 2], seed=3))
    kafka, redis_port, port = own_env["AIAAS_KAFKA_PORT"], own_env["AIAAS_REDIS_PORT"], free_port()
    env = child_env({**own_env, "AIAAS_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka}", "AIAAS_LOG_LEVEL": "WARNING",
                     "AIAAS_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"})
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aiaas.cli.main", "serve", str(onnx_file), "--name", "anywhere",
            "--port", str(port), "--infra-timeout", "180", cwd=str(cwd), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=log_file)
    try:
        try:
            lines = await _lines_until_key(proc)
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"{exc!r}; serve's log:\n{log_path.read_text()[-3000:]}") from exc
        key = lines[-1].split(": ", 1)[1].strip()
        body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http:
            resp = await http.post("/v2/models/anywhere/infer", json=body, headers={"X-API-Key": key})
        assert resp.status_code == 200, resp.text
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    state = Path(own_env["AIAAS_STATE_DIR"])
    assert (state / "kafka.pid").is_file() and (state / "redis.pid").is_file()  # started there
    assert _tree(cwd) == []
