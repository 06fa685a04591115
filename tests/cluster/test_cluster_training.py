"""Training on the 3-node cluster: a sync job (aggregator + two trainers) whose gradient and
parameter partitions lose their leader to kill -9 mid-job still finishes and meets its accuracy
target, and the parameter versions go on from where they were (nothing restarted, nothing lost).
The killed node is restarted by the fixture after the test."""

from __future__ import annotations

import asyncio

import pytest

from aiaas.agents.launcher import run_in_process
from aiaas.streams.lifecycle import cancel
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests.cluster.control import LocalCluster, busiest, leaders, replication
from tests.faults.test_training_faults import VersionLog, spec

pytestmark = pytest.mark.timeout(300)


async def test_kill_the_grads_and_params_leader_mid_job_still_meets_target(
    cluster: LocalCluster, settings: Settings
) -> None:
    job_spec = spec("cluster-kill-leader")
    topics = Topics(settings)
    versions = VersionLog(settings, job_spec.job_id)
    job = asyncio.create_task(run_in_process(settings, job_spec, trainers=2, timeout_s=240))
    try:
        await versions.reach(8, timeout_s=180)
        grads = topics.train_grads(job_spec.job_id).name
        params = topics.train_params(job_spec.job_id).name
        assert await replication(settings, grads) == [(3, 3)]
        assert await replication(settings, params) == [(3, 3)]
        led = {**{("g", p): n for p, n in (await leaders(settings, grads)).items()},
               **{("p", p): n for p, n in (await leaders(settings, params)).items()}}
        victim = busiest(led)
        killed_at = max(versions.versions)
        await cluster.kill(victim)
        async with asyncio.timeout(240):
            status = await job
        moved = {**await leaders(settings, grads), **await leaders(settings, params)}
    finally:
        await cancel(job, quiet=True)
        await versions.close()
    assert status.state == "succeeded", status.error
    assert job_spec.target is not None and status.metrics["test_accuracy"] >= job_spec.target.value
    assert status.version > killed_at + 1  # rounds went on after the kill
    assert victim not in moved.values()
    seen = versions.versions
    # every version once in order, none skipped (the final one is published again at the end)
    assert seen == sorted(seen) and seen[0] <= 1 and set(seen) == set(range(seen[0], status.version + 1))
