"""The weighted assignor in a real consumer group: workers with weights 3 and 1 own 6 and 2 partitions."""

from __future__ import annotations

from aiaas.registry.store import Registry
from aiaas.streams.settings import Settings
from tests import examples
from tests.workers import running_worker, until_balanced


async def test_weights_three_and_one_get_six_and_two_partitions(settings: Settings) -> None:
    fast = settings.model_copy(update={"heartbeat_interval_ms": 300, "session_timeout_ms": 6000})
    async with Registry(fast) as reg:
        await reg.publish("w", examples.mlp([4, 2]), stage="production")
    async with running_worker(fast, model="w", weight=3) as big, \
            running_worker(fast, model="w", weight=1) as small:
        await until_balanced([big, small], 8)
        assert (big.stats["partitions"], small.stats["partitions"]) == (6, 2)
        async with running_worker(fast, model="w", weight=0) as standby:  # weight 0: joins, owns nothing
            await until_balanced([big, small], 8)
            assert standby.stats["partitions"] == 0
