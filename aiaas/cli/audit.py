"""``aiaas audit tail [--follow] [--json]``: the control-plane actions recorded on the audit topic.

Each line says when, where from (cli or bridge), who, what, on what, and the outcome (with why when
it failed); ``--json`` prints one JSON object per record, one per line, for scripts and ``jq``.
"""

from __future__ import annotations

import datetime
import sys
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, help="Audit records: who did what, when, with what outcome.")


def line(rec: Any) -> str:
    """One record as a line a person reads."""
    when = datetime.datetime.fromtimestamp(rec.ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    who = f"{rec.actor} ({rec.tenant})" if rec.tenant else rec.actor
    outcome = rec.outcome if rec.error is None else f"{rec.outcome}: {rec.error}"
    details = " ".join(f"{k}={v}" for k, v in rec.details.items())
    return f"{when}  {rec.source:<6} {who}  {rec.action} {rec.target}  {outcome}  {details}".rstrip()


@app.command("tail")
def tail(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new records")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per record and line")] = False,
    last: Annotated[int, typer.Option("--lines", "-n", min=0, help="records before the end to show")] = 20,
) -> None:
    """Show the last records of the audit topic (and, with --follow, each new one)."""
    from aiaas.streams.audit import tail as read_tail
    from aiaas.streams.runtime import run
    from aiaas.streams.settings import Settings

    async def main() -> None:
        async for rec in read_tail(Settings(), last=last, follow=follow):
            text = rec.model_dump_json(exclude_none=True) if as_json else line(rec)
            sys.stdout.write(text + "\n")
            sys.stdout.flush()  # --follow: each record as it comes, also when piped

    try:
        run(main())
    except KeyboardInterrupt:  # Ctrl-C ends --follow
        return


def register(app_: typer.Typer, worker: typer.Typer) -> None:
    """Add ``aiaas audit`` to the top-level app."""
    app_.add_typer(app, name="audit")

