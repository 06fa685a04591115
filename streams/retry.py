"""Retry what a broker that is not ready yet refuses, with backoff, to one deadline; then one line.

A broker that was just formatted answers its first clients with errors that mean "not yet": no
group coordinator until ``__consumer_offsets`` exists (GroupCoordinatorNotAvailable,
CoordinatorLoadInProgress, NotCoordinator), no leader for a topic created a moment ago
(LeaderNotAvailable, UnknownTopicOrPartition, NotLeaderForPartition), and a broker still starting
refuses connections (KafkaConnectionError, NodeNotReady, RequestTimedOut). aiokafka marks all of
these ``retriable``; this module retries every such error with exponential backoff and full jitter
until ``Settings.connect_deadline_s`` (``AIAAS_CONNECT_DEADLINE_S``) has passed, then raises
``KafkaUnavailable``: one line naming what was being done, the bootstrap address, the last error
and what to run. Errors that retrying cannot fix (bad credentials, a bad request) pass at once.

``retrying(op, ...)`` retries an idempotent operation; ``started(factory, ...)`` builds and starts
a client (AIOKafkaProducer/Consumer/AdminClient), closing a half-started one before the next try.
The shared wrappers (``aiaas.streams.producer``, ``aiaas.streams.consumer``, ``aiaas.streams.admin``,
``aiaas.streams.readers``) use them, so their callers get this for free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from aiokafka.errors import KafkaError, KafkaTimeoutError

from aiaas.schemas.errors import KafkaUnavailable
from aiaas.streams.authz import forbidden_from
from aiaas.streams.lifecycle import unleaked
from aiaas.streams.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_DELAY_S = 0.05
MAX_DELAY_S = 2.0
LOCAL_DEFAULT = Settings.model_fields["bootstrap_servers"].default


def gave_up(what: str, bootstrap: str, last: BaseException | None, waited_s: float,
            tries: int, secured: bool = False) -> KafkaUnavailable:
    """The error for Kafka refusing (retriable errors) until the deadline, as one line."""
    last_line = one_line(last) if last is not None else "no answer"
    reason = (f"{what}: Kafka at {bootstrap} still unavailable after {waited_s:.3g}s "
              f"({tries} tries), last error {last_line}; {hint(bootstrap, secured)}")
    return KafkaUnavailable(reason, what=what, bootstrap=bootstrap, last=last_line,
                            waited_s=round(waited_s, 1), tries=tries)


def hint(bootstrap: str, secured: bool = False) -> str:
    """What to run: start the local broker when the address is the local default (or another port
    on this machine); otherwise look at the address. aiokafka reports refused SASL/TLS credentials
    as the same connection error as a broker that is down, so a secured client is told both."""
    if secured:
        return ("check AIAAS_BOOTSTRAP_SERVERS and the credentials (AIAAS_SECURITY_PROTOCOL, "
                "AIAAS_SASL_*, AIAAS_SSL_*): a refused login looks the same as a broker that is down")
    if bootstrap == LOCAL_DEFAULT:
        return "is the local broker up? run `aiaas infra up` (or `make infra-up`)"
    host, _, port = bootstrap.rpartition(":")
    if host in ("127.0.0.1", "localhost") and port.isdigit():
        return (f"is a broker up on port {port}? (`AIAAS_KAFKA_PORT={port} aiaas infra up` starts one, "
                "or point AIAAS_BOOTSTRAP_SERVERS at a running cluster)")
    return "check that AIAAS_BOOTSTRAP_SERVERS points at a running cluster"


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 200 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 200 else text[:197] + "..."


def is_retriable(exc: BaseException, *, metadata_wait: bool = False) -> bool:
    """True for errors a later try may not get: what aiokafka marks ``retriable``, and a
    KafkaTimeoutError when the operation is a wait for metadata (starting a client, looking up
    partitions) rather than a send whose fate is unknown."""
    if isinstance(exc, KafkaTimeoutError):
        return metadata_wait
    if isinstance(exc, KafkaError):
        return bool(exc.retriable)
    return isinstance(exc, ConnectionError)


def backoff(attempt: int, first_s: float = FIRST_DELAY_S, max_s: float = MAX_DELAY_S) -> float:
    """Full-jitter exponential backoff: uniform in (0, min(max_s, first_s * 2**attempt)]."""
    cap = min(max_s, first_s * 2.0 ** min(attempt, 30))
    return cap * (1.0 - random.random())  # (0, cap]: never a zero wait, never above the cap


async def retrying(op: Callable[[], Awaitable[T]], settings: Settings, what: str, *,
                   deadline_s: float | None = None, metadata_wait: bool = False) -> T:
    """``await op()``, again after each retriable error, until ``deadline_s`` (default: the
    settings' ``connect_deadline_s``); then ``KafkaUnavailable``. Other errors pass at once."""
    limit = settings.connect_deadline_s if deadline_s is None else deadline_s
    began = time.monotonic()
    tries = 0
    while True:
        tries += 1
        try:
            return await op()
        except Exception as exc:
            if not is_retriable(exc, metadata_wait=metadata_wait):
                denied = forbidden_from(settings, exc, what)  # an ACL refusal: who, on what, one line
                if denied is not None:
                    raise denied from exc
                raise
            waited = time.monotonic() - began
            if waited >= limit:
                raise gave_up(what, settings.bootstrap_servers, exc, waited, tries,
                              settings.security_protocol != "PLAINTEXT") from exc
            (log.info if tries == 1 else log.debug)(
                "%s: %s; retrying for up to %.0fs", what, one_line(exc), limit - waited)
            await asyncio.sleep(min(backoff(tries - 1), limit - waited))  # the last try at the deadline


class Startable(Protocol):
    async def start(self) -> None: ...


C = TypeVar("C", bound=Startable)


async def close_quietly(client: Any) -> None:
    """Stop (or close, for the admin client) a client whose start failed; errors are dropped, and so
    is a cancellation aiokafka leaks out of a consumer's ``stop()`` (``lifecycle.stop_consumer``):
    it would have ended the retries as if the caller had been cancelled."""
    closer = getattr(client, "stop", None) or getattr(client, "close", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await unleaked(closer)


async def started(factory: Callable[[], C], settings: Settings, what: str, *,
                  deadline_s: float | None = None) -> C:
    """A started client from ``factory``: a fresh client per try (a half-started aiokafka client
    is not restarted), the failed one closed, retried as ``retrying`` does."""

    async def attempt() -> C:
        client = factory()
        try:
            await client.start()
        except BaseException:
            await close_quietly(client)
            raise
        return client

    return await retrying(attempt, settings, what, deadline_s=deadline_s, metadata_wait=True)
