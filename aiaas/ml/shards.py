"""How a sharded parameter server cuts a model: whole tensors per shard, balanced by size.

``plan`` deals the state's tensors to ``n`` shards greedily, largest first, each to the shard
holding the fewest elements so far (ties: the lower shard); the same shapes give the same plan in
every process, so trainers and shards agree without talking. ``shard_name`` names shard ``i``'s
copy of a per-job resource (topics, transactional id, group): shard 0 keeps the plain name, so an
unsharded job is shard 0 of 1 (docs/architecture.md, "Sharded parameter server").
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def plan(shapes: Mapping[str, tuple[int, ...]], n: int) -> list[list[str]]:
    """The tensor names of each of ``n`` shards (each list in the state's order)."""
    if n < 1:
        raise ValueError("a model needs at least one shard")
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    loads = [0] * n
    owner: dict[str, int] = {}
    for name in sorted(sizes, key=lambda k: (-sizes[k], k)):
        shard = min(range(n), key=lambda i: (loads[i], i))
        owner[name] = shard
        loads[shard] += sizes[name]
    return [[name for name in shapes if owner[name] == i] for i in range(n)]


def shard_name(name: str, shard: int) -> str:
    """Shard ``shard``'s copy of ``name`` (shard 0: ``name`` itself)."""
    return name if shard == 0 else f"{name}.s{shard}"
