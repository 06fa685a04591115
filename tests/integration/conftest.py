"""Fixtures of the integration tier beyond tests/conftest.py: the secured broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra import SecuredBroker, secured_broker


@pytest.fixture(scope="session")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """One SASL/SCRAM broker with access control for every test that needs one (test_sasl,
    test_acl, test_demo_acl): started once per session on free ports, stopped by pid at the end.
    Its admin is a super user, so the plain SASL tests run as it."""
    with secured_broker(tmp_path_factory.mktemp("acl-broker")) as broker:
        yield broker
