"""Agents' logging drops aiokafka's ERROR lines about a just-created partition's leader (it retries
them itself), and keeps every other fetcher error."""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaConnectionError, NotLeaderForPartitionError

from aiaas.streams.runtime import TransientFetchErrors


def _record(err: Exception) -> logging.LogRecord:
    # the line aiokafka.consumer.fetcher logs (same format string and arguments)
    return logging.LogRecord("aiokafka.consumer.fetcher", logging.ERROR, __file__, 1,
                             "Failed fetch offsets from %s: %s", (1, err), None)


def test_a_new_partitions_leader_hand_over_is_not_shown() -> None:
    assert not TransientFetchErrors().filter(_record(NotLeaderForPartitionError()))


def test_other_fetcher_errors_are_kept() -> None:
    assert TransientFetchErrors().filter(_record(KafkaConnectionError("broken")))
    other = logging.LogRecord("aiokafka.consumer.fetcher", logging.ERROR, __file__, 1,
                              "Unexpected error %s", (NotLeaderForPartitionError(),), None)
    assert TransientFetchErrors().filter(other)
