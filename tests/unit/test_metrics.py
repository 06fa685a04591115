"""Prometheus helpers: shared names, our own registry, a loopback exposition server, Rate."""

from __future__ import annotations

import urllib.request

import pytest

from aiaas.streams import metrics as m


def test_catalogue_names_are_exported_from_our_registry() -> None:
    m.TRAINER_SAMPLES.labels(job="j-metrics", worker="w1").inc(32)
    m.TRAINER_GRAD_BYTES.labels(job="j-metrics", worker="w1", compression="fp16").inc(1000)
    m.AGG_VERSION.labels(job="j-metrics").set(7)
    m.AGG_STALE_DROPS.labels(job="j-metrics").inc()
    m.AGG_MEMBERS.labels(job="j-metrics").set(2)
    m.INFER_BATCH_SIZE.labels(model="m-metrics").observe(8)
    m.INFER_QUEUE_DEPTH.labels(model="m-metrics").set(3)
    m.BRIDGE_REQUESTS.labels(route="/v2/models/{model}/infer", method="POST", status="200").inc()
    assert m.sample("aiaas_trainer_samples_total", {"job": "j-metrics", "worker": "w1"}) == 32
    assert m.sample("aiaas_trainer_gradient_bytes_total",
                    {"job": "j-metrics", "worker": "w1", "compression": "fp16"}) == 1000
    assert m.sample("aiaas_aggregator_parameter_version", {"job": "j-metrics"}) == 7
    assert m.sample("aiaas_aggregator_stale_gradients_dropped_total", {"job": "j-metrics"}) == 1
    assert m.sample("aiaas_inference_batch_size_count", {"model": "m-metrics"}) == 1
    assert m.sample("aiaas_inference_batch_size_bucket", {"model": "m-metrics", "le": "8.0"}) == 1
    text, ctype = m.render()
    assert ctype.startswith("text/plain")
    assert b'aiaas_inference_queue_depth{model="m-metrics"} 3.0' in text
    assert b'aiaas_bridge_http_requests_total{method="POST",route="/v2/models/{model}/infer",status="200"}' \
        in text
    assert b"process_cpu_seconds_total" in text  # process collector on our registry


def test_latency_histogram_times_a_block() -> None:
    with m.INFER_LATENCY.labels(model="m-time", stage="compute").time():
        sum(range(1000))
    assert m.sample("aiaas_inference_latency_seconds_count", {"model": "m-time", "stage": "compute"}) == 1


def test_metrics_server_serves_on_loopback_and_stops() -> None:
    m.AUTOSCALER_REPLICAS.labels(model="m-srv").set(2)
    server = m.start_metrics_server(0)
    try:
        assert server.server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            body = resp.read()
        assert b'aiaas_autoscaler_replicas{model="m-srv"} 2.0' in body
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=2)


def test_rate_over_a_sliding_window() -> None:
    r = m.Rate(window_s=10)
    assert r.per_second(now=100.0) == 0.0
    for t in range(10):
        r.add(50, now=100.0 + t)
    assert r.per_second(now=110.0) == pytest.approx(500 / 10, rel=0.15)
    assert r.per_second(now=125.0) == 0.0  # everything fell out of the window
    r.add(5, now=200.0)
    assert r.per_second(now=200.0) == 5.0  # a lone burst counts over at least one second


def test_start_from_settings_only_when_a_port_is_set() -> None:
    from aiaas.streams.settings import Settings

    assert m.start_from_settings(Settings()) is None
    server = m.start_from_settings(Settings(metrics_port=0))
    assert server is not None
    server.stop()
