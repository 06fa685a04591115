"""Settings: environment prefix, client kwargs agree on size limits, SASL mapping, topic names."""

from __future__ import annotations

import pytest

from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics, check_part


def test_env_prefix_and_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIAAS_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("AIAAS_MAX_MESSAGE_BYTES", str(4 * 1024 * 1024))
    s = Settings()
    assert s.bootstrap_servers == "k1:9092,k2:9092"
    prod = s.producer_kwargs()
    cons = s.consumer_kwargs("g")
    assert prod["max_request_size"] == cons["max_partition_fetch_bytes"] == 4 * 1024 * 1024
    assert prod["acks"] == "all" and prod["enable_idempotence"] is True
    assert cons["enable_auto_commit"] is False
    assert s.chunk_bytes < s.max_message_bytes
    assert s.chunk_bytes == 2 * 1024 * 1024
    with pytest.raises(ValueError, match="chunk_bytes"):
        Settings(max_message_bytes=1024 * 1024, chunk_bytes=1024 * 1024)
    assert Topics(s).models().config["max.message.bytes"] == str(4 * 1024 * 1024)


def test_sasl_kwargs() -> None:
    s = Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                 sasl_username="u", sasl_password="s3cr3t-pw")
    kw = s.common_kwargs()
    assert kw["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("u", "s3cr3t-pw")
    assert "s3cr3t-pw" not in repr(s)


def test_topic_names() -> None:
    t = Topics(Settings(topic_prefix="x."))
    assert t.train_data("job1", 4).name == "x.train.job1.data"
    assert t.train_data("job1", 4).partitions == 4
    assert t.train_params("job1").config["cleanup.policy"] == "compact"
    assert t.infer_requests("digits").name == "x.infer.digits.requests"
    with pytest.raises(ValueError):
        check_part("bad name/..")


def test_to_env_rebuilds_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(topic_prefix="x.", sasl_mechanism="PLAIN", security_protocol="SASL_PLAINTEXT",
                 sasl_username="u", sasl_password="s3cr3t-pw", linger_ms=0)
    env = s.to_env()
    assert env["AIAAS_SASL_PASSWORD"] == "s3cr3t-pw" and "AIAAS_SSL_CAFILE" not in env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings() == s
