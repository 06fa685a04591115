"""Model names a user typed: an unknown name is an error that lists the known ones.

A typo (``--model digitz``) must not wait forever or print an empty table; commands that may
legitimately start before the model exists (a worker started ahead of training) take ``--wait``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from aiaas.schemas.errors import NotFound

WaitOpt = Annotated[bool, typer.Option(
    "--wait", help="wait until the model is registered (default: exit 1 when it is unknown)")]


def unknown_model(name: str, known: list[str]) -> NotFound:
    """The error for a model name the registry does not have, listing the names it has."""
    return NotFound("no such model", model=name,
                    known=known or "none yet (train one, or `aiaas models push FILE --name NAME`)")


async def versions_of(reg: Any, name: str) -> list[Any]:
    """The versions of ``name`` in registry ``reg`` (one read); an unknown name raises
    ``unknown_model``, listing the known ones."""
    everything = await reg.list()
    mine = [mv for mv in everything if mv.name == name]
    if not mine:
        raise unknown_model(name, sorted({mv.name for mv in everything}))
    return mine


async def require_model(name: str) -> None:
    """Raise ``unknown_model`` unless the registry has a version of ``name``."""
    from aiaas.registry.store import Registry
    from aiaas.streams.settings import Settings

    async with Registry(Settings()) as reg:
        await versions_of(reg, name)


def checked_worker(worker: Callable[..., None]) -> Callable[..., None]:
    """``worker`` (a typer command with a ``model`` option) plus ``--wait``: without it an unknown
    model exits with one line instead of waiting for a version that may never come."""

    @functools.wraps(worker)
    def command(*args: Any, wait: bool = False, **kwargs: Any) -> None:
        if not wait:
            from aiaas.streams.runtime import run

            run(require_model(kwargs["model"]))
        worker(*args, **kwargs)

    sig = inspect.signature(worker, eval_str=True)
    extra = inspect.Parameter("wait", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=WaitOpt)
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values()]
    command.__signature__ = sig.replace(parameters=[*params, extra])  # type: ignore[attr-defined]
    command.__annotations__ = {**worker.__annotations__, "wait": WaitOpt}
    return command
