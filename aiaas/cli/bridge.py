"""Bridge commands: ``aiaas worker bridge``, ``aiaas keys create|list|revoke`` (create and revoke
audited), ``aiaas serve``."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from aiaas.cli.output import JsonOpt, show, show_json
from aiaas.schemas.audit import KEY_CREATE, KEY_REVOKE

if TYPE_CHECKING:
    from aiaas.agents.bridge.keys import KeyStore, Scope

T = TypeVar("T")

keys = typer.Typer(no_args_is_help=True, help="API keys of tenants (stored hashed in Redis).")


def bridge_worker(
    port: Annotated[int | None, typer.Option(help="HTTP port (default AIAAS_BRIDGE_PORT or 8080)")] = None,
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
) -> None:
    """Run one bridge: OIP v2 HTTP API on uvicorn + uvloop, in front of the Kafka inference workers."""
    from aiaas.agents.bridge.main import main

    main(port, host)


@keys.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="tenant name (created on its first key)")],
    scope: Annotated[list[str] | None, typer.Option(help="infer|models|jobs|metrics (repeat)")] = None,
    rate: Annotated[float | None, typer.Option(help="requests per second for the tenant")] = None,
    burst: Annotated[float | None, typer.Option(help="bucket size for the tenant")] = None,
) -> None:
    """Create an API key; prints it once (only its SHA-256 is kept) and the tenant's webhook secret."""
    from aiaas.agents.bridge.keys import ALL_SCOPES

    bad = [s for s in scope or [] if s not in ALL_SCOPES]
    if bad:
        raise typer.BadParameter(f"unknown scope(s) {bad}; use {list(ALL_SCOPES)}")

    scopes: list[Scope] | None = [s for s in ALL_SCOPES if s in scope] if scope else None

    async def body() -> dict[str, object]:
        from aiaas.streams.audit import audited
        from aiaas.streams.settings import Settings

        async with audited(Settings(), KEY_CREATE, tenant, tenant=tenant, scopes=scope or "all") as extra:
            key, record, ten = await _store_call(
                lambda store: store.create(tenant, scopes, rate_per_s=rate, burst=burst))
            extra["key_id"] = record.key_id  # never the key itself
        return {"tenant": ten.name, "key_id": record.key_id, "api_key": key, "scopes": record.scopes,
                "webhook_secret": ten.secret}

    typer.echo(json.dumps(_run(body()), indent=2))


async def _key_rows(store: KeyStore, tenant: str | None) -> list[dict[str, Any]]:
    """Every live key's id, tenant, scopes and creation time (never the key: only its hash is kept)."""
    from aiaas.agents.bridge.keys import ApiKey
    from aiaas.agents.bridge.rediskeys import text

    rows = []
    async for name in store.redis.scan_iter(match=store.k.key_id("*"), count=500):
        found = await store.redis.get(name)
        raw = await store.redis.get(store.k.api_key(text(found))) if found else None
        if raw:
            key = ApiKey.model_validate_json(raw)
            if tenant is None or key.tenant == tenant:
                rows.append(key.model_dump(mode="json"))
    return sorted(rows, key=lambda r: (r["tenant"], r["created"]))


@keys.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's keys")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List API keys by id (``aiaas keys revoke ID`` revokes one); the keys themselves are not kept."""
    import datetime

    from rich.table import Table

    rows = _run(_store_call(lambda store: _key_rows(store, tenant)))
    if as_json:
        show_json(rows)
        return
    table = Table("key_id", "tenant", "scopes", "created (UTC)")
    for row in rows:
        made = datetime.datetime.fromtimestamp(row["created"], datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(row["key_id"], row["tenant"], ",".join(row["scopes"]), made)
    show(table)


@keys.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="the key id (aiaas_<key id>_...)")]) -> None:
    """Revoke a key by its id (bridges stop accepting it within their auth cache time)."""

    from aiaas.schemas.errors import NotFound

    async def body() -> None:
        from aiaas.streams.audit import audited
        from aiaas.streams.settings import Settings

        async with audited(Settings(), KEY_REVOKE, key_id):
            if not await _store_call(lambda store: store.revoke(key_id)):
                raise NotFound("no such key", key_id=key_id)

    try:
        _run(body())
    except NotFound as exc:
        typer.secho(f"no key {key_id}", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"revoked {key_id}")


async def _store_call(fn: Callable[[KeyStore], Awaitable[T]]) -> T:
    import redis.asyncio as aioredis

    from aiaas.agents.bridge.keys import KeyStore
    from aiaas.agents.bridge.rediskeys import RedisKeys
    from aiaas.streams.settings import Settings

    settings = Settings()
    client = aioredis.from_url(settings.redis_url)
    try:
        return await fn(KeyStore(client, RedisKeys(settings)))
    finally:
        await client.aclose()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    from aiaas.streams.runtime import run

    return run(coro)


def serve(
    file: Annotated[Path | None, typer.Argument(
        dir_okay=False, help="ONNX file to register and serve (or give --model)")] = None,
    name: Annotated[str | None, typer.Option(help="name to register FILE as (default: its stem)")] = None,
    model: Annotated[str | None, typer.Option(
        help="serve this registered model (production version, else the latest) instead of a file")] = None,
    port: Annotated[int, typer.Option(help="bridge HTTP port")] = 8080,
    replicas: Annotated[int, typer.Option(min=1, help="inference worker processes")] = 1,
    host: Annotated[str, typer.Option(help="bridge bind address")] = "127.0.0.1",
    auth: Annotated[bool, typer.Option("--auth/--no-auth", help="require API keys (prints one)")] = True,
    infra_timeout: Annotated[float, typer.Option(
        help="seconds to wait for Kafka and Redis (started with infra/up.sh when local and down)")] = 60.0,
) -> None:
    """Serve an ONNX FILE or a registered --model over HTTP; Ctrl-C stops all.

    FILE is registered as the production version of --name; local Kafka and Redis start if down.

    Then K inference workers and a bridge start, and the URL and an API key are printed.
    """
    from aiaas.agents.bridge.serve import ServePlan, supervise
    from aiaas.streams.runtime import run, setup_logging
    from aiaas.streams.settings import Settings

    if (file is None) == (model is None):
        raise typer.BadParameter("give an ONNX FILE or --model NAME (one of them)")
    if file is not None and not file.is_file():
        raise typer.BadParameter(f"no such file: {file}", param_hint="FILE")
    setup_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per readiness poll
    plan = ServePlan(model_path=file, name=model or name or (file.stem if file else ""), port=port, host=host,
                     replicas=replicas, auth=auth, infra_timeout_s=infra_timeout)
    raise typer.Exit(run(supervise(Settings(), plan)))


def register(app: typer.Typer, worker: typer.Typer) -> None:
    """Add this area's commands to the top-level `app` and its agents to `aiaas worker`."""
    worker.command("bridge")(bridge_worker)
    app.add_typer(keys, name="keys")
    app.command("serve")(serve)
