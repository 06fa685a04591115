"""Prometheus metrics every agent shares: one registry per process, one catalogue of names.

Names live here (not in each agent) so dashboards, alerts and the autoscaler agree on them.
Agents update the objects below and expose them with ``start_metrics_server(port)`` (loopback
by default) or, in the bridge, by serving ``render()`` at ``/metrics``.

Usage::

    from aiaas.streams import metrics as m
    m.TRAINER_SAMPLES.labels(job=job, worker=wid).inc(rows)
    with m.INFER_LATENCY.labels(model=name, stage="compute").time(): ...
    server = m.start_metrics_server(9100)   # ... server.stop()
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    start_http_server,
)

from aiaas.streams.settings import Settings

# Our own registry (not prometheus_client's global one), so a library that registers metrics on
# the default registry cannot clash with ours, and tests can read exactly what we export.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# training
TRAINER_SAMPLES = Counter(
    "aiaas_trainer_samples", "Training samples processed.", ["job", "worker"], registry=REGISTRY)
TRAINER_SAMPLES_PER_S = Gauge(
    "aiaas_trainer_samples_per_second", "Recent training throughput.", ["job", "worker"],
    registry=REGISTRY)
TRAINER_GRAD_BYTES = Counter(
    "aiaas_trainer_gradient_bytes", "Gradient (or delta) bytes sent, after compression.",
    ["job", "worker", "compression"], registry=REGISTRY)
TRAINER_STEPS = Counter(
    "aiaas_trainer_steps", "Gradient steps computed.", ["job", "worker"], registry=REGISTRY)

# aggregation
AGG_VERSION = Gauge(
    "aiaas_aggregator_parameter_version", "Latest published parameter version.", ["job"],
    registry=REGISTRY)
AGG_STALE_DROPS = Counter(
    "aiaas_aggregator_stale_gradients_dropped", "Gradients dropped as too stale (async mode).",
    ["job"], registry=REGISTRY)
AGG_MEMBERS = Gauge(
    "aiaas_aggregator_live_workers", "Trainers currently counted as members.", ["job"],
    registry=REGISTRY)
AGG_GRADIENTS = Counter(
    "aiaas_aggregator_gradients", "Gradients received.", ["job", "outcome"], registry=REGISTRY)

# inference
INFER_REQUESTS = Counter(
    "aiaas_inference_requests", "Inference requests answered, by outcome (ok or an error code).",
    ["model", "outcome"], registry=REGISTRY)
INFER_BATCH_SIZE = Histogram(
    "aiaas_inference_batch_size", "Requests per onnxruntime call.", ["model"],
    buckets=_SIZE_BUCKETS, registry=REGISTRY)
INFER_LATENCY = Histogram(
    "aiaas_inference_latency_seconds",
    "Inference latency by stage: queue (record timestamp to pick-up), compute, total.",
    ["model", "stage"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
INFER_QUEUE_DEPTH = Gauge(
    "aiaas_inference_queue_depth", "Requests fetched but not yet answered.", ["model"],
    registry=REGISTRY)
INFER_MODEL_VERSION = Gauge(
    "aiaas_inference_model_version", "Model version being served.", ["model"], registry=REGISTRY)

# stream scoring (aiaas score): a user's topic scored into another
SCORE_RECORDS = Counter(
    "aiaas_scoring_records", "Input records scored or dead-lettered, by outcome.",
    ["model", "topic", "outcome"], registry=REGISTRY)
SCORE_LAG = Gauge(
    "aiaas_scoring_lag", "Committed input records not yet scored, over this worker's partitions.",
    ["model", "topic"], registry=REGISTRY)

# bridge: every HTTP route (the middleware); agents/bridge/metrics.py keeps the per-model inference
# metrics on a registry per app (several apps can share one test process).
BRIDGE_REQUESTS = Counter(
    "aiaas_bridge_http_requests", "HTTP requests, by route template, method and status.",
    ["route", "method", "status"], registry=REGISTRY)
BRIDGE_LATENCY = Histogram(
    "aiaas_bridge_http_request_seconds", "HTTP request latency by route template.", ["route", "method"],
    buckets=_LATENCY_BUCKETS, registry=REGISTRY)

# autoscaling
AUTOSCALER_REPLICAS = Gauge(
    "aiaas_autoscaler_replicas", "Inference workers running.", ["model"], registry=REGISTRY)
AUTOSCALER_LAG = Gauge(
    "aiaas_autoscaler_lag", "Consumer lag of the inference group (records).", ["model"],
    registry=REGISTRY)
AUTOSCALER_ARRIVAL_RATE = Gauge(
    "aiaas_autoscaler_arrival_rate", "Requests per second arriving on the request topic.",
    ["model"], registry=REGISTRY)
AUTOSCALER_FORECAST = Gauge(
    "aiaas_autoscaler_forecast_rate", "Highest arrival rate forecast over the next worker start-up "
    "time (predictive policy; 0 for the reactive one).", ["model"], registry=REGISTRY)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type (for a ``/metrics`` route in an HTTP app)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


@dataclass
class MetricsServer:
    """A running exposition server; ``stop()`` shuts it down (tests, clean exits)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(port: int = 0, addr: str = "127.0.0.1") -> MetricsServer:
    """Serve ``REGISTRY`` on ``addr:port`` in a daemon thread (port 0: any free port).

    Loopback by default: metrics reveal job and model names, so exposing them is a choice.
    """
    server, thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return MetricsServer(server, thread)


def start_from_settings(settings: Settings) -> MetricsServer | None:
    """Start the server on ``AIAAS_METRICS_PORT`` when set (what every agent calls at start)."""
    if settings.metrics_port is None:
        return None
    return start_metrics_server(settings.metrics_port, settings.metrics_addr)


@contextmanager
def serving(settings: Settings) -> Iterator[MetricsServer | None]:
    """The process's metrics server (when ``AIAAS_METRICS_PORT`` is set) for the block's duration."""
    server = start_from_settings(settings)
    try:
        yield server
    finally:
        if server is not None:
            server.stop()


def sample(name: str, labels: dict[str, str] | None = None) -> float | None:
    """Current value of one sample (e.g. ``aiaas_trainer_samples_total``); for tests and the UI."""
    return REGISTRY.get_sample_value(name, labels or {})


class Rate:
    """Events per second over a sliding window (trainer samples/s, request arrival rate)."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, float]] = deque()
        self._total = 0.0

    def add(self, n: float = 1.0, now: float | None = None) -> None:
        self._events.append((time.monotonic() if now is None else now, n))
        self._total += n

    def per_second(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._events and self._events[0][0] < now - self.window_s:
            self._total -= self._events.popleft()[1]
        if not self._events:
            return 0.0
        span = max(now - self._events[0][0], 1e-3)
        return self._total / min(max(span, 1.0), self.window_s)
