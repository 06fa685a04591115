"""``AIAAS_EXTERNAL_INFRA=1 infra/up.sh`` starts nothing and uses the broker and Redis that answer.

A second clone on a machine whose broker and Redis another clone started has its own state dir
(``.run/``), so a plain ``make infra-up`` there refuses the taken ports; with the variable set it
checks that both answer and goes on (README, "Quickstart").
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from aiaas.agents.processes import free_port
from tests.infra import ROOT, ensure_infra


def _up(tmp_state: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "AIAAS_EXTERNAL_INFRA": "1", "AIAAS_STATE_DIR": tmp_state, **env}
    return subprocess.run(["bash", str(ROOT / "infra" / "up.sh")], env=full, capture_output=True,
                          text=True, timeout=30)


def test_external_infra_uses_the_running_broker_and_redis(tmp_path: Path) -> None:
    ensure_infra()
    done = _up(str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "kafka: using the one already running" in done.stdout
    assert "redis: using the one already running" in done.stdout
    assert not (tmp_path / "kafka.pid").exists()  # nothing was started


def test_external_infra_fails_in_one_line_when_nothing_answers(tmp_path: Path) -> None:
    port = free_port()
    done = _up(str(tmp_path), AIAAS_REDIS_PORT=str(port))
    assert done.returncode == 1
    assert f"nothing answers on 127.0.0.1:{port} (redis)" in done.stderr
