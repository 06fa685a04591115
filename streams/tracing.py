"""W3C trace context through Kafka headers, with the OpenTelemetry API (an SDK/exporter is optional).

The path of one inference request::

    bridge:  ctx = extract(request.headers)                       # HTTP traceparent, if any
             with span("bridge.infer", ctx, SpanKind.SERVER):
                 await producer.send(topic, body, headers={..., **inject()})
    worker:  with span("inference.request", extract(record.headers), SpanKind.CONSUMER):
                 reply_headers = {..., **inject()}                # same trace, the worker's span
    bridge:  response.headers["traceparent"] = reply.headers["traceparent"]

Without an SDK the API's tracer records nothing and would hand back the parent's span id; then
``span`` makes a child span context itself (same trace id, fresh span id), so the trace still
travels hop by hop and every hop is told apart. With an SDK installed and ``configure()``
called, real spans are recorded and exported.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from aiaas.streams import headers as h

log = logging.getLogger(__name__)

_PROPAGATOR = TraceContextTextMapPropagator()
TRACER_NAME = "aiaas"


def extract(carrier: Mapping[str, str] | None) -> Context:
    """The trace context in HTTP headers or decoded Kafka headers (names case-insensitive).

    A missing or malformed ``traceparent`` gives a context without a span: a new trace starts.
    """
    lowered = {k.lower(): v for k, v in (carrier or {}).items()}
    return _PROPAGATOR.extract(lowered)


def inject(carrier: dict[str, str] | None = None, ctx: Context | None = None) -> dict[str, str]:
    """Write ``traceparent`` (and ``tracestate``) of ``ctx`` (default: current) into ``carrier``."""
    out = {} if carrier is None else carrier
    _PROPAGATOR.inject(out, context=ctx)
    return out


def kafka_headers(ctx: Context | None = None) -> h.Headers:
    """The trace headers as Kafka record headers (``list[tuple[str, bytes]]``)."""
    return h.encode(dict(inject(ctx=ctx)))


def traceparent(ctx: Context | None = None) -> str | None:
    """The current (or ``ctx``'s) ``traceparent`` value, or None outside any trace."""
    return inject(ctx=ctx).get(h.TRACEPARENT)


def trace_id(ctx: Context | None = None) -> str | None:
    """The 32-hex-digit trace id of the current (or ``ctx``'s) span, or None."""
    sc = trace.get_current_span(ctx).get_span_context()
    return format(sc.trace_id, "032x") if sc.is_valid else None


def hop(incoming: str | None, name: str, kind: SpanKind = SpanKind.INTERNAL) -> str:
    """The ``traceparent`` a hop passes on: a child span of ``incoming`` (a new trace if None).

    The span covers the hop's hand-off; with an SDK configured it is recorded under ``name``.
    """
    parent = extract({h.TRACEPARENT: incoming} if incoming else None)
    with span(name, parent, kind):
        value = traceparent()
    assert value is not None  # span() always makes a valid span context
    return value


def _child_of(parent: SpanContext) -> NonRecordingSpan:
    """A span context under ``parent`` (or a new trace when ``parent`` is invalid)."""
    if parent.is_valid:
        tid, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
    else:
        tid, flags, state = _random_id(16), TraceFlags(TraceFlags.SAMPLED), None
    return NonRecordingSpan(SpanContext(tid, _random_id(8), is_remote=False, trace_flags=flags,
                                        trace_state=state))


def _random_id(nbytes: int) -> int:
    value = 0
    while value == 0:  # all-zero ids are invalid in W3C trace context
        value = int.from_bytes(secrets.token_bytes(nbytes), "big")
    return value


@contextmanager
def span(
    name: str,
    parent: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
) -> Iterator[Span]:
    """Run the block in a child span of ``parent`` (default: the current context), made current.

    Exceptions are recorded on the span (when an SDK records) and re-raised.
    """
    ctx = otel_context.get_current() if parent is None else parent
    parent_sc = trace.get_current_span(ctx).get_span_context()
    sp = trace.get_tracer(TRACER_NAME).start_span(name, context=ctx, kind=kind, attributes=attributes)
    sc = sp.get_span_context()
    if not sc.is_valid or (parent_sc.is_valid and sc.span_id == parent_sc.span_id):
        sp = _child_of(parent_sc)  # no SDK: the API tracer returned the parent (or nothing)
    token = otel_context.attach(trace.set_span_in_context(sp, ctx))
    try:
        with trace.use_span(sp, end_on_exit=True, record_exception=True, set_status_on_exception=True):
            yield sp
    finally:
        otel_context.detach(token)


def configure(service_name: str, exporter: str = "none") -> bool:
    """Install an SDK tracer provider with an exporter (``console`` or ``otlp``), if available.

    The SDK is optional (not a dependency): without it, or with ``none``, propagation still works
    and nothing is exported. Returns True when an exporter was installed.
    """
    if exporter == "none":
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("opentelemetry-sdk not installed: traces propagate but are not exported")
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("opentelemetry-exporter-otlp not installed: traces are not exported")
            return False
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    return True
