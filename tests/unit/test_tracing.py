"""W3C trace context: HTTP headers -> Kafka headers -> worker -> reply, with the API alone."""

from __future__ import annotations

import re

import pytest
from opentelemetry import trace

from aiaas.streams import headers as h
from aiaas.streams import tracing

TP_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _parts(tp: str | None) -> tuple[str, str, str]:
    assert tp is not None
    m = TP_RE.match(tp)
    assert m, tp
    return m.group(1), m.group(2), m.group(3)


def test_traceparent_travels_http_kafka_worker_reply() -> None:
    http_headers = {"Traceparent": INCOMING, "Tracestate": "vendor=abc", "Content-Type": "json"}
    with tracing.span("bridge.infer", tracing.extract(http_headers), trace.SpanKind.SERVER):
        kafka = tracing.kafka_headers()
    sent = h.decode(kafka)  # what the worker sees on the request record
    tid, bridge_span, flags = _parts(sent[h.TRACEPARENT])
    assert tid == "4bf92f3577b34da6a3ce929d0e0e4736" and flags == "01"
    assert bridge_span != "00f067aa0ba902b7"  # the bridge hop has its own span id
    assert sent["tracestate"] == "vendor=abc"

    with tracing.span("inference.request", tracing.extract(sent), trace.SpanKind.CONSUMER):
        assert tracing.trace_id() == tid
        reply = tracing.inject({h.CORRELATION_ID: "r1"})
    rtid, worker_span, _ = _parts(reply[h.TRACEPARENT])
    assert rtid == tid and worker_span not in (bridge_span, "00f067aa0ba902b7")
    assert reply[h.CORRELATION_ID] == "r1"
    assert tracing.traceparent() is None  # contexts are restored after each span


def test_a_request_without_traceparent_starts_a_trace() -> None:
    with tracing.span("bridge.infer", tracing.extract({})):
        a = tracing.traceparent()
    with tracing.span("bridge.infer", tracing.extract(None)):
        b = tracing.traceparent()
    assert _parts(a)[0] != _parts(b)[0]
    assert _parts(a)[0] != "0" * 32 and _parts(a)[2] == "01"


@pytest.mark.parametrize("bad", ["garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
                                 "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01"])
def test_malformed_traceparent_is_ignored(bad: str) -> None:
    with tracing.span("x", tracing.extract({"traceparent": bad})):
        tid, _, _ = _parts(tracing.traceparent())
    assert tid not in bad


def test_nested_spans_keep_the_trace() -> None:
    with tracing.span("outer", tracing.extract({"traceparent": INCOMING})):
        outer = _parts(tracing.traceparent())
        with tracing.span("inner"):
            inner = _parts(tracing.traceparent())
        assert _parts(tracing.traceparent()) == outer
    assert inner[0] == outer[0] and inner[1] != outer[1]


def test_exceptions_propagate_and_context_is_restored() -> None:
    with pytest.raises(ValueError), tracing.span("boom", tracing.extract({"traceparent": INCOMING})):
        raise ValueError("x")
    assert tracing.traceparent() is None


def test_unsampled_flag_is_kept() -> None:
    unsampled = INCOMING[:-2] + "00"
    with tracing.span("x", tracing.extract({"traceparent": unsampled})):
        assert _parts(tracing.traceparent())[2] == "00"


def test_configure_without_sdk_or_with_none_is_harmless() -> None:
    assert tracing.configure("test", "none") is False
