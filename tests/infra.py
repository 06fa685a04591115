"""Test helpers that start the project's real infrastructure (Kafka broker, Redis) when needed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ensure_infra() -> None:
    """Run ``infra/up.sh`` (idempotent: a no-op when the broker and Redis already run)."""
    if os.environ.get("AIAAS_EXTERNAL_INFRA") == "1":
        return
    subprocess.run([str(ROOT / "infra" / "up.sh")], check=True, capture_output=True, timeout=300)
