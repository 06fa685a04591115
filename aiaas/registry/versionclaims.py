"""Version numbers unique across processes, decided by the order of the ``models`` log itself.

A publisher proposes the next number it knows of (one above the highest version or claim of the
name it has read) by appending a ``VersionClaim`` (keyed ``<name>:claim:<claim_id>``) to partition
0 of ``models``, then reads the partition up to its claim. Every reader keeps, per name, the
highest number seen so far in offset order (``top``, over version records and claims alike); a
claim wins its number when that number is above ``top`` at the claim's place in the log, that is,
when no earlier record holds it or a higher one. Two claims of one number: the first one in the
log wins, the second sees ``top`` at that number and loses; its publisher proposes again (one
above the new ``top``). One partition is one total order, so every process agrees, and no lock,
transaction or coordinator is needed. A winner then writes its version record with the number; a
winner that dies in between leaves a gap (a number is never given twice, nor that of a deleted
version).

The number is in the claim, and claims are never compacted away (each key is unique, about 250
bytes), so compaction, which may move a rewritten version record past later claims, never changes
what an earlier claim won: ``top`` before a claim can only shrink by it.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiaas.schemas.registry import ModelVersion, VersionClaim


def claim_key(claim: VersionClaim) -> str:
    return f"{claim.name}:claim:{claim.claim_id}"


class Numbering:
    """The per-name highest number, from the log in order; decides this process's own claims."""

    def __init__(self) -> None:
        self.top: dict[str, int] = {}
        self._mine: dict[str, asyncio.Future[bool]] = {}

    def new_claim(self, name: str, sha256: str) -> tuple[VersionClaim, asyncio.Future[bool]]:
        """A claim of the next number to append, and the future that says, once the reader has
        applied the claim, whether it won that number."""
        claim = VersionClaim(name=name, version=self.top.get(name, 0) + 1, claim_id=uuid.uuid4().hex,
                             sha256=sha256, created_at=time.time())
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._mine[claim.claim_id] = future
        return claim, future

    def forget(self, claim: VersionClaim) -> None:
        """Stop waiting for a claim (decided, or its write failed)."""
        self._mine.pop(claim.claim_id, None)

    def saw_version(self, mv: ModelVersion) -> None:
        self.top[mv.name] = max(self.top.get(mv.name, 0), mv.version)

    def saw_claim(self, claim: VersionClaim) -> bool:
        """Apply a claim in log order; True when it wins its number."""
        top = self.top.get(claim.name, 0)
        won = claim.version > top
        self.top[claim.name] = max(top, claim.version)
        future = self._mine.pop(claim.claim_id, None)
        if future is not None and not future.done():
            future.set_result(won)
        return won
