"""aiokafka's "Heartbeat failed ... because it is rebalancing" warning is logged as INFO: a
rebalance is routine (a worker joins or leaves), and ``make demo`` at WARNING showed the line."""

from __future__ import annotations

import logging

import pytest

from aiaas.streams.runtime import RoutineRebalance


def _record(level: int, msg: str) -> logging.LogRecord:
    # the line aiokafka.consumer.group_coordinator logs (same format string and argument)
    return logging.LogRecord("aiokafka.consumer.group_coordinator", level, __file__, 1, msg, ("g",), None)


def test_a_rebalance_heartbeat_is_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    rec = _record(logging.WARNING, "Heartbeat failed for group %s because it is rebalancing")
    assert not RoutineRebalance().filter(rec)  # not shown at WARNING
    assert rec.levelname == "INFO"
    caplog.set_level(logging.INFO)
    rec = _record(logging.WARNING, "Heartbeat failed for group %s because it is rebalancing")
    assert RoutineRebalance().filter(rec) and rec.levelno == logging.INFO  # shown, as INFO


def test_other_coordinator_warnings_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    rec = _record(logging.WARNING, "Heartbeat failed for group %s: coordinator is not valid")
    assert RoutineRebalance().filter(rec) and rec.levelno == logging.WARNING
