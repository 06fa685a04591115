"""A Redis of a test's own (``infra/redis.sh`` on its own port and state folder), to stop and
restart without touching the shared one. Port: ``AIAAS_TEST_REDIS_PORT`` (default 26379)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "infra" / "redis.sh"


class OwnRedis:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or int(os.environ.get("AIAAS_TEST_REDIS_PORT", "26379"))
        self.state_dir = ROOT / ".run" / f"test-redis-{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, "AIAAS_REDIS_PORT": str(self.port), "AIAAS_STATE_DIR": str(self.state_dir)}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _script(self, action: str) -> None:
        # no pipes: the daemonised redis-server would hold them open (and communicate() would wait)
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT), action, env=self.env, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        if await asyncio.wait_for(proc.wait(), 60) != 0:
            log = self.state_dir / "redis.log"
            raise RuntimeError(f"redis.sh {action} failed: {log.read_text() if log.exists() else ''}")

    async def start(self) -> None:
        """Start (or start again, reading its append-only file); returns once it answers PING."""
        if await self._answers():
            raise RuntimeError(f"port {self.port} is taken by another Redis; set AIAAS_TEST_REDIS_PORT")
        await self._script("start")

    async def _answers(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        return True

    async def stop(self) -> None:
        await self._script("stop")

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def remove(self) -> None:
        await self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)
