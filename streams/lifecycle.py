"""The lifecycle every client and agent shares: explicit ``async start()/stop()`` and ``async with``.

Constructors do no network I/O (docs/architecture.md, "Code layout and contracts"); ``start()``
connects, ``stop()`` releases, and a ``Service`` is its own async context manager.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Service:
    """Base of things that are started and stopped; subclasses implement ``start``/``stop``."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
