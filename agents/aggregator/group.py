"""The trainers' consumer group as the broker sees it: who is a member, and is it stable.

The aggregator reads it to start a job only when the spec's trainers have all joined (rendezvous)
and, while training, to drop a trainer from the rounds as soon as it leaves the group.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiaas.streams.admin import Admin
from aiaas.streams.jobs import trainer_group
from aiaas.streams.settings import Settings

from .members import Membership

log = logging.getLogger(__name__)
RENDEZVOUS_POLL_S = 0.05


class GroupView:
    def __init__(self, settings: Settings, job_id: str, members: Membership) -> None:
        self.settings = settings
        self.group_id = trainer_group(settings, job_id)
        self.members = members

    async def read(self, admin: Admin) -> tuple[str, set[str]]:
        """(state, client ids) of the group (a trainer's client id is its worker id); updates the
        membership with it. A broker with no group coordinator yet (freshly formatted: no
        ``__consumer_offsets``) is asked again until the settings' deadline (``aiaas.streams.retry``)."""
        asked = time.monotonic()
        (resp,) = await admin.call(f"describing trainer group {self.group_id}",
                                   lambda: admin.client.describe_consumer_groups([self.group_id]))
        _, _, state, _, _, members = resp.groups[0][:6]
        clients = {str(m[1]) for m in members}
        self.members.set_group(clients, asked)
        return str(state), clients

    async def rendezvous(self, wanted: int, wait_s: float) -> int:
        """Wait (up to ``wait_s``) for a Stable group of ``wanted`` trainers: each then holds its
        partitions, so a clock started at version 0 measures training, not start-up. Returns how
        many trainers are there."""
        members: set[str] = set()
        async with Admin(self.settings) as admin:
            try:
                async with asyncio.timeout(wait_s):
                    while True:
                        state, members = await self.read(admin)
                        if state == "Stable" and len(members) >= wanted:
                            break
                        await asyncio.sleep(RENDEZVOUS_POLL_S)  # polling the broker's view
            except TimeoutError:
                log.warning("group %s: %d of %d trainers joined within %.0fs; starting anyway",
                            self.group_id, len(members), wanted, wait_s)
        return max(1, len(members))

    async def watch(self, poll_s: float) -> None:
        """Forever: keep the membership in step with the group."""
        async with Admin(self.settings) as admin:
            while True:
                try:
                    await self.read(admin)
                except Exception as exc:  # the view is advisory: keep going without it
                    log.debug("describing group %s failed: %r", self.group_id, exc)
                await asyncio.sleep(poll_s)
