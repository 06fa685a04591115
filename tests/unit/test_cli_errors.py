"""What a newcomer sees when something is missing: one line saying what and what to run, exit != 0.

No broker or Redis is needed: the addresses point at a closed port (127.0.0.1:1).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiaas.agents.processes import child_env
from tests.infra import ROOT

CLOSED = {"AIAAS_BOOTSTRAP_SERVERS": "127.0.0.1:1", "AIAAS_REDIS_URL": "redis://127.0.0.1:1/0",
          "AIAAS_DEBUG": "", "AIAAS_LOG_LEVEL": "INFO", "AIAAS_CONNECT_DEADLINE_S": "1"}


def _run(*args: str, env: dict[str, str] | None = None,
         timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=child_env({**CLOSED, **(env or {})}),
                          capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)


def _aiaas(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return _run("-m", "aiaas.cli.main", *args, **kw)  # type: ignore[arg-type]


def _errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr lines other than start-up info logs."""
    return [ln for ln in proc.stderr.splitlines() if ln.strip() and " INFO " not in ln]


@pytest.mark.parametrize("argv", [["models", "list"], ["topics", "list"], ["models", "pull", "m", "-o", "x"]])
def test_broker_down_is_one_line_with_the_address_and_what_to_run(argv: list[str]) -> None:
    proc = _aiaas(*argv)
    assert proc.returncode == 1, proc
    lines = _errors(proc)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "Kafka at 127.0.0.1:1" in lines[0]
    assert "AIAAS_BOOTSTRAP_SERVERS" in lines[0]  # what to do about it
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_debug_shows_the_traceback() -> None:
    for proc in (_aiaas("--debug", "models", "list"), _aiaas("models", "list", env={"AIAAS_DEBUG": "1"})):
        assert proc.returncode == 1
        assert "Traceback" in proc.stderr and "KafkaConnectionError" in proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "Kafka at 127.0.0.1:1" in last


def test_redis_down_is_one_line() -> None:
    proc = _aiaas("keys", "create", "--tenant", "acme")
    assert proc.returncode == 1
    (line,) = _errors(proc)
    assert line.startswith("error: cannot reach Redis at redis://127.0.0.1:1/0") and "aiaas infra up" in line


def test_missing_data_file_is_one_line(tmp_path: Path) -> None:
    proc = _aiaas("infer", "digits", "--data", f"@{tmp_path / 'request.json'}")
    assert proc.returncode == 2
    (line,) = _errors(proc)
    missing = tmp_path / "request.json"
    assert line == f"error: no such file: {missing} (--data takes OIP request JSON, or @FILE holding it)"


def test_serve_without_a_broker_fails_in_seconds_with_one_line() -> None:
    started = time.monotonic()
    proc = _aiaas("serve", "--model", "digits", timeout_s=60)
    took = time.monotonic() - started
    assert proc.returncode == 1
    (line,) = _errors(proc)
    assert "cannot reach Kafka/Redis" in line and "127.0.0.1:1" in line and "redis://127.0.0.1:1/0" in line
    assert took < 30, took


def test_serve_needs_a_file_or_a_model() -> None:
    proc = _aiaas("serve")
    assert proc.returncode == 2 and "give an ONNX FILE or --model NAME" in proc.stderr


def test_help_says_what_aiaas_is_and_lists_the_new_commands() -> None:
    proc = _aiaas("--help")
    assert proc.returncode == 0
    assert "AI as a service on Kafka" in proc.stdout and "register``" not in proc.stdout
    assert "topics" in proc.stdout and "--debug" in proc.stdout
    models = _aiaas("models", "--help").stdout
    assert "pull" in models
    assert "--wait" in _aiaas("worker", "inference", "--help").stdout


@pytest.mark.parametrize("role", ["bridge", "autoscaler", "inference", "trainer", "aggregator"])
def test_every_agent_runs_as_python_m(role: str) -> None:
    proc = _run("-m", f"agents.{role}", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()


def test_bridge_port_in_use_is_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _run("-m", "aiaas.agents.bridge", "--port", str(port))
    assert proc.returncode == 1
    assert _errors(proc)[-1].startswith("error: cannot bind the bridge's HTTP port")
    assert f"port={port}" in proc.stderr


def test_bridge_without_redis_is_one_line_not_uvicorns_traceback() -> None:
    proc = _aiaas("worker", "bridge", "--port", "0")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Application startup failed" not in proc.stderr
    assert _errors(proc)[-1].startswith("error: cannot reach Redis at redis://127.0.0.1:1/0")


def test_worker_start_without_a_broker_ends_with_one_error_line_not_one_per_try() -> None:
    proc = _aiaas("worker", "inference", "--model", "digits", "--wait")
    assert proc.returncode == 1
    assert "Unable connect" not in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr  # a retry notice, the error
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
