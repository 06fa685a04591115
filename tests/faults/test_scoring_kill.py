"""Exactly-once stream scoring under kill -9: 50,000 input records, two scoring worker processes in
one group, one killed mid-stream. The survivor fences the dead worker's partitions (aborting its
open transactions) and resumes from the committed offsets: the output, read committed, holds
exactly one prediction per input offset, checked offset by offset."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import yaml

from aiaas.registry.store import Registry
from aiaas.streams.settings import Settings
from tests import examples
from tests.scoredreads import (
    Prediction,
    committed_total,
    group_caught_up,
    make_topic,
    produce,
    read_committed,
)
from tests.spawn import spawn_workers, until_processes_balanced

N, PARTITIONS = 50_000, 4


def value(i: int) -> bytes:
    return json.dumps({"a": (i % 97) / 10, "b": {"c": (i % 13) - 6}, "d": i % 5, "id": i}).encode()


async def test_kill9_a_scoring_worker_leaves_exactly_one_prediction_per_input(
    settings: Settings, tmp_path: Path
) -> None:
    src, out = settings.topic("events"), settings.topic("scored")
    await make_topic(settings, src, PARTITIONS)
    async with Registry(settings) as reg:
        await reg.publish("m", examples.mlp([3, 16, 2], seed=3), stage="production")
    spec = tmp_path / "source.yaml"
    spec.write_text(yaml.safe_dump({"source": {"topic": src, "format": "json",
                                               "features": ["a", "b.c", "d"], "passthrough": ["id"]}}))
    flags = ("--score", "--from", src, "--to", out, "--source", str(spec), "--max-batch", "1000")
    async with spawn_workers(settings, "m", 2, *flags) as procs:
        await until_processes_balanced(procs, PARTITIONS, timeout_s=60)
        await produce(settings, src, [(f"k{i}".encode(), value(i)) for i in range(N)], PARTITIONS)
        await read_committed(settings, out, until=lambda n: n >= N // 5, timeout_s=60, parse=False)
        victim, survivor = procs
        assert victim.proc.returncode is None, "the worker to kill ended early"
        victim.proc.kill()  # SIGKILL mid-stream: its open transaction is left behind
        await victim.proc.wait()
        group = settings.topic(f"score.m.{src}")
        at_kill = await committed_total(settings, group, src)
        assert at_kill < N, "the kill came after every record was scored: it tested nothing"
        await group_caught_up(settings, group, src, timeout_s=60)
        assert survivor.proc.returncode is None
        assert survivor.partitions == PARTITIONS  # it took the dead worker's partitions over
        preds: list[Prediction] = await read_committed(settings, out, timeout_s=60)
        written = await read_committed(settings, out, timeout_s=60, parse=False, isolation="read_uncommitted")
    print(f"committed input records at the kill: {at_kill}; output records written {len(written)}, "
          f"committed {len(preds)} (the rest were aborted)")
    seen = Counter(p.source for p in preds)
    wanted = {(src, p, o) for p in range(PARTITIONS) for o in range(N // PARTITIONS)}
    assert set(seen) == wanted, f"missing {len(wanted - set(seen))}, unexpected {len(set(seen) - wanted)}"
    twice = {k: c for k, c in seen.items() if c > 1}
    assert not twice, f"{len(twice)} input offsets scored more than once, e.g. {list(twice.items())[:5]}"
    for p in preds[:: N // 50]:  # the prediction is the input's (key and passthrough id agree)
        assert p.key == f"k{p.value['id']}".encode()
        assert p.source[1] == p.value["id"] % PARTITIONS and p.source[2] == p.value["id"] // PARTITIONS
