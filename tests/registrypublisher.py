"""A process that publishes many versions of one model: two or more of them at once test that the
registry never gives two versions the same number (``tests/integration/test_registry.py``).

``python -m tests.registrypublisher NAME SEED COUNT`` (settings from ``AIAAS_*``): builds COUNT
distinct small models, starts a Registry, prints ``ready``, waits for a line on stdin (the test's
barrier, so all publishers start together), publishes them back to back and prints one JSON line
``[[version, sha256], ...]``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiaas.registry.store import Registry
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from tests import examples


async def publish_all(name: str, seed: int, count: int) -> list[tuple[int, str]]:
    models = [examples.mlp([4, 3], seed=seed + i) for i in range(count)]
    async with Registry(Settings()) as reg:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        return [(mv.version, mv.sha256) for mv in [await reg.publish(name, m) for m in models]]


def main() -> None:
    name, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(run(publish_all(name, seed, count))), flush=True)


if __name__ == "__main__":
    main()
