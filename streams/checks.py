"""Start-up checks worth logging once per process."""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def aiokafka_extensions_loaded() -> bool:
    """True when aiokafka's C record codecs are in use (without them throughput drops ~6x)."""
    from aiokafka.record import default_records

    return "_crecords" in default_records.DefaultRecordBatchBuilder.__module__


@functools.cache
def log_extensions() -> None:
    if aiokafka_extensions_loaded():
        log.info("aiokafka C extensions loaded")
    else:
        log.warning("aiokafka C extensions NOT loaded: expect ~6x lower throughput")
