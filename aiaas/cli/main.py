"""``aiaas``: one command for infrastructure, schemas, data, training, serving and workers.

Each area keeps its commands in its own module and adds them in ``register``; this file only
assembles them, so areas never edit each other's command code. Failures a user can act on print
one line (``aiaas.cli.errors``); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from aiaas.cli import acl as acl_area
from aiaas.cli import audit as audit_area
from aiaas.cli import bridge, data, demo, errors, infra, ops, schemas_cmd, score, serving, topics, training

HELP = ("AI as a service on Kafka: data, training, the model registry, serving over Kafka and HTTP."
        "\n\nStart with `aiaas infra up` (a local Kafka broker and Redis). Every command reads AIAAS_* "
        "settings (AIAAS_BOOTSTRAP_SERVERS, AIAAS_REDIS_URL, ...); see README.md.")


class App(typer.Typer):
    """The top-level app: runs the command through ``errors.guard`` (one line per known failure)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return errors.guard(lambda: super(App, self).__call__(*args, **kwargs))


app = App(no_args_is_help=True, add_completion=False, help=HELP)
# Commands that run for long keep the settings' connect deadline (a broker may still be starting);
# one-shot commands give up sooner: a person is waiting for the answer.
LONG_RUNNING = {"worker", "serve", "autoscale", "demo", "train", "score"}
ONE_SHOT_CONNECT_DEADLINE_S = "10"


@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", envvar="AIAAS_DEBUG",
                                        help="show tracebacks (also AIAAS_DEBUG=1)")] = False,
) -> None:
    errors.set_debug(debug)
    if ctx.invoked_subcommand not in LONG_RUNNING:
        os.environ.setdefault("AIAAS_CONNECT_DEADLINE_S", ONE_SHOT_CONNECT_DEADLINE_S)


app.add_typer(infra.app, name="infra")
app.add_typer(schemas_cmd.app, name="schemas")
worker = typer.Typer(no_args_is_help=True, help="Run one agent process.")
app.add_typer(worker, name="worker")

for area in (data, training, serving, bridge, ops, demo, topics, score, audit_area, acl_area):
    area.register(app, worker)


def main() -> None:
    """Console entry point (``aiaas``)."""
    app()


if __name__ == "__main__":
    main()
