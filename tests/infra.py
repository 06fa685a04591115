"""Test helpers that start the project's real infrastructure (Kafka broker, Redis) when needed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The clone's infrastructure state, as the Makefile passes it (an installed aiaas defaults to
# ~/.cache/aiaas/state): the broker and Redis the tests use were started with these.
CLONE_STATE = {"AIAAS_STATE_DIR": str(ROOT / ".run"),
               "AIAAS_KAFKA_LIBS": str(ROOT / "infra" / "kafka" / "libs")}


def use_clone_state() -> None:
    """Point this process and every child (infra scripts, agents) at the clone's state dir, unless
    the environment names one already (``make test`` does)."""
    for name, value in CLONE_STATE.items():
        os.environ.setdefault(name, value)


def ensure_infra() -> None:
    """Run ``infra/up.sh`` (idempotent: a no-op when the broker and Redis already run)."""
    if os.environ.get("AIAAS_EXTERNAL_INFRA") == "1":
        return
    subprocess.run([str(ROOT / "infra" / "up.sh")], check=True, capture_output=True, timeout=300)
