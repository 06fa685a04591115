"""aiaas.agents.processes, the product's one spawner, without a broker: a child imports our packages
from any directory and runs there, its output lands in its log, SIGTERM then SIGKILL stops it, and
the shipped infra scripts run with the state dir they are given."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from aiaas.agents.processes import CODE_ROOT, INFRA, free_port, run_infra, spawn, spawn_module, terminate


def _holds(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text()


async def _until_in(path: Path, text: str, timeout_s: float = 30.0) -> None:
    """Poll a child's log until ``text`` appears (the child says it is ready; never a fixed sleep)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if _holds(path, text):
                return
            await asyncio.sleep(0.02)


async def test_a_child_imports_aiaas_and_runs_in_the_callers_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)  # child_env alone makes aiaas importable
    log = tmp_path / "logs" / "child.log"
    proc = await spawn([sys.executable, "-c", "import aiaas, os; print(aiaas.__file__); print(os.getcwd())"],
                       env={"AIAAS_X": "1"}, log=log)
    assert await proc.wait() == 0, log.read_text()
    where, cwd = log.read_text().split()
    assert Path(where).parent.parent == CODE_ROOT and Path(cwd) == tmp_path


async def test_terminate_sigterms_then_kills_what_ignores_it(tmp_path: Path) -> None:
    ignoring = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(120)")
    stubborn = await spawn([sys.executable, "-c", ignoring], log=tmp_path / "stubborn.log")
    polite = await spawn_module("http.server", "--bind", "127.0.0.1", str(free_port()),
                                log=tmp_path / "polite.log")
    await _until_in(tmp_path / "stubborn.log", "ready")
    await terminate([stubborn, polite], grace_s=1.0)
    assert stubborn.returncode == -9  # SIGKILL after the grace period
    assert polite.returncode == -15  # stopped by the SIGTERM


async def test_run_infra_runs_the_shipped_script_with_the_state_dir_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIAAS_KAFKA_PORT", str(free_port()))  # nothing listens on either
    monkeypatch.setenv("AIAAS_REDIS_PORT", str(free_port()))
    state = tmp_path / "state"
    assert (INFRA / "status.sh").is_file()
    assert await run_infra("status.sh", state, timeout_s=60) == 0
    out = capfd.readouterr().out
    assert "kafka: stopped" in out and "redis: stopped" in out, out
    assert state.is_dir()  # the scripts made the state dir they were given, and used it
