"""A replication factor named in the settings is used as it is: no broker is asked."""

from __future__ import annotations

from aiaas.streams.admin import Admin
from aiaas.streams.settings import Settings


async def test_a_set_replication_factor_needs_no_broker() -> None:
    admin = Admin(Settings(replication_factor=2))  # never started: asking a broker would raise
    assert await admin.replication_factor() == 2


def test_the_setting_is_unset_by_default() -> None:
    assert Settings.model_fields["replication_factor"].default is None
