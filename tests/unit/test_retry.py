"""aiaas.streams.retry: retriable Kafka errors are retried with backoff to the deadline, others pass at
once, and giving up is one line that says what, where, why and what to run."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NotCoordinatorError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from aiaas.schemas.errors import AiaasError, ErrorCode, KafkaUnavailable
from aiaas.streams.retry import backoff, is_retriable, one_line, retrying, started
from aiaas.streams.settings import Settings

COLD = [GroupCoordinatorNotAvailableError, NotCoordinatorError, LeaderNotAvailableError,
        UnknownTopicOrPartitionError, KafkaConnectionError]


@pytest.mark.parametrize("error", COLD)
def test_what_a_cold_broker_answers_is_retriable(error: type[Exception]) -> None:
    assert is_retriable(error("not yet"))


def test_other_errors_are_not_retriable_and_a_timeout_only_while_waiting_for_metadata() -> None:
    assert not is_retriable(SaslAuthenticationFailed("bad password"))
    assert not is_retriable(TopicAuthorizationFailedError())
    assert not is_retriable(ValueError("bug"))
    assert not is_retriable(KafkaTimeoutError())  # a send's fate is unknown: not blindly retried
    assert is_retriable(KafkaTimeoutError(), metadata_wait=True)


def test_backoff_grows_with_jitter_and_stays_under_the_cap() -> None:
    firsts = [backoff(0) for _ in range(200)]
    lates = [backoff(10) for _ in range(200)]
    assert all(0 < d <= 0.05 for d in firsts)
    assert all(0 < d <= 2.0 for d in lates) and max(lates) > 1.0
    assert len(set(lates)) > 100  # jittered: many processes do not retry in step


async def test_retriable_errors_are_retried_until_the_call_succeeds() -> None:
    calls = 0

    async def op() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise GroupCoordinatorNotAvailableError("Unable to get coordinator id for g")
        return "joined"

    assert await retrying(op, Settings(), "joining group g") == "joined"
    assert calls == 4


async def test_a_non_retriable_error_passes_at_once() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise SaslAuthenticationFailed("bad password")

    with pytest.raises(SaslAuthenticationFailed):
        await retrying(op, Settings(connect_deadline_s=30), "starting a producer")
    assert calls == 1


async def test_giving_up_at_the_deadline_is_one_clear_line() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise GroupCoordinatorNotAvailableError("Unable to get coordinator id for\ntrain.j.trainers")

    began = time.monotonic()
    with pytest.raises(KafkaUnavailable) as info:
        await retrying(op, Settings(bootstrap_servers="127.0.0.1:19092", connect_deadline_s=0.5),
                       "describing trainer group train.j.trainers")
    took = time.monotonic() - began
    assert 0.5 <= took < 2.0 and calls >= 3  # gave up at the deadline, not before
    err = info.value
    assert isinstance(err, AiaasError) and err.code == ErrorCode.UNAVAILABLE and err.retriable
    line = str(err)
    assert "\n" not in line
    assert line.startswith("describing trainer group train.j.trainers: Kafka at 127.0.0.1:19092")
    assert "GroupCoordinatorNotAvailableError" in line and "coordinator id for train.j.trainers" in line
    assert "aiaas infra up" in line
    assert err.details["bootstrap"] == "127.0.0.1:19092" and err.details["tries"] == calls
    assert isinstance(err.__cause__, GroupCoordinatorNotAvailableError)


async def test_a_cluster_elsewhere_is_not_told_to_start_the_local_broker() -> None:
    async def op() -> None:
        raise KafkaConnectionError("Unable to bootstrap from [('k1', 9092)]")

    with pytest.raises(KafkaUnavailable) as info:
        await retrying(op, Settings(bootstrap_servers="k1:9092"), "starting a consumer", deadline_s=0.1)
    assert "Kafka at k1:9092" in str(info.value) and "AIAAS_BOOTSTRAP_SERVERS" in str(info.value)
    assert "infra up" not in str(info.value)


def test_one_line_shortens_long_errors() -> None:
    text = one_line(RuntimeError("x" * 500))
    assert len(text) == 200 and text.startswith("RuntimeError: x")


class FakeClient:
    """Stands in for an aiokafka client's start/stop: this tests the retry loop, not Kafka."""

    made: list[FakeClient] = []

    def __init__(self, fail: int, leak: bool = False) -> None:
        self.fail, self.stopped, self.leak = fail, False, leak
        FakeClient.made.append(self)

    async def start(self) -> None:
        if len(FakeClient.made) <= self.fail:
            raise KafkaConnectionError("Unable to bootstrap")

    async def stop(self) -> None:
        self.stopped = True
        if self.leak:  # as aiokafka's consumer does when a fetch was in its retry back-off
            raise asyncio.CancelledError


async def test_started_makes_a_fresh_client_per_try_and_closes_the_failed_ones() -> None:
    FakeClient.made = []
    client = await started(lambda: FakeClient(fail=2), Settings(), "starting a consumer")
    assert len(FakeClient.made) == 3 and client is FakeClient.made[-1]
    assert [c.stopped for c in FakeClient.made] == [True, True, False]


async def test_a_cancellation_leaked_by_a_failed_clients_stop_does_not_end_the_retries() -> None:
    FakeClient.made = []
    client = await started(lambda: FakeClient(fail=2, leak=True), Settings(), "starting a consumer")
    assert len(FakeClient.made) == 3 and client is FakeClient.made[-1]


async def test_nothing_listening_gives_up_with_the_line_on_a_real_client() -> None:
    """A real aiokafka producer against a port nothing listens on (no broker needed)."""
    from aiaas.streams.producer import Producer

    settings = Settings(bootstrap_servers="127.0.0.1:1", connect_deadline_s=1.0, request_timeout_ms=500)
    with pytest.raises(KafkaUnavailable) as info:
        async with Producer(settings):
            pass
    assert str(info.value).startswith("starting a producer: Kafka at 127.0.0.1:1 still unavailable")
    assert "KafkaConnectionError" in str(info.value)
    assert "is a broker up on port 1? (`AIAAS_KAFKA_PORT=1 aiaas infra up` starts one" in str(info.value)
