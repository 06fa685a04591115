"""Version numbers unique across processes, allocated by the order of the ``models`` log itself.

A publisher appends a ``VersionClaim`` (keyed ``<name>:claim:<claim_id>``) to partition 0 of
``models`` and waits until its own reader has applied the partition up to that claim. Every reader
applies the same rule to the records in offset order:

- a ``ModelVersion`` of name N: ``top[N] = max(top[N], version)``;
- a ``VersionClaim`` of name N: ``top[N] += 1``, and that claim's number is the new ``top[N]``.

One partition is one total order, so every process derives the same number for a claim and no two
claims get the same number, however many processes publish at once; no lock, transaction or
coordinator is needed. The claimer then writes its version record with that number. A claimer
that dies in between leaves a gap: a number is never reused (nor that of a deleted version).

Claims stay on the compacted topic (each key is unique, about 200 bytes each). Compaction keeps
the newest record of a key, so a version record may move past claims it once preceded; the number
of every version came from a claim before it, so ``max`` leaves the numbers of claims decided at
the tail of the log unchanged. Version records of publishers that wrote no claim still raise
``top``, so older registries' versions are never numbered twice by new ones.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from schemas.registry import ModelVersion, VersionClaim


def claim_key(claim: VersionClaim) -> str:
    return f"{claim.name}:claim:{claim.claim_id}"


class Numbering:
    """The per-name highest number, from the log in order; resolves this process's own claims."""

    def __init__(self) -> None:
        self.top: dict[str, int] = {}
        self._mine: dict[str, asyncio.Future[int]] = {}

    def new_claim(self, name: str, sha256: str) -> tuple[VersionClaim, asyncio.Future[int]]:
        """A claim to append, and the future that gets its number once the reader applies it."""
        claim = VersionClaim(name=name, claim_id=uuid.uuid4().hex, sha256=sha256, created_at=time.time())
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._mine[claim.claim_id] = future
        return claim, future

    def forget(self, claim: VersionClaim) -> None:
        """Stop waiting for a claim (its write failed or timed out)."""
        self._mine.pop(claim.claim_id, None)

    def saw_version(self, mv: ModelVersion) -> None:
        self.top[mv.name] = max(self.top.get(mv.name, 0), mv.version)

    def saw_claim(self, claim: VersionClaim) -> int:
        number = self.top.get(claim.name, 0) + 1
        self.top[claim.name] = number
        future = self._mine.pop(claim.claim_id, None)
        if future is not None and not future.done():
            future.set_result(number)
        return number
