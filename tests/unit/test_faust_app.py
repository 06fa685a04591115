"""Settings -> faust configuration and the security checks of Settings (no broker)."""

from __future__ import annotations

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from aiaas.streams import faust_app
from aiaas.streams.settings import Settings


def test_plaintext_has_no_credentials_and_urls_per_host() -> None:
    s = Settings(bootstrap_servers="a:1, b:2")
    cfg = faust_app.app_config(s, web_enabled=True)
    assert cfg["broker"] == ["kafka://a:1", "kafka://b:2"]
    assert cfg["broker_credentials"] is None
    assert cfg["web_enabled"] is True  # overrides win
    assert cfg["producer_max_request_size"] == s.max_message_bytes == cfg["consumer_max_fetch_size"]


def test_scram_credentials_match_the_aiokafka_kwargs() -> None:
    s = Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                 sasl_username="u", sasl_password="p")
    creds = faust_app.broker_credentials(s)
    assert isinstance(creds, SASLCredentials)
    auth = credentials_to_aiokafka_auth(creds)
    ours = s.common_kwargs()
    for key in ("security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
        assert auth[key] == ours[key], key


def test_ssl_credentials_carry_a_context() -> None:
    creds = faust_app.broker_credentials(Settings(security_protocol="SSL"))
    assert isinstance(creds, SSLCredentials)
    assert credentials_to_aiokafka_auth(creds)["security_protocol"] == "SSL"


def test_sasl_ssl_credentials() -> None:
    s = Settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
                 sasl_username="u", sasl_password="p")
    auth = credentials_to_aiokafka_auth(faust_app.broker_credentials(s))
    assert auth["security_protocol"] == "SASL_SSL" and auth["ssl_context"] is not None


@pytest.mark.parametrize("kw", [
    {"security_protocol": "SASL_PLAINTEXT"},  # no mechanism
    {"sasl_mechanism": "SCRAM-SHA-256", "sasl_username": "u", "sasl_password": "p"},  # PLAINTEXT
    {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
])
def test_half_configured_security_is_refused(kw: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings(**kw)
