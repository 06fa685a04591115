"""Prometheus metrics of one bridge (own registry, so several apps in one process never clash)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from aiaas.agents.bridge.admission import Admission

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "aiaas_bridge_infer_requests", "inference requests by model and HTTP status",
            ["model", "status"], registry=r,
        )
        self.latency = Histogram(
            "aiaas_bridge_infer_seconds", "inference latency in the bridge (receive to response)",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge(
            "aiaas_bridge_infer_in_flight", "inference requests awaiting their reply", registry=r
        )
        self.reply_lag = Histogram(
            "aiaas_bridge_reply_lag_seconds", "time from producing a request to its Kafka reply",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.webhooks = Counter(
            "aiaas_bridge_webhook_attempts", "webhook POST attempts by outcome", ["outcome"],
            registry=r,
        )
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._lag_children: dict[str, Histogram] = {}
        self.async_pending = Gauge("aiaas_bridge_async_in_flight", "async requests running here", registry=r)
        self.refused = Counter(
            "aiaas_bridge_refused", "requests refused before their body was read, by the cap they met",
            ["reason"], registry=r,
        )
        self.body_bytes = Gauge(
            "aiaas_bridge_body_bytes_in_flight", "cost bytes of the request bodies being read or served",
            registry=r,
        )
        self.calls = Gauge("aiaas_bridge_calls_in_flight", "infer calls being read or served", registry=r)

    def watch(self, admission: Admission) -> None:
        """Report what ``admission`` holds (read at scrape time: nothing on the request path)."""
        self.body_bytes.set_function(lambda: admission.bytes)
        self.calls.set_function(lambda: admission.calls)
        admission.on_refuse = lambda reason: self.refused.labels(reason=reason).inc()

    def observe(self, model: str, status: int, seconds: float) -> None:
        """Count one inference request (label children cached: ``labels()`` is not free)."""
        key = (model, status)
        pair = self._children.get(key)
        if pair is None:
            if len(self._children) > 10_000:
                self._children.clear()
            pair = (self.requests.labels(model=model, status=str(status)), self.latency.labels(model=model))
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def observe_reply(self, model: str, seconds: float) -> None:
        child = self._lag_children.get(model)
        if child is None:
            child = self._lag_children[model] = self.reply_lag.labels(model=model)
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
