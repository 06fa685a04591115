"""CLI commands of the ops area: ``aiaas autoscale`` (local inference workers by consumer lag)."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError

log = logging.getLogger(__name__)


def autoscale(
    model: Annotated[str, typer.Option(help="Model whose request topic is watched.")],
    min_replicas: Annotated[int, typer.Option("--min", help="Fewest workers (0: scale to zero).")] = 0,
    max_replicas: Annotated[int, typer.Option("--max", help="Most workers (capped by partitions).")] = 4,
    lag_threshold: Annotated[int, typer.Option(help="Target lag per worker (records).")] = 50,
    activation_lag: Annotated[int, typer.Option(help="Lag that wakes the first worker.")] = 0,
    rate_per_replica: Annotated[float, typer.Option(help="Requests/s one worker serves.")] = 200.0,
    cooldown: Annotated[float, typer.Option(help="Scale-down stabilisation window (s).")] = 15.0,
    idle: Annotated[float, typer.Option(help="Idle seconds before scaling to zero.")] = 30.0,
    interval: Annotated[float, typer.Option(help="Seconds between looks.")] = 1.0,
    group: Annotated[str | None, typer.Option(help="Consumer group of the workers.")] = None,
    policy_kind: Annotated[str, typer.Option(
        "--policy", help="reactive (lag and arrival rate) or predictive (also scale ahead of the "
                         "forecast arrival rate by the measured worker start-up time).")] = "reactive",
    season: Annotated[float, typer.Option(help="predictive: the traffic's cycle (s), a day.")] = 86_400.0,
    startup: Annotated[float, typer.Option(help="predictive: worker start-up (s) until measured.")] = 10.0,
    worker_cmd: Annotated[str | None, typer.Option(
        help="Worker command line; {model} and {index} are filled in. "
             "Default: aiaas worker inference --model {model} --wait.")] = None,
    log_dir: Annotated[Path | None, typer.Option(
        help="Where worker logs go. Default: <state dir>/autoscaler (AIAAS_STATE_DIR).")] = None,
) -> None:
    """Start and stop local inference workers from consumer lag and arrival rate."""
    from aiaas.agents.autoscaler.controller import DEFAULT_WORKER, local_autoscaler
    from aiaas.agents.autoscaler.forecast import Forecasting
    from aiaas.agents.autoscaler.policy import Policy
    from aiaas.streams import metrics
    from aiaas.streams.runtime import run, setup_logging, until_signalled
    from aiaas.streams.settings import get_settings

    try:
        policy = Policy(min_replicas=min_replicas, max_replicas=max_replicas, lag_threshold=lag_threshold,
                        activation_lag=activation_lag, rate_per_replica=rate_per_replica,
                        cooldown_s=cooldown, idle_s=idle)
        # a step per look, coarser for a season of over 100,000 looks
        forecasting = Forecasting(season_s=season, step_s=max(interval, season / 100_000), startup_s=startup)
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(e["msg"] for e in exc.errors())) from exc
    setup_logging()
    settings = get_settings()
    command = shlex.split(worker_cmd) if worker_cmd else list(DEFAULT_WORKER)
    # Workers must not inherit our metrics port (they would all fight for it).
    scaler = local_autoscaler(settings.model_copy(update={"metrics_port": None}), model, policy,
                              command=command, group=group,
                              log_dir=(log_dir or settings.state_dir / "autoscaler") / model,
                              interval_s=interval, kind=_kind(policy_kind), forecasting=forecasting)

    async def main() -> None:
        server = metrics.start_from_settings(settings)
        await scaler.start()
        log.info("autoscaling %s: group %s on %s, %s policy %s", model, scaler.group, scaler.topic,
                 policy_kind, policy)
        try:
            await until_signalled(scaler.run, scaler.stop)
        finally:
            if server is not None:
                server.stop()

    run(main())


def _kind(name: str) -> Literal["reactive", "predictive"]:
    if name not in ("reactive", "predictive"):
        raise typer.BadParameter(f"{name!r}: use reactive or predictive", param_hint="--policy")
    return "predictive" if name == "predictive" else "reactive"


def register(app: typer.Typer, worker: typer.Typer) -> None:
    """Add this area's commands to the top-level `app` and its agents to `aiaas worker`."""
    app.command("autoscale")(autoscale)
