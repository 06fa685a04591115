"""Continuous training from the user's topic on the real broker: concept drift and the promotion gate.

Digits stream with its labels permuted at record 10,000: within 60 s of the change reaching the
topic, production scores >= 0.9 on a probe of permuted digits; a following stretch of 2,000
random-label records is never promoted (the gate's floor and tolerance; production's probe accuracy
stays within tolerance). Every candidate's decision is on the metrics topic. A job started on an
empty topic waits for its first rows (its scaling is fitted on them) and then trains.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from aiaas.registry.store import Registry
from aiaas.streams.admin import Admin
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests.driftscenario import GOOD, Prober, continuous_spec, in_process, run_drift
from tests.sourcestreams import digits_split, make_topic, produce, records

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_drift_is_followed_and_noise_is_kept_out(settings: Settings, mode: str) -> None:
    out = await run_drift(settings, mode=mode)
    assert out.drift_recovery_s is not None and out.drift_recovery_s <= 60.0, out.drift_recovery_s
    assert out.recovered_accuracy >= GOOD
    assert out.final_accuracy >= out.recovered_accuracy - 0.02 - 0.03  # tolerance + probe noise
    after_noise = [d for d in out.decisions if d.source_position >= out.noise_end]
    assert len(after_noise) >= 3 and not any(d.promoted for d in after_noise)
    promoted = [d for d in out.decisions if d.promoted]
    assert len(promoted) >= 2 and all(d.model_version is not None for d in promoted)
    assert all(d.window_rows > 0 for d in out.decisions)


async def test_a_continuous_job_started_on_an_empty_topic_waits_for_its_first_rows(
    settings: Settings,
) -> None:
    topic = f"{settings.topic_prefix}user.empty"
    await make_topic(settings, topic)
    spec = continuous_spec("from-empty", topic)
    x, y, px, py = digits_split()
    async with Registry(settings) as reg, contextlib.AsyncExitStack() as stack:
        job = asyncio.create_task(stack.enter_async_context(in_process(settings, spec)))
        async with Admin(settings) as admin:  # the aggregator is up: it created the job's topics
            async with asyncio.timeout(60):
                while not await admin.partitions(Topics(settings).train_test(spec.job_id).name):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)  # the broker's metadata, polled
        assert not job.done()  # still waiting for rows to fit the scaling on
        await produce(settings, topic, records(x, y, 0, 4000))
        async with asyncio.timeout(90):
            await job
        version, acc = await Prober(reg, spec.model_name).wait_until(px, py, GOOD, 90.0)
    assert version >= 1 and acc >= GOOD
