"""Asking about a topic that does not exist logs nothing from aiokafka (streams/metadata.py).

``aiaas.InferenceClient`` raises ``NotFound`` for an unknown model; aiokafka's own
"Topic ... not found in cluster metadata" error line used to reach the caller's stderr beside it.
"""

from __future__ import annotations

import logging

import pytest

from aiaas.streams.metadata import partition_count
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings


async def test_a_missing_topic_is_answered_without_aiokafkas_error_line(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    missing = f"{settings.topic_prefix}no-such-topic-quiet"
    async with Producer(settings) as producer:
        with caplog.at_level(logging.DEBUG, logger="aiokafka.cluster"):
            assert await partition_count(producer.raw.client, missing) == 0
    assert not [r for r in caplog.records if r.name == "aiokafka.cluster" and missing in r.getMessage()]
    assert not logging.getLogger("aiokafka.cluster").disabled  # left as it was
