"""`aiaas demo` end to end as a user runs it: its last stdout line is the JSON summary."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from aiaas.streams.settings import Settings
from tests.infra import ROOT
from tests.spawn import run_to_end

pytestmark = pytest.mark.timeout(600)


async def test_demo_trains_serves_and_answers_every_caller(settings: Settings, tmp_path: Path) -> None:
    env = {**os.environ, "AIAAS_TOPIC_PREFIX": settings.topic_prefix, "PYTHONPATH": str(ROOT)}
    code, out, _ = await run_to_end(
        sys.executable, "-m", "aiaas.cli.main", "demo", "--out", str(tmp_path / "out"),
        cwd=str(ROOT), env=env, merge_stderr=True, timeout_s=540,
    )
    text = out.decode(errors="replace")
    assert code == 0, text[-4000:]
    result = json.loads(text.strip().splitlines()[-1])
    assert result["errors"] == 0 and result["failure"] is None
    assert result["served_accuracy"] >= 0.95
    assert result["served_accuracy"] == pytest.approx(result["trained_accuracy"], abs=0.01)
    assert result["requests"] >= 300 and result["p99_ms"] > 0
    for png in ("training.png", "latency.png"):
        assert (tmp_path / "out" / png).stat().st_size > 10_000
