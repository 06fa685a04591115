"""Shared fixtures: uvloop for every async test; settings and a fresh topic prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import uvloop


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """Every async test runs on uvloop, like every agent does."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def prefix() -> Iterator[str]:
    """A topic prefix no other test uses: every test gets its own topics."""
    yield f"t{uuid.uuid4().hex[:10]}."
