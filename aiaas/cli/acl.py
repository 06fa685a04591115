"""``aiaas acl apply`` / ``aiaas acl list``: Kafka users and least-privilege ACLs per role and tenant.

Run as the broker's admin (a super user: AIAAS_SASL_USERNAME/PASSWORD, docs/operations.md "Access
control"). ``apply`` creates a SCRAM user per role (``aiaas-<role>``) and per tenant
(``tenant-<T>``), writes each user's settings to ``<state dir>/credentials/<user>.env`` (a process
loads them as its AIAAS_* environment) and adds the ACLs that ``aiaas.streams.acls.plan`` derives
from the topic catalog, and creates the control-plane topics (``jobs``, ``models``, ``artifacts``,
``audit``: the registry's may be created by no role, so that only the aggregator and the admin
write the registry). Idempotent: passwords are reused, ACLs that exist are left as they are.
Every apply is an audit record (``acl.apply``).
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Kafka access control: users and ACLs per role and tenant.")


def parse_tenants(tenants: list[str], models: str) -> dict[str, list[str]]:
    """``--tenant A --models m1,m2`` or ``--tenant A=m1,m2`` (repeatable) as ``tenant -> models``."""
    out: dict[str, list[str]] = {}
    default = [m for m in models.split(",") if m]
    for item in tenants:
        name, _, own = item.partition("=")
        out[name] = [m for m in own.split(",") if m] if own else default
    return out


def parse_pairs(pairs: list[str]) -> list[tuple[str, str]]:
    """``--score IN:OUT`` as (IN, OUT)."""
    out = []
    for pair in pairs:
        src, sep, dst = pair.partition(":")
        if not sep or not src or not dst:
            raise typer.BadParameter(f"--score wants IN:OUT, got {pair!r}")
        out.append((src, dst))
    return out


@app.command("apply")
def apply(
    tenant: Annotated[list[str], typer.Option(help="tenant (repeatable); T=m1,m2 names its models")] = [],  # noqa: B006
    models: Annotated[str, typer.Option(help="models the --tenant(s) may call, comma-separated")] = "",
    job: Annotated[list[str], typer.Option(help="job whose topics trainers write (repeatable)")] = [],  # noqa: B006
    score: Annotated[list[str], typer.Option(help="IN:OUT topics of stream scoring (repeatable)")] = [],  # noqa: B006
    role: Annotated[list[str], typer.Option(help="roles to create (default: all)")] = [],  # noqa: B006
    bridge_client: Annotated[str, typer.Option(help="bridge reply topics: replies.<this>-*")] = "bridge",
) -> None:
    """Create the users and ACLs; prints each user and where its credentials are."""
    from aiaas.streams import acls
    from aiaas.streams.admin import Admin
    from aiaas.streams.audit import audited
    from aiaas.streams.runtime import run
    from aiaas.streams.settings import Settings
    from aiaas.streams.topics import Topics

    settings = Settings()
    roles = role or list(acls.ROLES)
    unknown = set(roles) - set(acls.ROLES)
    if unknown:
        raise typer.BadParameter(f"unknown role(s) {sorted(unknown)}; roles are {', '.join(acls.ROLES)}")
    p = acls.plan(settings, tenants=parse_tenants(tenant, models), jobs=job, score=parse_pairs(score),
                  roles=roles, bridge_client=bridge_client)
    creds = acls.Credentials(settings)

    async def main() -> int:
        async with audited(settings, "acl.apply", ",".join(p.grants), users=len(p.grants)) as extra:
            async with Admin(settings) as admin:
                n = await acls.AclAdmin(admin).apply(p, creds)
                await admin.ensure_topics(Topics(settings).control_plane())  # no role may create these
            extra["bindings"] = n
            return n

    n = run(main())
    for user, grants in p.grants.items():
        typer.echo(f"{user}: {len(grants)} ACLs, credentials {creds.path(user)}")
    typer.echo(f"applied {n} ACLs for {len(p.grants)} users")


@app.command("list")
def list_(
    principal: Annotated[str | None, typer.Option(help="only this user (e.g. tenant-acme)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per ACL and line")] = False,
) -> None:
    """Show the broker's ACLs, one per line."""
    from aiaas.streams import acls
    from aiaas.streams.admin import Admin
    from aiaas.streams.runtime import run
    from aiaas.streams.settings import Settings

    async def main() -> list[acls.Grant]:
        async with Admin(Settings()) as admin:
            return await acls.AclAdmin(admin).list()

    wanted = None if principal is None else (principal if ":" in principal else f"User:{principal}")
    for g in run(main()):
        if wanted is None or g.principal == wanted:
            typer.echo(g.model_dump_json() if as_json else g.line())


def register(app_: typer.Typer, worker: typer.Typer) -> None:
    """Add ``aiaas acl`` to the top-level app."""
    app_.add_typer(app, name="acl")
