"""``aiaas topics create|list``: topics for callers that speak Kafka directly (reply topics, ...).

The broker may have topic auto-creation off (the local one does), so a caller's reply topic must be
created before its first request; aiaas's own topics are created by the agents that use them.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from aiaas.cli.output import JsonOpt, show, show_json

topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics: create reply topics, list them.")


async def _create(name: str, partitions: int) -> bool:
    from aiaas.streams.admin import Admin
    from aiaas.streams.settings import Settings
    from aiaas.streams.topics import TopicSpec

    settings = Settings()
    spec = TopicSpec(name=name, partitions=partitions,
                     config={"max.message.bytes": str(settings.max_message_bytes)})
    async with Admin(settings) as admin:
        return bool(await admin.ensure_topics([spec]))


async def _list(everything: bool) -> list[dict[str, Any]]:
    from aiaas.streams.admin import Admin
    from aiaas.streams.settings import Settings

    settings = Settings()
    async with Admin(settings) as admin:
        names = sorted(n for n in await admin.list_topics()
                       if everything or n.startswith(settings.topic_prefix))
        meta = await admin.client.describe_topics(names) if names else []
    counts = {str(t["topic"]): len(t["partitions"]) for t in meta}
    return [{"topic": n, "partitions": counts.get(n, 0)} for n in names]


@topics_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="full topic name, e.g. aiaas.replies.myapp")],
    partitions: Annotated[int, typer.Option(min=1, help="partitions")] = 1,
) -> None:
    """Create topic NAME (nothing happens when it exists); e.g. the reply topic of a Kafka caller."""
    from aiaas.streams.runtime import run
    from aiaas.streams.topics import check_part

    try:
        check_part(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="NAME") from exc
    created = run(_create(name, partitions))
    typer.echo(f"created {name}" if created else f"{name} exists")


@topics_app.command("list")
def list_(
    everything: Annotated[bool, typer.Option("--all", help="every topic, not only the prefix's")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the topics under AIAAS_TOPIC_PREFIX (``--all``: every topic) with their partitions."""
    from rich.table import Table

    from aiaas.streams.runtime import run

    rows = run(_list(everything))
    if as_json:
        show_json(rows)
        return
    table = Table("topic", "partitions")
    for row in rows:
        table.add_row(row["topic"], str(row["partitions"]))
    show(table)


def register(app: typer.Typer, worker: typer.Typer) -> None:
    """Add this area's commands to the top-level `app`."""
    app.add_typer(topics_app, name="topics")
